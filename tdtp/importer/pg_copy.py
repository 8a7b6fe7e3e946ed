"""The one ``COPY FROM STDIN`` path into PostgreSQL.

Every PostgreSQL write of rows goes through :func:`copy_in`: a worker loading a
part into a swap/attach load table, the COPY publisher loading staged parts into
the target, and :func:`copy_lines` for callers holding TDTP row lines.  One place
words a refused value (the server's message with its COPY line and column, see
:func:`tdtp.importer.errors.describe_pg_error`) and counts what was loaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from tdtp.importer.errors import describe_pg_error, first_line
from tdtp.packet import RowError, Schema, TdtpError
from tdtp.sinks.copy_text import lines_to_copy, needs_utc_session
from tdtp.sinks.ddl import qualified, quote_ident


class CopyRefused(TdtpError):
    """The server refused the COPY (a bad value, a constraint, a missing column)."""


def copy_statement(table_sql: str, columns: Sequence[str]) -> str:
    """``COPY table (cols) FROM STDIN`` in TDTP's own text form: ``|`` between fields."""
    cols = ", ".join(quote_ident(c, what="column") for c in columns)
    return f"COPY {table_sql} ({cols}) FROM STDIN WITH (FORMAT text, DELIMITER '|')"


def _copy(conn: Any, table_sql: str, columns: Sequence[str], data: bytes | Iterable[bytes] | None) -> int:
    """The COPY itself; driver errors pass through (callers word them for their readers)."""
    chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else (data or [])
    with conn.cursor() as cur:
        with cur.copy(copy_statement(table_sql, columns)) as copy:
            for chunk in chunks:
                copy.write(chunk)
        return int(cur.rowcount)


def copy_in(
    conn: Any, table_sql: str, columns: Sequence[str], data: bytes | Iterable[bytes] | None
) -> int:
    """COPY rows (COPY text, whole or in chunks) into ``table_sql`` in the caller's transaction.

    Returns the number of rows the server loaded; chunks are sent as they come, so
    a caller converting the next chunk overlaps the server parsing this one.  A
    refusal is a :class:`CopyRefused` carrying the server's words (the driver's
    error stays its cause, so a lost connection is still retried).
    """
    try:
        return _copy(conn, table_sql, columns, data)
    except psycopg.Error as exc:
        raise CopyRefused(describe_pg_error(exc)) from exc


def copy_lines(conn: psycopg.Connection[Any], table: str, schema: Schema, lines: list[str]) -> int:
    """Load TDTP row lines into ``table`` (unquoted ``schema.table`` text) with one COPY.

    Runs in the caller's transaction.  When the schema has timestamps that are UTC
    without a zone in the text, the session TimeZone is UTC for the COPY only (a
    transaction-local setting, restored afterwards).  A value the server refuses is a
    :class:`RowError` naming the table, the COPY line and the column; other driver
    errors (a key conflict, a lost connection) reach the caller as they are.
    """
    if not lines:
        return 0
    where = f"table {table!r}"
    text = lines_to_copy(schema, lines, where=where).encode()
    table_sql = qualified(table)
    utc = needs_utc_session(schema)
    # A transaction-local TimeZone needs a transaction: an autocommit caller gets one here.
    scope = conn.transaction() if utc and conn.autocommit else contextlib.nullcontext()
    try:
        with scope:
            previous = None
            if utc:
                row = conn.execute(
                    "SELECT current_setting('TimeZone'), set_config('TimeZone', 'UTC', true)"
                ).fetchone()
                previous = row[0] if row else "UTC"
            loaded = _copy(conn, table_sql, schema.names, text)
            if previous is not None:
                conn.execute("SELECT set_config('TimeZone', %s, true)", (previous,))
    except psycopg.DataError as exc:
        raise RowError(f"PostgreSQL refused a value: {_value_error(exc)}", where=where) from exc
    return loaded


def _value_error(exc: psycopg.Error) -> str:
    """The server's message and where in the COPY data it stopped (line and column)."""
    text = exc.diag.message_primary or first_line(exc)
    if exc.diag.context:
        text += f" ({exc.diag.context.strip().splitlines()[0]})"
    return text
