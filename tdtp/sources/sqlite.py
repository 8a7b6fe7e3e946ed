"""SQLite source: ``fetchmany`` batches, values checked per column, RowEncoder.

SQLite is dynamically typed, so a declared type is a promise the data may break:
every value is checked against its column's TDTP type (dates and timestamps SQLite
returns as text are parsed and re-rendered in TDTP form; boolean 0/1 become 1/0
booleans; a number in a DATE column is an error naming the row and column, never a
silently wrong packet).

Declared type -> TDTP type: the names ``DATE``, ``DATETIME``/``TIMESTAMP``,
``TIMESTAMPTZ``, ``TIME``, ``BOOLEAN``, ``DECIMAL``/``NUMERIC`` (with precision and
scale), ``UUID`` and ``JSON`` are honoured; otherwise SQLite's own affinity rules
decide (INT -> INTEGER, CHAR/CLOB/TEXT -> TEXT, BLOB -> BLOB, REAL/FLOA/DOUB ->
REAL).  Columns with no declared type, any other name, and query columns are typed
from a sample of their values.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tdtp.packet import (
    BLOB,
    BOOLEAN,
    DATE,
    DECIMAL,
    INTEGER,
    REAL,
    TEXT,
    TIMESTAMP,
    Field,
    RowError,
    Schema,
    SchemaError,
    TdtpError,
)
from tdtp.sinks.ddl import SQLITE, quote_ident
from tdtp.sources.base import PartitionFilter, SourceBase, SourceError, where_of
from tdtp.urls import ParsedUrl
from tdtp.values import (
    NULL_SENTINEL,
    RowEncoder,
    decimal_as_written,
    schema_for_export,
    special_values,
    text_to_value,
    value_renderer,
    written_form,
)

SAMPLE_ROWS = 1000
_PARAMS_RE = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")

Converter = Callable[[Any], Any]


def field_for_declared(name: str, declared: str, *, key: bool = False) -> Field | None:
    """TDTP field for a SQLite declared type, or None when only the values can tell."""
    upper = declared.strip().upper()
    if not upper:
        return None
    base = upper.split("(", 1)[0].strip()
    m = _PARAMS_RE.search(upper)
    n1 = int(m.group(1)) if m else 0
    n2 = int(m.group(2)) if m and m.group(2) else 0
    if "DECIMAL" in base or "NUMERIC" in base:
        return Field(name=name, type=DECIMAL, precision=n1, scale=n2 if n1 else 0, key=key)
    if base in ("BOOLEAN", "BOOL"):
        return Field(name=name, type=BOOLEAN, key=key)
    if base == "DATE":
        return Field(name=name, type=DATE, key=key)
    if base in ("DATETIME", "TIMESTAMP"):
        return Field(name=name, type=TIMESTAMP, key=key)
    if base in ("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"):
        return Field(name=name, type=TIMESTAMP, timezone="UTC", subtype="timestamptz", key=key)
    if base == "TIME":
        return Field(name=name, type=TIMESTAMP, subtype="time", key=key)
    if base in ("UUID", "JSON", "JSONB"):
        return Field(name=name, type=TEXT, subtype=base.lower(), key=key)
    # SQLite's affinity rules (datatype3.html §3.1), in its order.
    if "INT" in upper:
        return Field(name=name, type=INTEGER, key=key)
    if "CHAR" in upper or "CLOB" in upper or "TEXT" in upper:
        return Field(name=name, type=TEXT, length=n1, key=key)
    if "BLOB" in upper:
        return Field(name=name, type=BLOB, length=-1, key=key)
    if "REAL" in upper or "FLOA" in upper or "DOUB" in upper:
        return Field(name=name, type=REAL, key=key)
    return None


def field_for_values(name: str, values: Sequence[Any], *, key: bool = False) -> Field:
    """Type a column from sample values: the narrowest TDTP type that holds all of them."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return Field(name=name, type=TEXT, key=key)
    if kinds <= {int}:
        return Field(name=name, type=INTEGER, key=key)
    if kinds <= {int, float}:
        return Field(name=name, type=REAL, key=key)
    if bytes in kinds:
        return Field(name=name, type=BLOB, length=-1, key=key)
    return Field(name=name, type=TEXT, key=key)


