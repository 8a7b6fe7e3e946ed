"""``COPY ... TO STDOUT`` read straight from libpq, in big chunks.

psycopg's ``Copy`` iterator hands over one row per iteration through several layers
of generators; for a million rows that overhead alone cost more than the server's
work (1.5 s vs 0.75 s measured here for the same 1M-row table).  Driving libpq's
``PQgetCopyData`` directly and joining rows into ~256 KiB chunks keeps the Python
work per row to one call and one list append.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import pq

CHUNK_BYTES = 256 * 1024
FIRST_CHUNK_BYTES = 16 * 1024


def copy_out_chunks(conn: psycopg.Connection[Any], statement: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield the output of a ``COPY ... TO STDOUT`` statement as chunks of whole lines.

    Runs inside the connection's current transaction (psycopg has begun it if the
    connection is not in autocommit).  Raises ``psycopg.Error`` on a server error.
    If the consumer stops early, the COPY is cancelled and drained so the connection
    stays usable.
    """
    if not conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        conn.execute("SELECT 1")  # let psycopg open the (read-only) transaction first
    pgconn = conn.pgconn
    pgconn.send_query(statement.encode("utf-8"))
    result = pgconn.get_result()
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        message = _error_text(result)
        _drain(pgconn)
        raise psycopg.OperationalError(message)
    finished = False
    try:
        rows: list[Any] = []
        size = 0
        get = pgconn.get_copy_data
        # Small chunks first, so the first part can leave after a few rows; then full size.
        target = min(FIRST_CHUNK_BYTES, chunk_bytes)
        while True:
            nbytes, data = get(0)
            if nbytes > 0:
                rows.append(data)
                size += nbytes
                if size >= target:
                    yield b"".join(rows)
                    rows, size = [], 0
                    target = min(target * 4, chunk_bytes)
            elif nbytes == -1:
                break
            else:
                raise psycopg.OperationalError(pgconn.error_message.decode("utf-8", "replace").strip())
        if rows:
            yield b"".join(rows)
        finished = True
        result = pgconn.get_result()
        if result is not None and result.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.OperationalError(_error_text(result))
    finally:
        if not finished:
            with contextlib.suppress(Exception):
                conn.cancel()
                while get(0)[0] >= 0:
                    pass
        _drain(pgconn)


def _drain(pgconn: Any) -> None:
    while pgconn.get_result() is not None:
        pass


def _error_text(result: Any) -> str:
    if result is None:
        return "COPY returned no result"
    return (result.error_message or b"COPY failed").decode("utf-8", "replace").strip()
