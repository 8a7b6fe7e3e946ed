"""PostgreSQL source: a table or query read as TDTP row lines.

Fast path (``fast=True``, the exporter's): one ``COPY (SELECT ...) TO STDOUT`` in text
format with ``|`` as delimiter.  COPY text already escapes ``\\``, ``|`` and line feed
exactly as TDTP does and writes NULL as ``\\N`` (our NULL sentinel), so the server
does the per-value work: each column is selected through an expression that renders
its TDTP text (booleans as 1/0, timestamps as RFC 3339, bytea as base64, floats without
exponent).  Python only joins the protocol's data blocks into chunks, decodes them and
splits lines; the rare COPY escapes TDTP lacks (``\\t``, ``\\r``, ``\\b``, ``\\f``,
``\\v``) are fixed per chunk, and only when a chunk contains a backslash before one of
those letters.

Slow path (``fast=False``, and ``rows()``): a server-side cursor read with
``fetchmany`` and :class:`tdtp.values.RowEncoder`.  Both paths give identical lines
(tested), so the slow one is the reference the fast one is checked against.

The session is set to UTC, ISO dates, shortest float output and read-only, so the
same table renders the same way whatever the server's defaults are.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

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
from tdtp.sinks.ddl import PG_MAX_IDENT_BYTES, qualified, quote_ident, split_qualified, sql_literal
from tdtp.sources.base import PartitionFilter, SourceBase, SourceError, where_of
from tdtp.sources.pg_copy import copy_out_chunks
from tdtp.urls import ParsedUrl
from tdtp.values import XML_ILLEGAL_RE, RowEncoder, schema_for_export, split_raw

# Session settings that make the server's text output the TDTP text.
_SESSION_SETTINGS = (
    ("default_transaction_read_only", "on"),  # a source never writes, whatever the user's query says
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),  # shortest round-trip output (PostgreSQL 12+)
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
)

# Type OIDs of the built-in types with a TDTP type of their own.
_OID_TYPES: dict[int, str] = {
    20: INTEGER, 21: INTEGER, 23: INTEGER, 26: INTEGER,  # int8 int2 int4 oid
    700: REAL, 701: REAL,
    1700: DECIMAL,
    25: TEXT, 1043: TEXT, 1042: TEXT, 19: TEXT, 18: TEXT,  # text varchar bpchar name "char"
    16: BOOLEAN,
    1082: DATE,
    1114: TIMESTAMP, 1184: TIMESTAMP, 1083: TIMESTAMP,  # timestamp timestamptz time
    17: BLOB,
}  # fmt: skip
_FLOAT4, _FLOAT8, _TIMESTAMP, _TIMESTAMPTZ, _TIME, _BOOL, _BYTEA = 700, 701, 1114, 1184, 1083, 16, 17
_DATE = 1082
_VARCHAR, _BPCHAR = 1043, 1042

# Fast-path chunking: join protocol messages (one per row) into chunks of this size.
_CHUNK_BYTES = 256 * 1024
# COPY text escapes that TDTP does not have; a false positive ("\\t") only costs a scan.
_COPY_ONLY_ESCAPE = re.compile(rb"\\[trbfv]")
_COPY_ESCAPE_PAIR = re.compile(rb"\\([\\trbfv])")
_COPY_FIX = {b"\\": b"\\\\", b"t": b"\t", b"r": b"\r"}
# Raw bytes XML 1.0 cannot carry that COPY passes through (it escapes \b \t \n \v \f \r),
# plus U+FFFE/U+FFFF.  Detection is bytes.translate + a length compare (~10x faster than
# a regex scan); the regex only locates the culprit for the error message.
_ILLEGAL_CONTROL = bytes([*range(0x00, 0x08), *range(0x0E, 0x20)])
_NONCHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")
_ILLEGAL_BYTES = re.compile(rb"[\x00-\x07\x0e-\x1f]|\xef\xbf[\xbe\xbf]")


@dataclass(frozen=True, slots=True)
class _Column:
    """One selected column: its TDTP field plus what the SQL builders need."""

    field: Field
    oid: int
    sql: sql.Composable  # the column reference


class PostgresSource(SourceBase):
    """Rows of a PostgreSQL table or query; see the module docstring for the two paths."""

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
        fast: bool = True,
    ) -> None:
        if (table is None) == (query is None):
            raise TdtpError("a PostgreSQL source needs exactly one of table= or query=")
        self._url = parsed
        self._batch_rows = max(1, int(batch_rows))
        self._fast = fast
        self.name = table if table is not None else "query"
        self._conn = _connect(parsed)
        try:
            self._setup(table, query, columns, where, partition)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- setup

    def _setup(
        self,
        table: str | None,
        query: str | None,
        columns: Sequence[str] | None,
        where: str | None,
        partition: PartitionFilter | None,
    ) -> None:
        if table is not None:
            rel, oid = self._resolve_table(table)
        else:
            text = (query or "").strip().rstrip(";").strip()
            if not text:
                raise TdtpError("empty query")
            rel, oid = sql.SQL("({}) AS _tdtp_q").format(sql.SQL(text)), None
        self._rel = rel
        described = self._describe(rel)
        available = {name for name, _ in described}
        if columns:
            missing = [c for c in columns if c not in available]
            if missing:
                raise SchemaError(
                    f"no column {', '.join(map(repr, missing))} in {self._what()} "
                    f"(columns: {', '.join(name for name, _ in described)})"
                )
            by_name = dict(described)
            picked = [(c, by_name[c]) for c in columns]
        else:
            picked = described
        keys = self._primary_key(oid) if oid is not None else []
        use_keys = bool(keys) and all(k in {n for n, _ in picked} for k in keys)
        self._columns = [
            _Column(
                field=_field_for(name, col, key=use_keys and name in keys),
                oid=col.type_code,
                sql=sql.SQL(quote_ident(name, what="column")),
            )
            for name, col in picked
        ]
        self._fix_text_subtypes()
        self.schema = schema_for_export(Schema(tuple(c.field for c in self._columns)))
        self._where = self._where_sql(where, partition, available)

    def _what(self) -> str:
        return f"table {self.name!r} at {self._url.redacted}" if self.name != "query" else "the query"

    def _resolve_table(self, table: str) -> tuple[sql.Composable, int]:
        """Find the table (or view) and return its quoted name and OID, or fail naming it.

        ``schema.table`` is looked up as two identifiers, each checked on its own (a
        60-letter table in ``public`` is fine); only then, and only if the whole text
        could be one identifier, as a single name with a dot in it.
        """
        schema_part, _ = split_qualified(table)
        candidates = [qualified(table)]
        if schema_part is not None and len(table.encode("utf-8")) <= PG_MAX_IDENT_BYTES:
            candidates.append(quote_ident(table, what="table"))  # a name with a dot in it
        for cand in candidates:
            row = self._query_one("SELECT to_regclass(%s)::oid", (cand,))
            if row is not None and row[0] is not None:
                return sql.SQL(cand), int(row[0])
        raise SourceError(f"table {table!r} does not exist in {self._url.redacted}")

    def _describe(self, rel: sql.Composable) -> list[tuple[str, Any]]:
        """Names and descriptions of every column of the relation (a LIMIT 0 query)."""
        stmt = sql.SQL("SELECT * FROM {} LIMIT 0").format(rel)
        try:
            with self._conn.cursor() as cur:
                cur.execute(stmt)
                desc = list(cur.description or [])
        except psycopg.Error as exc:
            self._conn.rollback()
            raise SourceError(f"cannot read {self._what()}: {_pg_message(exc, self._url)}") from exc
        finally:
            if not self._conn.broken:
                self._conn.rollback()
        names = [d.name for d in desc]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(
                f"{self._what()} returns column(s) {', '.join(map(repr, dupes))} more than once; alias them"
            )
        return [(d.name, d) for d in desc]

    def _primary_key(self, oid: int) -> list[str]:
        rows = self._query_all(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s AND i.indisprimary",
            (oid,),
        )
        return [r[0] for r in rows]

    def _fix_text_subtypes(self) -> None:
        """Give TEXT columns of non-text types (uuid, jsonb, arrays, enums...) their subtype."""
        unknown = sorted({c.oid for c in self._columns if c.oid not in _OID_TYPES})
        if not unknown:
            return
        info = {
            int(oid): (name, cat)
            for oid, name, cat in self._query_all(
                "SELECT oid, typname, typcategory FROM pg_type WHERE oid = ANY(%s)", (unknown,)
            )
        }
        fixed = []
        for c in self._columns:
            if c.oid in _OID_TYPES:
                fixed.append(c)
                continue
            name, cat = info.get(c.oid, ("", ""))
            sub = "array" if cat == "A" else "enum" if cat == "E" else name
            fixed.append(_Column(field=_with_subtype(c.field, sub), oid=c.oid, sql=c.sql))
        self._columns = fixed

    def _where_sql(
        self, where: str | None, partition: PartitionFilter | None, available: set[str]
    ) -> sql.Composable:
        conds: list[sql.Composable] = []
        if where and where.strip():
            conds.append(sql.SQL("({})").format(sql.SQL(where.strip())))
        if partition is not None:
            if partition.column not in available:
                raise SchemaError(f"partition column {partition.column!r} is not in {self._what()}")
            col = sql.SQL(quote_ident(partition.column, what="column"))
            if partition.kind == "value":
                conds.append(sql.SQL("{} = {}").format(col, sql.Literal(partition.value)))
            else:
                start, end = partition.bounds()
                conds.append(
                    sql.SQL("{c} >= {a} AND {c} < {b}").format(
                        c=col, a=sql.Literal(start), b=sql.Literal(end)
                    )
                )
        if not conds:
            return sql.SQL("")
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds)

    # ----------------------------------------------------------------- SQL

    def _select(self, exprs: list[sql.Composable]) -> sql.Composed:
        return sql.SQL("SELECT {} FROM {}{}").format(sql.SQL(", ").join(exprs), self._rel, self._where)

    def estimated_rows(self) -> int | None:
        """The planner's row estimate for the export's SELECT (from ``reltuples`` and the
        statistics: a table, a filter or a query alike; no row is read)."""
        stmt = sql.SQL("EXPLAIN (FORMAT JSON) ") + self._select([sql.SQL("1")])
        try:
            with self._conn.cursor() as cur:
                cur.execute(stmt)
                (plan,) = cur.fetchone() or (None,)
        except psycopg.Error:
            return None
        try:
            rows = int(plan[0]["Plan"]["Plan Rows"])
        except (TypeError, KeyError, IndexError, ValueError):
            return None
        return rows if rows > 1 else None  # 1: the planner's floor, e.g. an empty estimate

    def copy_sql(self) -> str:
        """The fast path's COPY statement (public so benchmarks and tests can show it)."""
        exprs = [_fast_expr(c) for c in self._columns]
        stmt = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT text, DELIMITER '|')").format(self._select(exprs))
        return stmt.as_string(self._conn)

    def cursor_sql(self) -> str:
        """The slow path's SELECT: native types psycopg maps to what RowEncoder renders."""
        return self._select([_cursor_expr(c) for c in self._columns]).as_string(self._conn)

    # ----------------------------------------------------------------- reading

    def lines(self) -> Iterator[str]:
        if self._fast:
            return self._copy_lines()
        return self._cursor_lines()

    def rows(self) -> Iterator[tuple[Any, ...]]:
        return self._cursor_rows()

    def blocks(self) -> Iterator[bytes]:
        if self._fast:
            return self._copy_blocks()
        return super().blocks()

    def _copy_lines(self) -> Iterator[str]:
        for block in self._copy_blocks():
            lines = block.decode("utf-8").split("\n")
            lines.pop()  # after the final LF
            yield from lines

    def _copy_blocks(self) -> Iterator[bytes]:
        """COPY's output as blocks of whole TDTP row lines (each ending in LF), still bytes."""
        stmt = self.copy_sql()
        row_no = 0  # rows emitted so far
        try:
            # libpq hands over whole rows, so every chunk ends at a line boundary.
            for data in copy_out_chunks(self._conn, stmt, _CHUNK_BYTES):
                chunk = self._fix_chunk(data, row_no)
                row_no += chunk.count(b"\n")
                yield chunk
        except psycopg.Error as exc:
            raise SourceError(f"reading {self._what()} failed: {_pg_message(exc, self._url)}") from exc
        finally:
            self._end_read()

    def _fix_chunk(self, data: bytes, first: int) -> bytes:
        """Complete COPY lines (ending in LF) -> TDTP row text: refuse XML-illegal bytes,
        turn COPY-only escapes (\\t, \\r) into the characters themselves."""
        # U+FFFE/U+FFFF need non-ASCII bytes: skip their search on ASCII chunks.
        if len(data.translate(None, _ILLEGAL_CONTROL)) != len(data) or (
            not data.isascii() and any(nc in data for nc in _NONCHARACTERS)
        ):
            bad = _ILLEGAL_BYTES.search(data)
            if bad is not None:
                self._raise_illegal(data, bad.start(), first)
        if b"\\" in data and _COPY_ONLY_ESCAPE.search(data) is not None:
            data = _COPY_ESCAPE_PAIR.sub(lambda m: self._fix_escape(m, data, first), data)
        return data  # client_encoding is UTF8, so the server has already converted and validated it

    def _fix_escape(self, m: re.Match[bytes], data: bytes, first: int) -> bytes:
        c = m.group(1)
        fixed = _COPY_FIX.get(c)
        if fixed is None:  # \b \f \v: characters XML 1.0 cannot carry
            self._raise_illegal(data, m.start(), first, char={b"b": 8, b"f": 12, b"v": 11}[c])
        return fixed  # type: ignore[return-value]

    def _raise_illegal(self, data: bytes, pos: int, first: int, char: int | None = None) -> None:
        start = data.rfind(b"\n", 0, pos) + 1
        row = first + data.count(b"\n", 0, start) + 1
        prefix = data[start:pos].decode("utf-8", "replace")
        col = len(split_raw(prefix)) - 1
        if char is None:
            end = data.find(b"\n", pos)
            rest = data[pos:end].decode("utf-8", "replace")
            m = XML_ILLEGAL_RE.search(rest)
            char = ord(m.group()) if m else data[pos]
        name = self._columns[col].field.name if 0 <= col < len(self._columns) else None
        raise RowError(
            f"value holds character U+{char:04X}, which XML 1.0 cannot carry (carry the column as BLOB)",
            where=where_of(self.name, row, name),
        )

    def _cursor_lines(self) -> Iterator[str]:
        encoder = RowEncoder(self.schema)
        row_no = 0
        for batch in self._cursor_batches():
            try:
                lines = [encoder.encode(r) for r in batch]
            except RowError:
                for i, r in enumerate(batch):
                    try:
                        encoder.encode(r)
                    except RowError as exc:
                        raise exc.at(where_of(self.name, row_no + i + 1)) from exc
                raise
            row_no += len(lines)
            yield from lines

    def _cursor_rows(self) -> Iterator[tuple[Any, ...]]:
        for batch in self._cursor_batches():
            yield from batch

    def _cursor_batches(self) -> Iterator[list[tuple[Any, ...]]]:
        stmt = self.cursor_sql()
        self._conn.autocommit = False  # a server-side cursor lives in a transaction
        try:
            with self._conn.cursor(name=f"tdtp_{uuid.uuid4().hex[:12]}") as cur:
                cur.itersize = self._batch_rows
                cur.execute(stmt)
                while True:
                    batch = cur.fetchmany(self._batch_rows)
                    if not batch:
                        break
                    yield batch
        except psycopg.DataError as exc:
            raise RowError(
                f"value cannot be read: {_pg_message(exc, self._url)}", where=where_of(self.name)
            ) from exc
        except psycopg.Error as exc:
            raise SourceError(f"reading {self._what()} failed: {_pg_message(exc, self._url)}") from exc
        finally:
            self._end_read()

    # ----------------------------------------------------------------- plumbing

    def _end_read(self) -> None:
        """End the read's transaction so no snapshot is held between reads."""
        if not self._conn.closed and not self._conn.broken:
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()
                self._conn.autocommit = True  # back to the session's default after a cursor read

    def _query_one(self, stmt: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        rows = self._query_all(stmt, params)
        return rows[0] if rows else None

    def _query_all(self, stmt: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(stmt, params)
                return list(cur.fetchall())
        except psycopg.Error as exc:
            raise SourceError(
                f"catalog query on {self._url.redacted} failed: {_pg_message(exc, self._url)}"
            ) from exc
        finally:
            self._end_read()

    def close(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None and not conn.closed:
            conn.close()


# --------------------------------------------------------------------------- helpers


def _connect(parsed: ParsedUrl) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(parsed.url, autocommit=True, connect_timeout=15)
    except psycopg.Error as exc:
        raise SourceError(f"cannot connect to {parsed.redacted}: {_pg_message(exc, parsed)}") from exc
    try:
        # One round trip for all settings: it shows in the first part's latency.
        calls = ", ".join("set_config(%s, %s, false)" for _ in _SESSION_SETTINGS)
        params = tuple(x for pair in _SESSION_SETTINGS for x in pair)
        with conn.cursor() as cur:
            cur.execute(f"SELECT {calls}", params)
        # Autocommit with read-only as the session default: every statement, the COPY
        # included, runs read-only without a BEGIN/ROLLBACK round trip around each catalog
        # query (they showed in the first part's latency).  Named cursors open their own
        # transaction (see _cursor_batches).
    except psycopg.Error as exc:
        conn.close()
        raise SourceError(
            f"cannot set up a session on {parsed.redacted}: {_pg_message(exc, parsed)}"
        ) from exc
    return conn


def _pg_message(exc: BaseException, parsed: ParsedUrl) -> str:
    """First line of a driver error, with the URL's password hidden if it slipped in."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.replace(parsed.url, parsed.redacted)


def _field_for(name: str, col: Any, *, key: bool) -> Field:
    oid = col.type_code
    tdtp_type = _OID_TYPES.get(oid, TEXT)
    if tdtp_type == DECIMAL:
        p, s = col.precision or 0, col.scale or 0
        return Field(name=name, type=DECIMAL, precision=p, scale=s if p else 0, key=key)
    if tdtp_type == TEXT:
        length = col.display_size if oid in (_VARCHAR, _BPCHAR) and col.display_size else 0
        return Field(name=name, type=TEXT, length=length, key=key)
    if oid == _TIMESTAMPTZ:
        return Field(name=name, type=TIMESTAMP, timezone="UTC", subtype="timestamptz", key=key)
    if oid == _TIME:
        return Field(name=name, type=TIMESTAMP, subtype="time", key=key)
    if tdtp_type == BLOB:
        return Field(name=name, type=BLOB, length=-1, key=key)
    return Field(name=name, type=tdtp_type, key=key)


def _with_subtype(field: Field, subtype: str) -> Field:
    return Field(name=field.name, type=TEXT, key=field.key, subtype=subtype)


def _fast_expr(c: _Column) -> sql.Composable:
    """SQL rendering one column as its TDTP text inside COPY (NULL stays NULL)."""
    col, oid = c.sql, c.oid
    if oid == _TIMESTAMPTZ:  # session TimeZone is UTC: '2026-01-05 13:00:00.5+00'
        text = sql.SQL("replace(replace({}::text, ' ', 'T'), '+00', 'Z')").format(col)
        return _in_calendar(c, text, "'0001-01-01 00:00:00+00'::timestamptz")
    if oid == _TIMESTAMP:
        return _in_calendar(c, sql.SQL("replace({}::text, ' ', 'T')").format(col), "'0001-01-01'::timestamp")
    if oid == _DATE:
        return _in_calendar(c, sql.SQL("{}::text").format(col), "'0001-01-01'::date")
    if oid == _BOOL:
        return sql.SQL("{}::int").format(col)
    if oid == _BYTEA:  # encode() breaks base64 lines every 76 characters
        return sql.SQL("translate(encode({}, 'base64'), E'\\n', '')").format(col)
    if oid in (_FLOAT4, _FLOAT8):
        return _float_expr(c)
    if c.field.type == TEXT and oid not in _OID_TYPES:
        return sql.SQL("{}::text").format(col)
    return col


def _in_calendar(c: _Column, text: sql.Composable, first: str) -> sql.Composable:
    """``text`` for dates/timestamps TDTP can carry; for ``infinity`` or BC values, stop the
    COPY with an error naming the column and the value (the server's text for them would
    otherwise travel and be refused only at import)."""
    refuse = sql.SQL("('TDTP cannot carry ' || {x}::text || ' in column ' || {name})::int::text").format(
        x=c.sql, name=sql.SQL(sql_literal(repr(c.field.name)))
    )
    return sql.SQL("CASE WHEN {x} >= {first} AND {x} < 'infinity' THEN {text} ELSE {refuse} END").format(
        x=c.sql, first=sql.SQL(first), text=text, refuse=refuse
    )


def _float_expr(c: _Column) -> sql.Composable:
    """Shortest round-trip text without exponent; specials as the field's markers.

    The server prints an exponent from 1e15 up and below 1e-4; only those values take
    the text -> numeric -> text detour (exact: numeric input parses the shortest digits).
    float4 is widened first so both paths print the exact value the column holds.
    """
    sv = c.field.specials
    x = sql.SQL("{}::float8").format(c.sql) if c.oid == _FLOAT4 else c.sql
    return sql.SQL(
        "CASE WHEN (abs({x}) < 1e15 AND abs({x}) >= 1e-4) OR {x} = 0 THEN {x}::text"
        " WHEN {x} = 'Infinity' THEN {inf} WHEN {x} = '-Infinity' THEN {ninf}"
        " WHEN {x} = 'NaN' THEN {nan} ELSE {x}::text::numeric::text END"
    ).format(
        x=x,
        inf=sql.SQL(sql_literal(sv.infinity or "INF")),
        ninf=sql.SQL(sql_literal(sv.neg_infinity or "-INF")),
        nan=sql.SQL(sql_literal(sv.nan or "NaN")),
    )


def _cursor_expr(c: _Column) -> sql.Composable:
    """SQL for the server-side cursor path: types psycopg loads to what RowEncoder renders."""
    if c.oid == _FLOAT4:
        return sql.SQL("{}::float8").format(c.sql)
    if c.field.type == TEXT and c.oid not in _OID_TYPES:
        return sql.SQL("{}::text").format(c.sql)
    return c.sql