def _converter(field: Field) -> Converter:
    """SQLite value -> Python value of the field's TDTP type, or RowError."""
    t = field.type

    def bad(v: Any) -> RowError:
        return RowError(f"{type(v).__name__} value {v!r:.60} does not fit type {t}")

    if t == INTEGER:

        def c_int(v: Any) -> Any:
            if type(v) is int:
                return v
            if isinstance(v, float) and v.is_integer():
                return int(v)
            if isinstance(v, str):
                try:
                    return int(v.strip())
                except ValueError:
                    pass
            raise bad(v)

        return c_int
    if t == REAL:

        def c_real(v: Any) -> Any:
            if type(v) is float:
                return v
            if type(v) is int:
                return float(v)
            if isinstance(v, str):
                try:
                    return float(v)
                except ValueError:
                    pass
            raise bad(v)

        return c_real
    if t == DECIMAL:

        def c_dec(v: Any) -> Any:
            if type(v) is int:
                return Decimal(v)
            if type(v) is float:
                return Decimal(repr(v))
            if isinstance(v, str):
                try:
                    return Decimal(v.strip())
                except InvalidOperation:
                    pass
            raise bad(v)

        return c_dec
    if t == BOOLEAN:

        def c_bool(v: Any) -> Any:
            if isinstance(v, (int, float)) and v in (0, 1):
                return bool(v)
            if isinstance(v, str):
                return text_to_value(field, v.strip())
            raise bad(v)

        return c_bool
    if t in (DATE, TIMESTAMP):

        def c_when(v: Any) -> Any:
            if isinstance(v, str):
                return _db_when(field, v.strip())
            raise bad(v)

        return c_when
    if t == BLOB:

        def c_blob(v: Any) -> Any:
            if type(v) is bytes:
                return v
            if isinstance(v, str):
                return v.encode("utf-8")
            raise bad(v)

        return c_blob

    def c_text(v: Any) -> Any:
        if type(v) is str:
            return v
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, bytes):
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                pass
        raise bad(v)

    return c_text


def _db_when(field: Field, text: str) -> Any:
    """A date or time text a SQLite database holds -> its value.

    TDTP's forms first (``tdtp.values.valid``); then any ISO 8601 form Python reads
    (week dates, basic format...), which applications may have stored: the database is
    the user's data, not a packet, so only what we write must be strict.  The lenient
    parse is rendered back to ISO text and read by the TDTP rules, so the field's zone
    applies the same way.
    """
    try:
        return text_to_value(field, text)
    except RowError:
        try:
            if field.type == DATE:
                iso = (date.fromisoformat(text) if len(text) <= 10 else datetime.fromisoformat(text)).isoformat()
            elif field.subtype.lower() == "time":
                iso = time.fromisoformat(text).isoformat()
            else:
                iso = datetime.fromisoformat(text).isoformat()
        except ValueError:
            raise RowError(f"{text[:60]!r} is not a valid {field.type}") from None
        return text_to_value(field, iso[:10] if field.type == DATE else iso)


_BOOL_TEXT = {0: "0", 1: "1"}


def _direct_renderer(field: Field, conv: Converter) -> Callable[[Any], str]:
    """SQLite value -> row-ready TDTP text, without the round trip through a Python value
    where the value already is in TDTP form (an int in an INTEGER column, a timestamp
    text in RFC 3339 form...).  Everything else takes ``render(conv(value))``, which
    raises the RowError of a value that does not fit.

    Why: parsing a timestamp into a datetime and rendering it back was most of a
    SQLite export's time (1M demo rows: 12 s before, measured here).
    """
    render = value_renderer(field)
    special = special_values(field)  # marker texts: parsed to their meaning, never kept as text

    def slow(v: Any) -> str:
        return render(conv(v))

    t = field.type
    if t == INTEGER:
        return lambda v: NULL_SENTINEL if v is None else (int.__repr__(v) if type(v) is int else slow(v))
    if t == TEXT:
        return lambda v: NULL_SENTINEL if v is None else render(v) if type(v) is str else slow(v)
    if t == REAL:
        return lambda v: NULL_SENTINEL if v is None else render(v) if type(v) is float else slow(v)
    if t == BOOLEAN:
        return lambda v: NULL_SENTINEL if v is None else (_BOOL_TEXT[v] if type(v) is int and v in _BOOL_TEXT else slow(v))
    if t == DECIMAL:

        def decimal(v: Any) -> str:
            if v is None:
                return NULL_SENTINEL
            if type(v) is int:
                return int.__repr__(v)
            if type(v) is float:
                r = repr(v)
                return r if "e" not in r and "n" not in r else slow(v)  # exponent, inf, nan
            return (type(v) is str and v not in special and decimal_as_written(v)) or slow(v)

        return decimal
    as_written = written_form(field)
    if as_written is not None:
        return lambda v: (
            NULL_SENTINEL
            if v is None
            else (type(v) is str and v not in special and as_written(v)) or slow(v)
        )
    return lambda v: NULL_SENTINEL if v is None else slow(v)


