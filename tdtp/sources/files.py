"""File sources: CSV, JSON array and JSONL (plain or .gz), read in bounded batches.

Python only cuts the file into batches of ``batch_rows`` records (CSV records by
quote parity, so quoted line breaks stay inside their record; JSONL by line; JSON
array elements with an incremental decoder); polars parses each batch with one
schema.  So memory holds one batch, a gzip file is decompressed as it is read, and a
file that is still being written (a pipe) yields its first rows at once.

Types come from polars' inference over the first batch (capped at ``SAMPLE_ROWS``):
integers, floats, booleans; ISO dates and timestamps (a trailing ``Z`` or offset
makes a UTC timestamp); nested JSON values become TEXT with subtype ``json``;
anything ambiguous stays TEXT.  A later value that does not fit its column's type is
a RowError naming the file and column, never a silent NULL.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path
from typing import IO, Any

import polars as pl

from tdtp.packet import (
    BLOB,
    BOOLEAN,
    DATE,
    INTEGER,
    REAL,
    TEXT,
    TIMESTAMP,
    Field,
    RowError,
    Schema,
    SchemaError,
)
from tdtp.sources.base import PartitionFilter, SourceBase, SourceError, where_of
from tdtp.urls import CSV, JSON, JSONL, ParsedUrl
from tdtp.values import NULL_SENTINEL, XML_ILLEGAL_RE, escape_value, schema_for_export, value_to_text

SAMPLE_ROWS = 10_000
_READ_CHUNK = 1 << 16
_ILLEGAL_PL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x{fffe}\x{ffff}]"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_TS = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(?P<zone>Z|[+-]\d{2}:?\d{2})?$")
_INT_TYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


class FileSource(SourceBase):
    """Rows of one CSV / JSON / JSONL file; ``table`` only names the rows in packets."""

    def __init__(
        self,
        parsed: ParsedUrl,
        *,
        table: str | None = None,
        columns: Sequence[str] | None = None,
        where: str | None = None,
        partition: PartitionFilter | None = None,
        batch_rows: int = 10_000,
    ) -> None:
        self._url = parsed
        self._path = Path(parsed.path)
        self._batch_rows = max(1, int(batch_rows))
        stem = self._path.name.split(".", 1)[0] or self._path.name
        self.name = table or stem
        if not self._path.is_file():
            raise SourceError(f"file {parsed.path!r} does not exist ({parsed.redacted})")
        self._open_files: list[IO[Any]] = []
        self._read_schema, self._temporal = self._infer()
        names = list(self._read_schema.names())
        if columns:
            missing = [c for c in columns if c not in names]
            if missing:
                raise SchemaError(
                    f"no column {', '.join(map(repr, missing))} in file {parsed.path!r} (columns: {', '.join(names)})"
                )
            self._columns = list(columns)
        else:
            self._columns = names
        self._filter = _filter_expr(where, partition, names, self._read_schema, self._temporal)
        fields = [
            _field_for(c, self._typed_dtype(c), subtype="json" if c in self._nested else "")
            for c in self._columns
        ]
        self.schema = schema_for_export(Schema(tuple(fields)))

    def estimated_rows(self) -> int | None:
        """CSV / JSONL: the file's size over the mean line length of its first MiB (one line a
        row; a CSV header line is taken off).  None for gzip and JSON, and with a filter."""
        if self._url.gzip or self._url.scheme not in (CSV, JSONL) or self._filter is not None:
            return None
        try:
            size = self._path.stat().st_size
            with open(self._path, "rb") as fh:
                sample = fh.read(2**20)
        except OSError:
            return None
        lines = sample.count(b"\n") + (0 if not sample or sample.endswith(b"\n") else 1)
        if not lines:
            return None
        rows = round(size * lines / len(sample)) if len(sample) < size else lines
        return max(0, rows - (1 if self._url.scheme == CSV else 0))

    # ----------------------------------------------------------------- schema

    def _infer(self) -> tuple[pl.Schema, dict[str, pl.DataType]]:
        """Read schema (what polars parses each batch with) and temporal casts of text columns."""
        first = next(self._raw_batches(SAMPLE_ROWS), None)  # a separate read: the sample is not kept
        if first is None:
            raise SourceError(f"file {self._url.path!r} has no header or rows")
        try:
            if self._url.scheme == CSV:
                df = pl.read_csv(io.BytesIO(first), try_parse_dates=True, infer_schema_length=None)
            else:
                df = (
                    pl.read_ndjson(io.BytesIO(first), infer_schema_length=None)
                    if first.strip()
                    else pl.DataFrame()
                )
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"cannot read file {self._url.path!r}: {_pl_message(exc)}") from exc
        schema = dict(df.schema)
        temporal: dict[str, pl.DataType] = {}
        for name, dtype in schema.items():
            if isinstance(dtype, (pl.Struct, pl.List, pl.Array, pl.Object)) or dtype == pl.Null:
                schema[name] = pl.String
            elif dtype == pl.String and self._url.scheme != CSV:
                kind = _temporal_kind(df[name])
                if kind is not None:
                    temporal[name] = kind
        for name, dtype in schema.items():
            if dtype == pl.Null:
                schema[name] = pl.String
        self._nested = {n for n, d in df.schema.items() if isinstance(d, (pl.Struct, pl.List, pl.Array))}
        return pl.Schema(schema), temporal

    def _typed_dtype(self, name: str) -> pl.DataType:
        return self._temporal.get(name) or self._read_schema[name]

    # ----------------------------------------------------------------- batches

    def _raw_batches(self, first_size: int | None = None) -> Iterator[bytes]:
        """The file cut into batches of whole records (CSV: each starts with the header)."""
        fh = self._open()
        try:
            if self._url.scheme == CSV:
                yield from _csv_batches(fh, self._batch_rows, first_size)
            elif self._url.scheme == JSON:
                yield from _json_array_batches(fh, self._batch_rows, first_size, self._url.path)
            else:
                yield from _jsonl_batches(fh, self._batch_rows, first_size)
        finally:
            fh.close()

    def _open(self) -> IO[bytes]:
        try:
            if self._url.gzip:
                return gzip.open(self._path, "rb")  # type: ignore[return-value]
            return open(self._path, "rb")  # noqa: SIM115 - closed by the batch generator
        except OSError as exc:
            raise SourceError(f"cannot open file {self._url.path!r}: {exc}") from exc

    def frames(self) -> Iterator[pl.DataFrame]:
        """Typed, filtered batches of at most ``batch_rows`` rows each."""
        for raw in self._raw_batches():
            try:
                if self._url.scheme == CSV:
                    df = pl.read_csv(io.BytesIO(raw), schema=self._read_schema)
                else:
                    df = pl.read_ndjson(io.BytesIO(raw), schema=self._read_schema)
                casts = [_temporal_cast(n, d) for n, d in self._temporal.items()]
                if casts:
                    df = df.with_columns(casts)
                if self._filter is not None:
                    df = df.filter(self._filter)
                df = df.select(self._columns)
            except pl.exceptions.PolarsError as exc:
                raise RowError(f"{_pl_message(exc)}", where=f"file {self._url.path!r}") from exc
            if df.height:
                yield df

    # ----------------------------------------------------------------- reading

    def rows(self) -> Iterator[tuple[Any, ...]]:
        for df in self.frames():
            yield from df.iter_rows()

    def lines(self) -> Iterator[str]:
        row_no = 0
        for df in self.frames():
            texts = [self._text_column(f, df.get_column(f.name), row_no) for f in self.schema.fields]
            joined = pl.DataFrame(texts).select(
                pl.concat_str([pl.col(s.name).fill_null(NULL_SENTINEL) for s in texts], separator="|")
            )
            row_no += df.height
            yield from joined.to_series().to_list()

    def _text_column(self, field: Field, s: pl.Series, first_row: int) -> pl.Series:
        """One column as value-escaped TDTP text (null stays null): vectorised where exact."""
        t, dtype = field.type, s.dtype
        if t == INTEGER and dtype in _INT_TYPES:
            return s.cast(pl.String)
        if t == BOOLEAN:
            return s.cast(pl.Int8).cast(pl.String)
        if t == DATE and dtype == pl.Date:
            return s.cast(pl.String)
        if t == TEXT and dtype == pl.String:
            bad = s.str.contains(_ILLEGAL_PL)
            if bad.any():
                i = int(bad.arg_max() or 0)
                m = XML_ILLEGAL_RE.search(s[i])
                char = ord(m.group()) if m else 0
                raise RowError(
                    f"value holds character U+{char:04X}, which XML 1.0 cannot carry",
                    where=where_of(self.name, first_row + i + 1, field.name),
                )
            return (
                s.str.replace_all("\\", "\\\\", literal=True)
                .str.replace_all("|", "\\|", literal=True)
                .str.replace_all("\n", "\\n", literal=True)
            )
        out: list[str | None] = []
        for i, v in enumerate(s.to_list()):
            if v is None:
                out.append(None)
                continue
            try:
                out.append(escape_value(value_to_text(field, v)))
            except RowError as exc:
                raise exc.at(where_of(self.name, first_row + i + 1)) from exc
        return pl.Series(s.name, out, dtype=pl.String)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- cutting


def _csv_batches(fh: IO[bytes], batch_rows: int, first_size: int | None) -> Iterator[bytes]:
    """CSV records in batches; a line ends a record only when its quotes are balanced."""
    header: list[bytes] = []
    odd = False
    for line in fh:
        if not header:
            line = line.removeprefix(b"\xef\xbb\xbf")
        header.append(line)
        odd ^= bool(line.count(b'"') & 1)
        if not odd:
            break
    if not header:
        return
    head = b"".join(header)
    if not head.endswith(b"\n"):
        head += b"\n"
    size = first_size or batch_rows
    buf: list[bytes] = []
    records = 0
    for line in fh:
        buf.append(line)
        odd ^= bool(line.count(b'"') & 1)
        if odd:
            continue
        if line.strip():
            records += 1
        if records >= size:
            yield head + b"".join(buf)
            buf, records, size = [], 0, batch_rows
    if buf or records == 0:
        yield head + b"".join(buf)


def _jsonl_batches(fh: IO[bytes], batch_rows: int, first_size: int | None) -> Iterator[bytes]:
    size = first_size or batch_rows
    buf: list[bytes] = []
    for line in fh:
        if not line.strip():
            continue
        buf.append(line if line.endswith(b"\n") else line + b"\n")
        if len(buf) >= size:
            yield b"".join(buf)
            buf, size = [], batch_rows
    if buf:
        yield b"".join(buf)


def _json_array_batches(fh: IO[bytes], batch_rows: int, first_size: int | None, path: str) -> Iterator[bytes]:
    """Elements of a top-level JSON array, re-cut as NDJSON batches for polars."""
    size = first_size or batch_rows
    buf: list[bytes] = []
    for text in _json_array_elements(io.TextIOWrapper(fh, encoding="utf-8-sig"), path):
        # Line breaks outside strings are whitespace (inside strings JSON escapes them).
        buf.append(text.replace("\r", " ").replace("\n", " ").encode("utf-8") + b"\n")
        if len(buf) >= size:
            yield b"".join(buf)
            buf, size = [], batch_rows
    if buf:
        yield b"".join(buf)


def _json_array_elements(fh: IO[str], path: str) -> Iterator[str]:
    """Source text of each object in ``[ {...}, {...} ]``, reading the file incrementally."""
    decoder = json.JSONDecoder()
    buf, pos, eof = "", 0, False
    chunk = _READ_CHUNK

    def fill() -> bool:
        nonlocal buf, pos, eof, chunk
        data = fh.read(chunk)
        if not data:
            eof = True
            return False
        buf = buf[pos:] + data
        pos = 0
        chunk = min(chunk * 2, 1 << 24) if len(data) == chunk else chunk
        return True

    def skip_ws() -> str:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if not fill():
                return ""

    if skip_ws() != "[":
        raise SourceError(
            f"file {path!r} is not a JSON array of objects (use jsonl:// for one object per line)"
        )
    pos += 1
    first = True
    while True:
        ch = skip_ws()
        if ch == "]":
            return
        if not first:
            if ch != ",":
                raise SourceError(f"file {path!r}: expected ',' or ']' in the JSON array, got {ch!r}")
            pos += 1
            ch = skip_ws()
        if ch != "{":
            raise SourceError(
                f"file {path!r}: JSON array elements must be objects, got {ch or 'end of file'!r}"
            )
        while True:
            try:
                _, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if eof or not fill():
                    raise SourceError(f"file {path!r}: bad JSON: {exc}") from exc
        yield buf[pos:end]
        pos = end
        first = False


# --------------------------------------------------------------------------- types


def _temporal_kind(s: pl.Series) -> pl.DataType | None:
    """Date/Datetime when every sampled value of a text column is an ISO date/timestamp."""
    values = [v for v in s.to_list() if v is not None]
    if not values:
        return None
    if all(_ISO_DATE.match(v) for v in values):
        return pl.Date()
    matches = [_ISO_TS.match(v) for v in values]
    if all(matches):
        zoned = [m is not None and m.group("zone") is not None for m in matches]
        if all(zoned):
            return pl.Datetime("us", "UTC")
        if not any(zoned):
            return pl.Datetime("us")
    return None


def _temporal_cast(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name).str.replace(" ", "T", literal=True)
    if dtype == pl.Date:
        return col.str.to_date("%Y-%m-%d").alias(name)
    tz = getattr(dtype, "time_zone", None)
    return col.str.to_datetime(time_unit="us", time_zone=tz).alias(name)


def _field_for(name: str, dtype: pl.DataType, *, subtype: str = "") -> Field:
    if dtype in _INT_TYPES:
        return Field(name=name, type=INTEGER)
    if dtype in (pl.Float32, pl.Float64):
        return Field(name=name, type=REAL)
    if dtype == pl.Boolean:
        return Field(name=name, type=BOOLEAN)
    if dtype == pl.Date:
        return Field(name=name, type=DATE)
    if isinstance(dtype, pl.Datetime):
        return Field(name=name, type=TIMESTAMP, timezone="UTC" if dtype.time_zone else "")
    if dtype == pl.Time:
        return Field(name=name, type=TIMESTAMP, subtype="time")
    if isinstance(dtype, pl.Decimal):
        return Field(name=name, type="DECIMAL", precision=dtype.precision or 0, scale=dtype.scale or 0)
    if dtype == pl.Binary:
        return Field(name=name, type=BLOB, length=-1)
    return Field(name=name, type=TEXT, subtype=subtype)


def _filter_expr(
    where: str | None,
    partition: PartitionFilter | None,
    names: list[str],
    read_schema: pl.Schema,
    temporal: dict[str, pl.DataType],
) -> pl.Expr | None:
    """The user's ``where`` (as polars SQL) and the partition as one polars predicate."""
    conds: list[pl.Expr] = []
    if where and where.strip():
        try:
            conds.append(pl.sql_expr(where))
        except pl.exceptions.PolarsError as exc:
            raise SchemaError(f"cannot use where={where!r} on a file: {_pl_message(exc)}") from exc
    if partition is not None:
        if partition.column not in names:
            raise SchemaError(f"partition column {partition.column!r} is not in the file's columns")
        col = pl.col(partition.column)
        dtype = temporal.get(partition.column) or read_schema[partition.column]
        if partition.kind == "value":
            conds.append(col.cast(pl.String) == partition.value)
        else:
            start, end = partition.bounds()
            if isinstance(dtype, pl.Datetime):
                naive = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if dtype.time_zone else col
                conds.append((naive >= start) & (naive < end))
            elif dtype == pl.Date:
                as_ts = col.cast(pl.Datetime("us"))
                conds.append((as_ts >= start) & (as_ts < end))
            else:  # text: compare the ISO prefix
                width = 10 if partition.kind == "day" else 13
                key = start.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H")[:width]
                conds.append(
                    col.cast(pl.String).str.slice(0, width).str.replace(" ", "T", literal=True) == key
                )
    if not conds:
        return None
    out = conds[0]
    for c in conds[1:]:
        out = out & c
    return out


def _pl_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
