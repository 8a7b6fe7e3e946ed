"""CSV, JSON-array and JSONL (optionally gzip) file sinks: the URL names the file.

CSV gets a header row and NULL as an empty cell (the CSV convention; an empty string
and NULL look the same there).  Values keep their TDTP text (RFC 3339 timestamps,
base64 BLOBs, exact decimals), so CSV output of row lines needs no parsing at all.
JSON writers give typed values: numbers, true/false, null; decimals as strings
(JSON numbers would lose digits in most readers), REAL specials as their markers.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tdtp.packet import (
    DEFAULT_INF_MARKER,
    DEFAULT_NAN_MARKER,
    DEFAULT_NEG_INF_MARKER,
    Field,
    RowError,
    Schema,
)
from tdtp.sinks.sqlite import decode_lines
from tdtp.urls import CSV, JSON, ParsedUrl
from tdtp.values import NULL_SENTINEL, split_raw, unescape_value, value_to_text


class FileSink:
    """One output file per sink; ``table`` arguments only label error messages."""

    def __init__(self, parsed: ParsedUrl) -> None:
        self._url = parsed
        self._path = Path(parsed.path)
        self._fh: IO[str] | None = None
        self._schema: Schema | None = None
        self._rows_written = 0

    # ----------------------------------------------------------------- opening

    def _open(self, schema: Schema) -> IO[str]:
        if self._fh is not None:
            if self._schema is not None and schema.names != self._schema.names:
                raise RowError(f"{self._path}: a file sink holds one table; got fields {schema.names}")
            return self._fh
        self._path.parent.mkdir(parents=True, exist_ok=True)
        if self._url.gzip:
            raw = gzip.open(self._path, "wb")  # noqa: SIM115 - closed by close()
            self._fh = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        else:
            self._fh = open(self._path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close()
        self._schema = schema
        if self._url.scheme == CSV:
            csv.writer(self._fh, lineterminator="\n").writerow(schema.names)
        elif self._url.scheme == JSON:
            self._fh.write("[")
        return self._fh

    def create_table(self, schema: Schema, table: str, *, if_not_exists: bool = True) -> None:
        """Start the file (CSV header) so that an export of zero rows still leaves one."""
        self._open(schema)

    # ----------------------------------------------------------------- writing

    def write_lines(self, schema: Schema, table: str, lines: Iterable[str]) -> int:
        fh = self._open(schema)
        if self._url.scheme == CSV:
            return self._count(csv_writer(fh), _csv_cells(schema, lines, table))
        return self.write_rows(schema, table, decode_lines(schema, lines, table))

    def write_rows(self, schema: Schema, table: str, rows: Iterable[Sequence[Any]]) -> int:
        fh = self._open(schema)
        if self._url.scheme == CSV:
            fields = schema.fields
            cells = ([_csv_value(f, v) for f, v in zip(fields, row, strict=True)] for row in rows)
            return self._count(csv_writer(fh), cells)
        names = schema.names
        fields = schema.fields
        n = 0
        for row in rows:
            doc = {name: _json_value(f, v) for name, f, v in zip(names, fields, row, strict=True)}
            text = json.dumps(doc, ensure_ascii=False, allow_nan=False)
            if self._url.scheme == JSON:
                fh.write(("\n" if self._rows_written == 0 else ",\n") + text)
            else:
                fh.write(text + "\n")
            self._rows_written += 1
            n += 1
        return n

    def _count(self, writer: Any, cells: Iterator[list[str]]) -> int:
        n = 0

        def counted() -> Iterator[list[str]]:
            nonlocal n
            for c in cells:
                n += 1
                yield c

        writer.writerows(counted())
        self._rows_written += n
        return n

    def commit(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is None:
            return
        if self._url.scheme == JSON:
            self._fh.write("\n]\n" if self._rows_written else "]\n")
        self._fh.close()
        self._fh = None

    def __enter__(self) -> FileSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def csv_writer(fh: IO[str]) -> Any:
    return csv.writer(fh, lineterminator="\n")


def _csv_cells(schema: Schema, lines: Iterable[str], table: str) -> Iterator[list[str]]:
    """Row lines -> CSV cells without parsing values: NULL (sentinel or marker) -> ''."""
    markers = [f.specials.null for f in schema.fields]
    n = len(markers)
    for i, line in enumerate(lines, 1):
        raw = split_raw(line)
        if len(raw) != n:
            raise RowError(f"row has {len(raw)} fields, expected {n}", where=f"table {table!r} row {i}")
        cells = []
        for marker, text in zip(markers, raw, strict=True):
            if text == NULL_SENTINEL:
                cells.append("")
                continue
            value = unescape_value(text)
            cells.append("" if value == marker else value)
        yield cells


def _csv_value(field: Field, v: Any) -> str:
    return "" if v is None else value_to_text(field, v)


def _json_value(field: Field, v: Any) -> Any:
    """A JSON-native value where one exists without loss; otherwise the TDTP text."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        sv = field.specials
        if math.isnan(v):
            return sv.nan or DEFAULT_NAN_MARKER
        return (sv.infinity or DEFAULT_INF_MARKER) if v > 0 else (sv.neg_infinity or DEFAULT_NEG_INF_MARKER)
    if isinstance(v, Decimal):
        return format(v, "f") if v.is_finite() else value_to_text(field, v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, (datetime, date, time)):
        return value_to_text(field, v)
    return value_to_text(field, v)