#: Largest database file whose rows ``estimated_rows`` counts.
COUNT_MAX_BYTES = 256 * 2**20


class SqliteSource(SourceBase):
    """Rows of a SQLite table or query, opened read-only."""

    def __init__(
        self,
        parsed: ParsedUrl,
        *,
        table: str | None = None,
        query: str | None = None,
        columns: Sequence[str] | None = None,
        where: str | None = None,
        partition: PartitionFilter | None = None,
        batch_rows: int = 10_000,
    ) -> None:
        if (table is None) == (query is None):
            raise TdtpError("a SQLite source needs exactly one of table= or query=")
        self._url = parsed
        self._batch_rows = max(1, int(batch_rows))
        self.name = table if table is not None else "query"
        self._conn = _connect(parsed)
        try:
            self._setup(table, query, columns, where, partition)
        except BaseException:
            self.close()
            raise

    def _setup(
        self,
        table: str | None,
        query: str | None,
        columns: Sequence[str] | None,
        where: str | None,
        partition: PartitionFilter | None,
    ) -> None:
        declared: dict[str, tuple[str, bool]] = {}
        if table is not None:
            rel = quote_ident(table, dialect=SQLITE, what="table")
            info = self._fetch("SELECT name, type, pk FROM pragma_table_info(?)", (table,))
            if not info:
                raise SourceError(f"table {table!r} does not exist in {self._url.redacted}")
            names = [r[0] for r in info]
            declared = {r[0]: (r[1] or "", bool(r[2])) for r in info}
        else:
            text = (query or "").strip().rstrip(";").strip()
            if not text:
                raise TdtpError("empty query")
            rel = f"({text}) AS _tdtp_q"
            names = self._describe(rel)
        if columns:
            missing = [c for c in columns if c not in names]
            if missing:
                raise SchemaError(
                    f"no column {', '.join(map(repr, missing))} in {where_of(self.name)} "
                    f"(columns: {', '.join(names)})"
                )
            picked = list(columns)
        else:
            picked = names
        self._rel = rel
        self._select_list = ", ".join(quote_ident(c, dialect=SQLITE, what="column") for c in picked)
        self._where, self._params = _where_sql(where, partition, names)
        pk_cols = [n for n, (_, k) in declared.items() if k]
        use_keys = bool(pk_cols) and all(k in picked for k in pk_cols)
        fields: list[Field | None] = [
            field_for_declared(c, declared.get(c, ("", False))[0], key=use_keys and c in pk_cols)
            for c in picked
        ]
        if any(f is None for f in fields):
            sample = self._fetch(f"SELECT {self._select_list} FROM {rel} LIMIT {SAMPLE_ROWS}", ())
            fields = [
                f
                if f is not None
                else field_for_values(c, [r[i] for r in sample], key=use_keys and c in pk_cols)
                for i, (c, f) in enumerate(zip(picked, fields, strict=True))
            ]
        self.schema = schema_for_export(Schema(tuple(f for f in fields if f is not None)))
        self._converters = [_converter(f) for f in self.schema.fields]

    def _describe(self, rel: str) -> list[str]:
        try:
            cur = self._conn.execute(f"SELECT * FROM {rel} LIMIT 0")
        except sqlite3.Error as exc:
            raise SourceError(f"the query on {self._url.redacted} failed: {exc}") from exc
        names = [d[0] for d in cur.description or []]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(
                f"the query returns column(s) {', '.join(map(repr, dupes))} more than once; alias them"
            )
        return names

    def _fetch(self, stmt: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            return self._conn.execute(stmt, params).fetchall()
        except sqlite3.Error as exc:
            raise SourceError(f"reading {where_of(self.name)} in {self._url.redacted} failed: {exc}") from exc

    # ----------------------------------------------------------------- reading

    def rows(self) -> Iterator[tuple[Any, ...]]:
        row_no = 0
        for batch in self._batches():
            for raw in batch:
                row_no += 1
                yield self._typed(raw, row_no)

    def lines(self) -> Iterator[str]:
        renders = [_direct_renderer(f, c) for f, c in zip(self.schema.fields, self._converters, strict=True)]
        encoder = RowEncoder(self.schema)
        row_no = 0
        for batch in self._batches():
            for raw in batch:
                row_no += 1
                try:
                    line = "|".join([r(v) for r, v in zip(renders, raw, strict=True)])
                except RowError:  # the typed way raises it again, naming the row (and the column)
                    row = self._typed(raw, row_no)
                    try:
                        line = encoder.encode(row)
                    except RowError as exc:
                        raise exc.at(where_of(self.name, row_no)) from exc
                yield line

    def _typed(self, raw: tuple[Any, ...], row_no: int) -> tuple[Any, ...]:
        """One SQLite row as Python values of the schema's types; a value that does not fit names its row and column."""
        convs = self._converters
        try:
            return tuple([None if v is None else c(v) for c, v in zip(convs, raw, strict=True)])
        except RowError as exc:
            fields = self.schema.fields
            col = next((f.name for f, c, v in zip(fields, convs, raw, strict=True) if _fails(c, v)), None)
            raise exc.at(where_of(self.name, row_no, col)) from exc

    def estimated_rows(self) -> int | None:
        """``count(*)`` of the export's SELECT when the database file is small (up to
        ``COUNT_MAX_BYTES``; SQLite counts from its smallest index, a few ms per 100k rows);
        None for a bigger file, where counting would read too much before the first part."""
        try:
            if Path(self._url.path).stat().st_size > COUNT_MAX_BYTES:
                return None
            (rows,) = self._conn.execute(f"SELECT count(*) FROM {self._rel}{self._where}", self._params).fetchone()
        except (OSError, sqlite3.Error):
            return None
        return int(rows)

    def _batches(self) -> Iterator[list[tuple[Any, ...]]]:
        stmt = f"SELECT {self._select_list} FROM {self._rel}{self._where}"
        try:
            cur = self._conn.execute(stmt, self._params)
            while True:
                batch = cur.fetchmany(self._batch_rows)
                if not batch:
                    break
                yield batch
        except sqlite3.Error as exc:
            raise SourceError(f"reading {where_of(self.name)} in {self._url.redacted} failed: {exc}") from exc

    def close(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()


def _fails(conv: Converter, value: Any) -> bool:
    if value is None:
        return False
    try:
        conv(value)
    except RowError:
        return True
    return False


def _connect(parsed: ParsedUrl) -> sqlite3.Connection:
    path = Path(parsed.path)
    if parsed.path == ":memory:" or not path.is_file():
        raise SourceError(f"SQLite database file {parsed.path!r} does not exist ({parsed.redacted})")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SourceError(f"cannot open SQLite database {parsed.path!r}: {exc}") from exc


def _where_sql(
    where: str | None, partition: PartitionFilter | None, names: list[str]
) -> tuple[str, tuple[Any, ...]]:
    """WHERE text and bound parameters for the user's filter and a partition.

    SQLite keeps timestamps as text in more than one form ("T" or " ", with or without
    a zone), so a day/hour partition compares ``datetime(col)`` (normalized UTC) and,
    to keep an index usable, first a text range one day wider on each side.
    """
    conds: list[str] = []
    params: list[Any] = []
    if where and where.strip():
        conds.append(f"({where.strip()})")
    if partition is not None:
        if partition.column not in names:
            raise SchemaError(f"partition column {partition.column!r} is not in the source's columns")
        col = quote_ident(partition.column, dialect=SQLITE, what="column")
        if partition.kind == "value":
            conds.append(f"{col} = ?")
            params.append(partition.value)
        else:
            start, end = partition.bounds()
            conds.append(f"{col} >= ? AND {col} < ? AND datetime({col}) >= ? AND datetime({col}) < ?")
            params += [
                (start - timedelta(days=1)).date().isoformat(),
                (end + timedelta(days=1)).date().isoformat(),
                start.strftime("%Y-%m-%d %H:%M:%S"),
                end.strftime("%Y-%m-%d %H:%M:%S"),
            ]
    if not conds:
        return "", ()
    return " WHERE " + " AND ".join(conds), tuple(params)
