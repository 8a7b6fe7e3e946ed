"""``COPY ... TO STDOUT`` read straight from libpq, in big chunks.

psycopg's ``Copy`` iterator hands over one row per iteration through several layers
of generators; for a million rows that overhead alone cost more than the server's
work (1.5 s vs 0.75 s measured here for the same 1M-row table).  libpq's
``PQgetCopyData`` still returns one row per call, so the loop over it is kept in C
(``iter`` over the bound method, ``islice``, ``bytes.join``), and the garbage collector
is paused while a chunk is gathered: each row arrives as a tuple and a memoryview,
both tracked by the collector, and its passes over a CLI's heap cost 0.3 CPU-s per
1M rows of bench/scale.py's table (0.85 -> 0.54 CPU-s for the whole read, measured
here).  Nothing gathered there can form a cycle.

The rows are taken without blocking (``PQgetCopyData`` in async mode) while libpq has
them; when it has none, the wait for the socket is a ``poll``, which lets other
threads run and a Ctrl-C through.  A blocking ``PQgetCopyData`` would hold the GIL
through the server's pauses, and inside the C loop a whole batch of rows long.
libpq reads about 16 KB a call and the reader outruns the server, so it waits often;
the socket's receive low-water mark is raised to 64 KiB for the COPY (poll then wakes
once that much is there, or after 10 ms).  bench/copy_cpu.py, 1M rows: 5,834 waits and
0.37 CPU-s without the mark, 563 waits and 0.29 CPU-s with it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import socket
from collections.abc import Iterator
from functools import partial
from itertools import islice, takewhile
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import pq

CHUNK_BYTES = 256 * 1024
FIRST_CHUNK_BYTES = 16 * 1024
_END = (-1, b"")  # what PQgetCopyData's binding returns once the COPY is done
_NONE_YET = (0, b"")  # ... and in async mode while no whole row has arrived
_FIRST_BATCH_ROWS = 32
_LOW_WATER_BYTES = 64 * 1024  # what a wait waits for, at most _WAIT_MS
_WAIT_MS = 10


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
    get = pgconn.get_copy_data
    rows = _CopyRows(pgconn)
    try:
        # Small chunks first, so the first part can leave after a few rows; then full size.
        target = min(FIRST_CHUNK_BYTES, chunk_bytes)
        batch = _FIRST_BATCH_ROWS  # rows per islice: grown to what a chunk holds
        while True:
            chunk, nrows, ended = _gather(rows, batch, target)
            if chunk:
                yield chunk
            if ended:
                break
            target = min(target * 4, chunk_bytes)
            batch = max(1, nrows * target // (4 * len(chunk)))  # about 4 batches to a chunk
        finished = True
        rows.close()  # before libpq's own (blocking) waits
        result = pgconn.get_result()
        if result is not None and result.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.OperationalError(_error_text(result))
    finally:
        rows.close()
        if not finished:
            with contextlib.suppress(Exception):
                conn.cancel()
                while get(0)[0] >= 0:
                    pass
        _drain(pgconn)


class _CopyRows:
    """The COPY's rows as libpq hands them over, a batch at a time."""

    def __init__(self, pgconn: Any) -> None:
        self._pgconn = pgconn
        # Raises OperationalError on a failure; stops at the end of the COPY.
        self._calls = iter(partial(pgconn.get_copy_data, 1), _END)
        self.ended = False
        self._idle = False  # libpq read from the socket and no row came since
        self._poll = select.poll()
        self._poll.register(pgconn.socket, select.POLLIN)
        self._low_water_raised = _set_low_water(pgconn.socket, _LOW_WATER_BYTES)

    def take(self, n: int) -> list[bytes]:
        """Up to ``n`` rows; fewer only at the end.  Waits on the socket while none has come."""
        got: list[bytes] = []
        while len(got) < n and not self.ended:
            before = len(got)
            # In C: the rows libpq holds now, up to n (takewhile stops at "none yet").
            got += islice(map(itemgetter(1), takewhile(_NONE_YET.__ne__, self._calls)), n - len(got))
            if len(got) > before:
                self._idle = False
            if len(got) == n:
                break
            after = next(self._calls, None)  # the end, still none, or a row come meanwhile
            if after is None:
                self.ended = True
            elif after == _NONE_YET:
                if self._idle:  # the socket had nothing either: wait (the GIL released)
                    self._poll.poll(_WAIT_MS)
                self._pgconn.consume_input()
                self._idle = True
            else:
                got.append(after[1])
                self._idle = False
        return got

    def close(self) -> None:
        """Give the socket its low-water mark back: libpq's and psycopg's waits expect 1 byte."""
        if self._low_water_raised:
            self._low_water_raised = False
            _set_low_water(self._pgconn.socket, 1)


def _set_low_water(fd: int, size: int) -> bool:
    """Set the socket's receive low-water mark; False where that cannot be done."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:  # options set through a dup are the socket's own
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
    except (OSError, AttributeError, ValueError):
        return False
    return True


def _gather(rows: _CopyRows, batch: int, target: int) -> tuple[bytes, int, bool]:
    """Rows joined until ``target`` bytes or the end: (chunk, its rows, True once the COPY ended)."""
    pieces: list[bytes] = []
    size = nrows = 0
    ended = False
    enabled = gc.isenabled()
    gc.disable()
    try:
        while size < target:
            got = rows.take(batch)
            piece = b"".join(got)
            if len(piece) < len(got):  # every row ends in LF: an empty one is no row
                raise psycopg.OperationalError("COPY returned an empty row")
            pieces.append(piece)
            size += len(piece)
            nrows += len(got)
            if len(got) < batch:
                ended = True
                break
    finally:
        if enabled:
            gc.enable()
    return b"".join(pieces), nrows, ended


def _drain(pgconn: Any) -> None:
    while pgconn.get_result() is not None:
        pass


def _error_text(result: Any) -> str:
    if result is None:
        return "COPY returned no result"
    return (result.error_message or b"COPY failed").decode("utf-8", "replace").strip()
