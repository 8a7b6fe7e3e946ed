"""PostgreSQL sink: parts land with one ``COPY FROM STDIN`` each.

``copy_lines`` and ``copy_rows`` work on a connection the caller owns, inside the
caller's transaction, because the importer writes each part's ledger row in the same
transaction as its rows (DESIGN.md §3).  :class:`PostgresSink` wraps them for the
simple "open, create, write, commit" use (CLI, tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from types import TracebackType
from typing import Any

import psycopg

from tdtp.packet import RowError, Schema, TdtpError
from tdtp.sinks.copy_text import lines_to_copy, needs_utc_session
from tdtp.sinks.ddl import POSTGRESQL, column_list, create_table_sql, qualified
from tdtp.urls import ParsedUrl
from tdtp.values import NO_DATE

BATCH_LINES = 10_000


def _copy_stmt(table: str, schema: Schema, *, delimiter: str = "|") -> str:
    options = "FORMAT text" + (", DELIMITER '|'" if delimiter == "|" else "")
    return f"COPY {qualified(table)} {column_list(schema)} FROM STDIN WITH ({options})"


def copy_lines(conn: psycopg.Connection[Any], table: str, schema: Schema, lines: list[str]) -> int:
    """Load one part's row lines with a single COPY; returns the number of rows.

    Runs in the caller's transaction.  When the schema has timestamps that are UTC
    without a zone in the text, the session TimeZone is UTC for the COPY only (a
    transaction-local setting, restored afterwards).
    """
    if not lines:
        return 0
    text = lines_to_copy(schema, lines, where=f"table {table!r}")
    stmt = _copy_stmt(table, schema)
    try:
        _copy_text(conn, stmt, schema, text)
    except psycopg.DataError as exc:
        raise RowError(f"PostgreSQL refused a value: {_describe(exc)}", where=f"table {table!r}") from exc
    return len(lines)


def _copy_text(conn: psycopg.Connection[Any], stmt: str, schema: Schema, text: str) -> None:
    if not needs_utc_session(schema):
        with conn.cursor() as cur, cur.copy(stmt) as copy:
            copy.write(text)
        return
    # A transaction-local TimeZone needs a transaction: an autocommit caller gets one here.
    scope = conn.transaction() if conn.autocommit else contextlib.nullcontext()
    with scope, conn.cursor() as cur:
        row = cur.execute(
            "SELECT current_setting('TimeZone'), set_config('TimeZone', 'UTC', true)"
        ).fetchone()
        previous = row[0] if row else "UTC"
        with cur.copy(stmt) as copy:
            copy.write(text)
        cur.execute("SELECT set_config('TimeZone', %s, true)", (previous,))


def copy_rows(
    conn: psycopg.Connection[Any], table: str, schema: Schema, rows: Iterable[Sequence[Any]]
) -> int:
    """Load Python rows with one COPY (psycopg adapts each value); returns the count."""
    n = 0
    # psycopg's write_row renders COPY text with its default (tab) delimiter.
    with conn.cursor() as cur, cur.copy(_copy_stmt(table, schema, delimiter="\t")) as copy:
        for row in rows:
            copy.write_row([_adapt(v) for v in row])
            n += 1
    return n


def _adapt(value: Any) -> Any:
    """Python values RowDecoder gives that psycopg has no dumper for."""
    if value is NO_DATE:
        return None
    if isinstance(value, (str, int, float, Decimal, bytes, datetime, date, time)) or value is None:
        return value
    return str(value)


class PostgresSink:
    """One connection and one transaction; commit on a clean ``with`` exit, rollback on error."""

    def __init__(self, parsed: ParsedUrl) -> None:
        self._url = parsed
        try:
            self.conn: psycopg.Connection[Any] = psycopg.connect(parsed.url, connect_timeout=15)
        except psycopg.Error as exc:
            raise TdtpError(f"cannot connect to {parsed.redacted}: {_first_line(exc)}") from exc

    def create_table(self, schema: Schema, table: str, *, if_not_exists: bool = True) -> None:
        stmt = create_table_sql(POSTGRESQL, schema, table, if_not_exists=if_not_exists)
        self._run(table, lambda: self.conn.execute(stmt))

    def write_lines(self, schema: Schema, table: str, lines: Iterable[str]) -> int:
        total = 0
        batch: list[str] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= BATCH_LINES:
                total += self._run(table, lambda b=batch: copy_lines(self.conn, table, schema, b))
                batch = []
        if batch:
            total += self._run(table, lambda: copy_lines(self.conn, table, schema, batch))
        return total

    def write_rows(self, schema: Schema, table: str, rows: Iterable[Sequence[Any]]) -> int:
        return self._run(table, lambda: copy_rows(self.conn, table, schema, rows))

    def _run(self, table: str, fn: Any) -> Any:
        try:
            return fn()
        except psycopg.Error as exc:
            raise TdtpError(
                f"writing table {table!r} at {self._url.redacted} failed: {_first_line(exc)}"
            ) from exc

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()

    def __enter__(self) -> PostgresSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None and not self.conn.closed:
                self.commit()
            else:
                self.rollback()
        finally:
            self.close()


def _describe(exc: psycopg.Error) -> str:
    """The server's message plus its COPY context (line and column of the bad value)."""
    diag = exc.diag
    text = diag.message_primary or _first_line(exc)
    if diag.context:
        text += f" ({diag.context.strip().splitlines()[0]})"
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
