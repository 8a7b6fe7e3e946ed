"""SQLite sink: ``executemany`` inserts in the caller's transaction.

Values are stored in the forms ``tdtp.sources.sqlite`` reads back as the same TDTP
values: booleans 1/0, timestamps and dates as their TDTP (RFC 3339) text, decimals as
exact decimal text (SQLite itself decides, by the column's declared type, whether to
keep it as text or turn it into a number; see ``ddl.sqlite_type``), BLOBs as bytes.
SQLite cannot store NaN (it becomes NULL) — a limitation of SQLite, not of the format.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from tdtp.packet import BOOLEAN, DATE, DECIMAL, TIMESTAMP, Field, RowError, Schema, TdtpError
from tdtp.sinks.ddl import SQLITE, column_list, create_table_sql, qualified
from tdtp.urls import ParsedUrl
from tdtp.values import NO_DATE, RowDecoder, value_to_text

Adapter = Callable[[Any], Any]


def _adapter(field: Field) -> Adapter | None:
    """Python value -> what SQLite stores for this field; None when the value goes as is."""
    if field.type == DECIMAL:

        def dec(v: Any) -> Any:
            if isinstance(v, Decimal):
                if v.is_finite():
                    return format(v, "f")
                return None if v.is_nan() else float(v)
            return v

        return dec
    if field.type == BOOLEAN:
        return lambda v: int(v) if isinstance(v, bool) else v
    if field.type in (DATE, TIMESTAMP):

        def when(v: Any) -> Any:
            if v is NO_DATE:
                return None
            return v if isinstance(v, str) else value_to_text(field, v)

        return when
    return _generic


def _generic(v: Any) -> Any:
    if isinstance(v, (str, int, float, bytes)):
        return None if isinstance(v, float) and math.isnan(v) else v
    if v is NO_DATE:
        return None
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    return str(v)


def write_rows(conn: sqlite3.Connection, table: str, schema: Schema, rows: Iterable[Sequence[Any]]) -> int:
    """Insert Python rows with ``executemany`` (caller's transaction); returns the count."""
    adapters = [_adapter(f) for f in schema.fields]
    n_fields = len(schema.fields)
    placeholders = ", ".join("?" * n_fields)
    stmt = (
        f"INSERT INTO {qualified(table, dialect=SQLITE)} {column_list(schema, dialect=SQLITE)} "
        f"VALUES ({placeholders})"
    )
    count = 0

    def adapted() -> Iterator[tuple[Any, ...]]:
        nonlocal count
        for row in rows:
            if len(row) != n_fields:
                raise RowError(
                    f"row has {len(row)} values, expected {n_fields}",
                    where=f"table {table!r} row {count + 1}",
                )
            count += 1
            yield tuple(
                None if v is None else (a(v) if a is not None else v)
                for a, v in zip(adapters, row, strict=True)
            )

    try:
        conn.executemany(stmt, adapted())
    except sqlite3.Error as exc:
        raise TdtpError(f"writing table {table!r} failed near row {count}: {exc}") from exc
    return count


def decode_lines(schema: Schema, lines: Iterable[str], table: str) -> Iterator[tuple[Any, ...]]:
    """Row lines -> Python rows, errors naming the table and row."""
    decoder = RowDecoder(schema)
    for i, line in enumerate(lines, 1):
        try:
            yield decoder.decode(line)
        except RowError as exc:
            raise exc.at(f"table {table!r} row {i}") from exc


class SqliteSink:
    """A SQLite database file as a sink; commit on a clean ``with`` exit."""

    def __init__(self, parsed: ParsedUrl) -> None:
        self._url = parsed
        path = parsed.path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(path)
        except sqlite3.Error as exc:
            raise TdtpError(f"cannot open SQLite database {path!r}: {exc}") from exc

    def create_table(self, schema: Schema, table: str, *, if_not_exists: bool = True) -> None:
        try:
            self.conn.execute(create_table_sql(SQLITE, schema, table, if_not_exists=if_not_exists))
        except sqlite3.Error as exc:
            raise TdtpError(f"cannot create table {table!r} in {self._url.path!r}: {exc}") from exc

    def write_lines(self, schema: Schema, table: str, lines: Iterable[str]) -> int:
        return write_rows(self.conn, table, schema, decode_lines(schema, lines, table))

    def write_rows(self, schema: Schema, table: str, rows: Iterable[Sequence[Any]]) -> int:
        return write_rows(self.conn, table, schema, rows)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SqliteSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self.commit()
            else:
                self.conn.rollback()
        finally:
            self.close()
