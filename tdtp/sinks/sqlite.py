"""SQLite sink: ``executemany`` inserts in the caller's transaction.

Values are stored in the forms ``tdtp.sources.sqlite`` reads back as the same TDTP
values: booleans 1/0, timestamps and dates as their TDTP (RFC 3339) text, decimals as
exact decimal text (SQLite itself decides, by the column's declared type, whether to
keep it as text or turn it into a number; see ``ddl.sqlite_type``), BLOBs as bytes.
SQLite cannot store NaN (it becomes NULL) — a limitation of SQLite, not of the format.
"""

from __future__ import annotations

import marshal
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import zstandard

from tdtp.packet import (
    BOOLEAN,
    DATE,
    DECIMAL,
    INTEGER,
    REAL,
    TEXT,
    TIMESTAMP,
    Field,
    Packet,
    RowError,
    Schema,
    TdtpError,
    line_chunks,
)
from tdtp.sinks.ddl import SQLITE, column_list, qualified
from tdtp.values import (
    NO_DATE,
    NULL_SENTINEL,
    RowDecoder,
    special_values,
    split_raw,
    text_to_value,
    unescape_value,
    valid,
    value_to_text,
    written_form,
)

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


def write_rows(
    conn: sqlite3.Connection,
    table: str,
    schema: Schema,
    rows: Iterable[Sequence[Any]],
    *,
    stored: bool = False,
) -> int:
    """Insert Python rows with ``executemany`` (caller's transaction); returns the count.

    ``stored``: the rows already hold what SQLite stores (:func:`stored_rows`, :func:`stored_chunks`), so
    they go to ``executemany`` as they are, without a Python call per value.
    """
    n_fields = len(schema.fields)
    placeholders = ", ".join("?" * n_fields)
    stmt = (
        f"INSERT INTO {qualified(table, dialect=SQLITE)} {column_list(schema, dialect=SQLITE)} "
        f"VALUES ({placeholders})"
    )
    if stored:
        before = conn.total_changes
        try:
            conn.executemany(stmt, rows)
        except (sqlite3.Error, ValueError) as exc:
            # executemany stops at the failing row; the rows before it were inserted.
            at = conn.total_changes - before + 1
            of = f" of {len(rows)}" if isinstance(rows, Sized) else ""
            raise TdtpError(f"writing table {table!r} failed at row {at}{of}: {exc}") from exc
        return conn.total_changes - before
    adapters = [_adapter(f) for f in schema.fields]
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


def _stored_converter(field: Field) -> Callable[[str], Any]:
    """Unescaped value text -> what SQLite stores for it: ``adapter(parse(text))``.

    The composition costs a parse into a Python object (datetime, Decimal) and a
    render back to text for most timestamps, dates and decimals, whose text already
    is the stored form; and those objects made worker -> writer pickling several
    times dearer than plain str/int/float.  So the common forms are checked (and
    validated) and kept as they are; the rest, errors included, go the long way.
    """
    special = special_values(field)
    adapt = _adapter(field) or _generic

    def slow(s: str) -> Any:
        v = text_to_value(field, s)
        return None if v is None else adapt(v)

    def specials_first(fast: Callable[[str], Any]) -> Callable[[str], Any]:
        def conv(s: str) -> Any:
            if s in special:
                return slow(s)
            try:
                return fast(s)
            except ValueError:
                return slow(s)  # raises the RowError that names the value

        return conv

    def kept_or_slow(as_written: Callable[[str], str | None]) -> Callable[[str], Any]:
        """Texts already in TDTP's written form are what SQLite stores: keep them."""
        return lambda s: (s not in special and as_written(s)) or slow(s)

    t = field.type
    if t == INTEGER:
        return specials_first(valid.integer)
    if t == REAL:
        return specials_first(valid.real)  # finite: NaN (stored as NULL) comes only from a marker
    if t == TEXT:
        return lambda s: slow(s) if s in special else s
    if t == BOOLEAN:
        ints = {"1": 1, "0": 0}
        return lambda s: ints[s] if s in ints and s not in special else slow(s)
    as_written = written_form(field)
    return kept_or_slow(as_written) if as_written is not None else slow


@dataclass(slots=True)
class StoredChunks:
    """A part's rows as what SQLite stores, marshalled and zstd-packed a chunk of rows at a time.

    Why: the importer's workers convert, the one writing process inserts.  As Python
    tuples, a part of 7 MiB of rows was ~40 MB of objects in the worker, again in
    the pickle between them and again in the writer; marshalled chunks of 4096 rows
    are bytes (about half the row text; zstd level 1 packs that ~3x more for a few ms
    of the worker's time), and the writer turns one chunk at a time back into tuples
    while ``executemany`` consumes them.  Only processes of one interpreter exchange
    them (marshal's format is the interpreter's own).
    """

    blobs: list[bytes]
    rows: int

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        unpack = zstandard.ZstdDecompressor().decompress
        for blob in self.blobs:
            yield from marshal.loads(unpack(blob))

    def __len__(self) -> int:
        return self.rows


def stored_chunks(packet: Packet, *, chunk_rows: int = 4096) -> StoredChunks:
    """A decoded packet's rows as what SQLite stores, marshalled in chunks (see :class:`StoredChunks`)."""
    part = f"part {packet.header.part_number}: " if packet.header.part_number else ""
    pack = zstandard.ZstdCompressor(level=1).compress
    blobs = [
        pack(marshal.dumps(stored_rows(packet.schema, lines, where=part, first=start + 1)))
        for start, lines in line_chunks(packet.rows, chunk_rows)
    ]
    return StoredChunks(blobs, len(packet.rows))


def stored_rows(
    schema: Schema, lines: Sequence[str], *, where: str = "", first: int = 1
) -> list[tuple[Any, ...]]:
    """Row lines -> rows of what SQLite stores; ``where`` prefixes error locations,
    which number rows from ``first``.

    Stores the same as adapting ``RowDecoder(schema).decode(line)`` value by value
    (the tests hold them together); errors name row and field the same way.
    """
    if schema.dictionary:  # v1.4 tokens expand before parsing: the general decoder knows how
        return _stored_rows_via_values(schema, lines, where, first)
    convs = [_stored_converter(f) for f in schema.fields]
    n = len(convs)
    out: list[tuple[Any, ...]] = []
    for i, line in enumerate(lines, start=first):
        try:
            texts = line.split("|") if "\\" not in line else _raw_texts(line)
            if len(texts) != n:
                raise _arity(schema, len(texts))
            out.append(tuple([None if s is None else c(s) for c, s in zip(convs, texts, strict=True)]))
        except RowError as exc:
            raise exc.at(f"{where}row {i}") from None
    return out


def _raw_texts(line: str) -> list[str | None]:
    """A line with escapes -> unescaped value texts; the NULL sentinel becomes None."""
    return [None if s == NULL_SENTINEL else unescape_value(s) for s in split_raw(line)]


def _stored_rows_via_values(
    schema: Schema, lines: Sequence[str], where: str, first: int
) -> list[tuple[Any, ...]]:
    adapters = [_adapter(f) or _generic for f in schema.fields]
    decoder = RowDecoder(schema)
    out: list[tuple[Any, ...]] = []
    for i, line in enumerate(lines, start=first):
        try:
            values = decoder.decode(line)
        except RowError as exc:
            raise exc.at(f"{where}row {i}") from None
        out.append(tuple(None if v is None else a(v) for a, v in zip(adapters, values, strict=True)))
    return out


def _arity(schema: Schema, got: int) -> RowError:
    return RowError(f"row has {got} fields, expected {len(schema.fields)} ({', '.join(schema.names)})")
