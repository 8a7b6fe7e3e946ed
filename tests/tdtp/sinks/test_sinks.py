"""Sinks: DDL and identifiers, COPY text conversion, round trips into PostgreSQL and SQLite.

The oracle for what a row line means is the TDTP reader (``RowDecoder``): whatever
lands in the database must equal what a reader decodes from the same line.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tdtp.importer.pg_copy import copy_lines
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
    SpecialValues,
    TdtpError,
)
from tdtp.parts import resolve_null_lines
from tdtp.sinks.copy_text import lines_to_copy
from tdtp.sinks.ddl import create_table_sql, qualified, quote_ident
from tdtp.sinks.sqlite import stored_rows, write_rows
from tdtp.sources import open_source
from tdtp.values import NO_DATE, RowDecoder, schema_for_export
from tests.tdtp.sources.test_sources import N_ROWS, _sqlite_db, make_every_type

STD = SpecialValues(null="[NULL]")
STD_REAL = SpecialValues(null="[NULL]", infinity="INF", neg_infinity="-INF", nan="NaN")
EVERY_COLS = (
    "id, i2::int8, i4::int8, f8, f4::float8, n38, n, t, vc, b, d, ts, tstz, tm, bl, u, j, js::text, ip"
)


@pytest.fixture()
def every_type(pg_conn: psycopg.Connection, pg_schema: str) -> str:
    """The sources' "every type" table: every PostgreSQL type, hostile values, NULLs."""
    return make_every_type(pg_conn, pg_schema)


# --------------------------------------------------------------------------- DDL


def test_quote_ident_and_qualified() -> None:
    assert quote_ident('we"ird; DROP TABLE x; --') == '"we""ird; DROP TABLE x; --"'
    assert quote_ident("名前") == '"名前"'
    assert qualified("dw.orders") == '"dw"."orders"'
    assert qualified('"my.schema"."t"') == '"my.schema"."t"'
    for bad in ("", "a\x00b", "line\nbreak", "tab\tname", "é" * 32):
        with pytest.raises(SchemaError):
            quote_ident(bad)
    assert quote_ident("é" * 32, dialect="sqlite") == '"' + "é" * 32 + '"'  # SQLite has no 63-byte limit


def test_create_table_sql_types() -> None:
    schema = Schema(
        (
            Field("id", INTEGER, key=True),
            Field("r", REAL),
            Field("d1", DECIMAL, precision=12, scale=2),
            Field("d2", DECIMAL, precision=38, scale=10),
            Field("d3", DECIMAL),
            Field("t", TEXT, length=10),
            Field("u", TEXT, subtype="uuid"),
            Field("j", TEXT, subtype="jsonb"),
            Field("b", BOOLEAN),
            Field("dt", DATE),
            Field("ts", TIMESTAMP),
            Field("tz", TIMESTAMP, timezone="UTC"),
            Field("tm", TIMESTAMP, subtype="time"),
            Field("bl", BLOB),
            Field("k2", TEXT, key=True),
        )
    )
    pg = create_table_sql("postgresql", schema, "dw.t")
    assert pg.startswith('CREATE TABLE IF NOT EXISTS "dw"."t" (')
    for frag in ['"id" bigint', '"r" double precision', '"d1" numeric(12,2)', '"d3" numeric,', '"t" varchar(10)',
                 '"u" uuid', '"j" jsonb', '"b" boolean', '"dt" date', '"ts" timestamp,', '"tz" timestamptz',
                 '"tm" time', '"bl" bytea', 'PRIMARY KEY ("id", "k2")']:  # fmt: skip
        assert frag in pg, frag
    lite = create_table_sql("sqlite", schema, "dw.t", if_not_exists=False)
    assert lite.startswith('CREATE TABLE "dw.t" (')
    for frag in ['"d1" DECIMAL(12,2)', '"d2" DECIMAL_TEXT(38,10)', '"t" VARCHAR(10)', '"tz" TIMESTAMPTZ',
                 '"tm" TIME', '"b" BOOLEAN']:  # fmt: skip
        assert frag in lite, frag
    with pytest.raises(SchemaError, match="twice"):
        create_table_sql("postgresql", Schema((Field("a", INTEGER), Field("a", TEXT))), "t")


# --------------------------------------------------------------------------- PostgreSQL


def _except_both_ways(conn: psycopg.Connection, left: str, right: str) -> tuple[list, list]:
    a = conn.execute(
        f"(SELECT {EVERY_COLS} FROM {left}) EXCEPT (SELECT {EVERY_COLS} FROM {right})"
    ).fetchall()
    b = conn.execute(
        f"(SELECT {EVERY_COLS} FROM {right}) EXCEPT (SELECT {EVERY_COLS} FROM {left})"
    ).fetchall()
    return a, b


@pytest.mark.parametrize("fast", [True, False])
def test_pg_to_pg_round_trip_is_exact(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, every_type: str, fast: bool
) -> None:
    with open_source(pg_url, table=every_type, fast=fast) as src:
        lines, schema = resolve_null_lines(list(src.lines()), src.schema)
    target = f"{pg_schema}.landed"
    with psycopg.connect(pg_url) as conn:
        conn.execute(create_table_sql("postgresql", schema, target))
        assert copy_lines(conn, target, schema, lines) == N_ROWS
    assert _except_both_ways(pg_conn, f'{pg_schema}."every type"', target) == ([], [])
    types = dict(
        pg_conn.execute(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = 'landed'",
            (pg_schema,),
        ).fetchall()
    )
    assert (types["tstz"], types["ts"], types["tm"], types["u"], types["j"], types["bl"]) == (
        "timestamptz", "timestamp", "time", "uuid", "jsonb", "bytea",
    )  # fmt: skip
    pk = pg_conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (target,),
    ).fetchall()
    assert pk == [("id",)]


EDGE_SCHEMA = Schema(
    (
        Field("id", INTEGER, key=True, specials=STD),
        Field("t", TEXT, specials=STD),
        Field("r", REAL, specials=STD_REAL),
        Field("b", BOOLEAN, specials=STD),
        Field("ts", TIMESTAMP, timezone="UTC", specials=STD),
        Field("bl", BLOB, specials=STD),
        Field("d", DATE, specials=SpecialValues(null="[NULL]", no_date="0000-00-00")),
        Field("tail", TEXT, specials=STD),
    )
)
EDGE_LINES = [
    "1|plain|1.5|1|2025-01-15T14:30:00.52877Z|AAE=|2025-01-15|x",
    "2|[NULL]|INF|0|2025-01-15 14:30:00|[NULL]|0000-00-00|[NULL]",
    "3|a\\|[NULL]|-INF|[NULL]|[NULL]||[NULL]|[NULL]\\|",
    "4|back\\\\slash \\x \\b \\N \\. \\t|NaN|1|2025-01-15T14:30:00+03:00|AAE=|2025-01-15|ends with\\",
    "5|raw\nline feed and\rCR and\ttab|1e-7|0|2025-01-15T14:30:00|AP8A|2025-01-15|\\N",
    "6|\\.|1000000000000000000000|1|2025-01-15T14:30:00Z|AAE=|2025-01-15|\\\\.",
    "7||0|1|2025-01-15T14:30:00Z||2025-01-15|",
]


def _pg_rows(conn: psycopg.Connection, table: str, schema: Schema) -> dict[int, tuple]:
    cols = ", ".join(quote_ident(f.name) for f in schema.fields)
    return {r[0]: r for r in conn.execute(f"SELECT {cols} FROM {table}").fetchall()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if b is NO_DATE:
        return a is None
    return a == b


def _check_matches_reader(rows: dict[int, tuple], schema: Schema, lines: list[str]) -> None:
    decoder = RowDecoder(schema)
    for line in lines:
        want = decoder.decode(line)
        got = rows[want[0]]
        for f, g, w in zip(schema.fields, got, want, strict=True):
            assert _same(g, w), (want[0], f.name, g, w)


@pytest.mark.parametrize("mode", ["bulk", "per-line"])
def test_copy_lines_agrees_with_the_reader(pg_conn: psycopg.Connection, pg_schema: str, mode: str) -> None:
    table = f"{pg_schema}.edge"
    pg_conn.execute(create_table_sql("postgresql", EDGE_SCHEMA, table))
    lines = EDGE_LINES if mode == "per-line" else [EDGE_LINES[0], EDGE_LINES[1], EDGE_LINES[6]]
    with pg_conn.transaction():
        assert copy_lines(pg_conn, table, EDGE_SCHEMA, lines) == len(lines)
    rows = _pg_rows(pg_conn, table, EDGE_SCHEMA)
    _check_matches_reader(rows, EDGE_SCHEMA, lines)
    if mode == "per-line":
        assert rows[3][1] == "a|[NULL]" and rows[3][7] == "[NULL]|"  # markers inside values stay text
        assert rows[4][1] == "back\\slash x b N . t" and rows[4][7] == "ends with\\"
        assert rows[5][1] == "raw\nline feed and\rCR and\ttab" and rows[5][7] is None
        assert rows[6][1] == "." and rows[6][7] == "\\."
        assert rows[4][4] == datetime(2025, 1, 15, 11, 30, tzinfo=UTC)
    assert rows[2][2] == math.inf and rows[2][6] is None and rows[2][5] is None
    assert rows[7][1] == "" and rows[7][5] == b""  # empty TEXT and BLOB are values, not NULL


def test_copy_lines_legacy_custom_markers_and_offsets(pg_conn: psycopg.Connection, pg_schema: str) -> None:
    custom = SpecialValues(null="<nil>", infinity="+Inf", neg_infinity="-Inf", nan="nan!")
    schema = Schema(
        (
            Field("id", INTEGER),
            Field("t", TEXT),  # legacy: no marker, empty is an empty string
            Field("n", INTEGER),  # legacy: empty is NULL
            Field("r", REAL, specials=custom),
            Field("ts", TIMESTAMP, timezone="+03:00"),
        )
    )
    lines = ["1||||2025-01-15T14:30:00", "2|x|5|+Inf|2025-01-15T14:30:00Z", "3|<nil>||nan!|", "4|y|7|<nil>|"]
    table = f"{pg_schema}.legacy"
    pg_conn.execute(create_table_sql("postgresql", schema, table))
    copy_lines(pg_conn, table, schema, lines)
    rows = _pg_rows(pg_conn, table, schema)
    _check_matches_reader(rows, schema, lines)
    assert rows[1][1:4] == ("", None, None)
    assert rows[1][4] == datetime(2025, 1, 15, 11, 30, tzinfo=UTC)  # naive text in the field's zone
    assert rows[2][3] == math.inf and rows[3][1] == "<nil>" and math.isnan(rows[3][3]) and rows[4][3] is None


def test_copy_lines_expands_dictionary_tokens(pg_conn: psycopg.Connection, pg_schema: str) -> None:
    schema = Schema(
        (Field("id", INTEGER), Field("city", TEXT, specials=STD)), dictionary=(("@C1", "Zürich"),)
    )
    lines = ["1|@C1", "2|@C1x", "3|[NULL]"]
    table = f"{pg_schema}.dict"
    pg_conn.execute(create_table_sql("postgresql", schema, table))
    copy_lines(pg_conn, table, schema, lines)
    rows = _pg_rows(pg_conn, table, schema)
    assert [rows[i][1] for i in (1, 2, 3)] == ["Zürich", "@C1x", None]
    _check_matches_reader(rows, schema, lines)


def test_copy_lines_runs_in_the_callers_transaction(pg_url: str, pg_schema: str) -> None:
    schema = Schema(
        (Field("id", INTEGER, specials=STD), Field("ts", TIMESTAMP, timezone="UTC", specials=STD))
    )
    table = f"{pg_schema}.tx"
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        conn.execute(create_table_sql("postgresql", schema, table))
        conn.commit()
        copy_lines(conn, table, schema, ["1|2025-01-15T14:30:00"])
        assert conn.execute("SHOW TimeZone").fetchone() == ("America/New_York",)
        conn.rollback()
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        copy_lines(conn, table, schema, ["1|2025-01-15T14:30:00"])
        conn.commit()
        got = conn.execute(f"SELECT ts FROM {table}").fetchone()
    assert got is not None and got[0] == datetime(2025, 1, 15, 14, 30, tzinfo=UTC)
    with psycopg.connect(pg_url, autocommit=True) as auto:  # autocommit callers get the same meaning
        auto.execute("SET TimeZone = 'Asia/Tokyo'")
        copy_lines(auto, table, schema, ["2|2025-01-15T14:30:00"])
        assert auto.execute(f"SELECT ts FROM {table} WHERE id = 2").fetchone() == (
            datetime(2025, 1, 15, 14, 30, tzinfo=UTC),
        )
        assert auto.execute("SHOW TimeZone").fetchone() == ("Asia/Tokyo",)


def test_copy_lines_errors_name_the_table_and_row(pg_conn: psycopg.Connection, pg_schema: str) -> None:
    table = f"{pg_schema}.errs"
    pg_conn.execute(create_table_sql("postgresql", EDGE_SCHEMA, table))
    with pytest.raises(RowError, match=r"'.*errs' row 2.*8 fields|row 2.*expected 8"):
        copy_lines(pg_conn, table, EDGE_SCHEMA, [EDGE_LINES[0], "2|too|few"])
    with pytest.raises(RowError, match="not valid base64"):
        copy_lines(pg_conn, table, EDGE_SCHEMA, ["9|t|1|1|2025-01-15T14:30:00Z|!!!|2025-01-15|x"])
    with pytest.raises(RowError, match="errs.*(bigint|integer|INTEGER)"):  # now our check names row and field
        copy_lines(pg_conn, table, EDGE_SCHEMA, ["x9|t|1|1|2025-01-15T14:30:00Z|AAE=|2025-01-15|x"])


def test_lines_to_copy_keeps_clean_parts_whole() -> None:
    """The common part (no backslash, shared marker) converts without touching single values."""
    schema = schema_for_export(Schema((Field("id", INTEGER), Field("t", TEXT), Field("r", REAL))))
    lines = ["1|a|1.5", "2|[NULL]|INF", "3|cr\rx|[NULL]", "4|[NULL]x|NaN"]
    assert lines_to_copy(schema, lines) == "1|a|1.5\n2|\\N|INF\n3|cr\\rx|\\N\n4|[NULL]x|NaN\n"


def test_pg_hostile_identifiers_round_trip(pg_url: str, pg_conn: psycopg.Connection, pg_schema: str) -> None:
    schema = schema_for_export(Schema((Field('co"l; --', INTEGER, key=True), Field("ключ 名前", TEXT))))
    table = f'{pg_schema}.we"ird; DROP TABLE x; --'
    with psycopg.connect(pg_url) as conn:
        conn.execute(create_table_sql("postgresql", schema, table))
        copy_lines(conn, table, schema, ["1|a", "2|[NULL]"])
        copy_lines(conn, table, schema, ["3|c"])
    with open_source(pg_url, table=table) as src:
        assert src.schema.names == ['co"l; --', "ключ 名前"] and src.schema.fields[0].key
        assert sorted(src.lines()) == ["1|a", "2|\\N", "3|c"]
    for bad in ("", "bad\x01name", "x" * 64):
        with pytest.raises(SchemaError):
            pg_conn.execute(create_table_sql("postgresql", schema, f"{pg_schema}.{bad}" if bad else bad))
    with pytest.raises(SchemaError):
        pg_conn.execute(create_table_sql("postgresql", Schema((Field("", INTEGER),)), f"{pg_schema}.fine"))


# --------------------------------------------------------------------------- SQLite


def _land_sqlite(path: Path, schema: Schema, table: str, lines: list[str]) -> int:
    """Create ``table`` and land row lines as the importer does: stored forms, then ``write_rows``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute(create_table_sql("sqlite", schema, table))
        count = write_rows(conn, table, schema, stored_rows(schema, lines), stored=True)
        conn.commit()
    finally:
        conn.close()
    return count


def test_sqlite_hostile_identifiers_round_trip(tmp_path: Path) -> None:
    schema = schema_for_export(Schema((Field('co"l; --', INTEGER, key=True), Field("ключ 名前", TEXT))))
    table = 'we"ird; DROP TABLE x; --'
    url = f"sqlite:///{tmp_path / 'h.db'}"
    _land_sqlite(tmp_path / "h.db", schema, table, ["1|a", "2|[NULL]"])
    with open_source(url, table=table) as src:
        assert src.schema.names == ['co"l; --', "ключ 名前"] and src.schema.fields[0].key
        assert list(src.lines()) == ["1|a", "2|\\N"]
    with pytest.raises(SchemaError, match="control character"):
        create_table_sql("sqlite", schema, "bad\x1fname")


def test_sqlite_to_sqlite_round_trip_keeps_types_and_values(tmp_path: Path) -> None:
    src_url = _sqlite_db(tmp_path / "src.db")
    with open_source(src_url, table="items") as src:
        lines, schema = resolve_null_lines(list(src.lines()), src.schema)
        src_rows = list(src.rows())
    dst_url = f"sqlite:///{tmp_path / 'out' / 'dst.db'}"
    assert _land_sqlite(tmp_path / "out" / "dst.db", schema, "items copy", lines) == 3
    with open_source(dst_url, table="items copy") as back:
        assert back.schema.signature() == schema.signature()
        assert [
            (f.precision, f.scale, f.length, f.key, f.timezone, f.subtype) for f in back.schema.fields
        ] == [(f.precision, f.scale, f.length, f.key, f.timezone, f.subtype) for f in schema.fields]
        assert list(back.rows()) == src_rows


def test_pg_to_sqlite_values(pg_url: str, every_type: str, tmp_path: Path) -> None:
    with open_source(pg_url, table=every_type) as src:
        lines, schema = resolve_null_lines(list(src.lines()), src.schema)
    want = {r[0]: r for r in map(RowDecoder(schema).decode, lines)}
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    _land_sqlite(tmp_path / "wh.db", schema, "every type", lines)
    with open_source(url, table="every type") as back:
        assert [f.type for f in back.schema.fields] == [f.type for f in schema.fields]
        got = {r[0]: r for r in back.rows()}
    assert got.keys() == want.keys()
    for key, row in want.items():
        for f, w, g in zip(schema.fields, row, got[key], strict=True):
            if isinstance(w, float) and math.isnan(w):
                assert g is None  # SQLite stores NaN as NULL
            elif f.subtype in ("uuid", "json", "jsonb", "inet"):
                assert g == w  # text forms survive
            else:
                assert g == w, (key, f.name, w, g)


def test_sqlite_write_rows_in_callers_transaction(tmp_path: Path) -> None:
    schema = Schema(
        (
            Field("id", INTEGER),
            Field("amount", DECIMAL, precision=38, scale=2),
            Field("ok", BOOLEAN),
            Field("at", TIMESTAMP, timezone="UTC"),
            Field("day", DATE),
            Field("raw", BLOB),
        )
    )
    conn = sqlite3.connect(tmp_path / "w.db")
    conn.execute(create_table_sql("sqlite", schema, "t"))
    rows = [
        (1, Decimal("123456789012345678901234567890123456.78"), True, datetime(2026, 1, 5, 13, tzinfo=UTC),
         date(2026, 1, 5), b"\x00"),
        (2, None, False, datetime(2026, 1, 5, 14, 0, 0, 500000, tzinfo=timezone(timedelta(hours=2))), NO_DATE, b""),
    ]  # fmt: skip
    assert write_rows(conn, "t", schema, rows) == 2
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    write_rows(conn, "t", schema, rows)
    conn.commit()
    assert conn.execute("SELECT * FROM t ORDER BY id").fetchall() == [
        (1, "123456789012345678901234567890123456.78", 1, "2026-01-05T13:00:00Z", "2026-01-05", b"\x00"),
        (2, None, 0, "2026-01-05T12:00:00.5Z", None, b""),
    ]
    conn.close()


# --------------------------------------------------------------------------- COPY text, legacy packets


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["|a|1|x", "2|b|2|y"], "\\N|a|1|x\n2|b|2|y\n"),  # empty first field (integer) on the first line
        (["1|a|1|x", "|b|2|y"], "1|a|1|x\n\\N|b|2|y\n"),  # ... on a later line
        (["1|a||x", "2|b|2|y"], "1|a|\\N|x\n2|b|2|y\n"),  # empty middle field (real)
        (["1|a|1|", "2||2|y"], "1|a|1|\n2||2|y\n"),  # empty TEXT fields stay empty strings
    ],
)
def test_lines_to_copy_legacy_empty_fields_read_as_null_where_typed(lines: list[str], expected: str) -> None:
    """Legacy packets (no Null marker): an empty non-TEXT field is NULL, an empty TEXT field is ''.

    The bulk path only probes the text for the empty fields this schema can have
    (here "\\n|" and "||", not "|\\n": the last field is TEXT), so each position is tried.
    """
    schema = Schema((Field("id", INTEGER), Field("t", TEXT), Field("r", REAL), Field("u", TEXT)))
    got = lines_to_copy(schema, lines)
    assert sorted(got.splitlines()) == sorted(expected.splitlines())


def test_lines_to_copy_single_field_empty_line_is_null() -> None:
    schema = Schema((Field("n", INTEGER),))
    assert sorted(lines_to_copy(schema, ["1", "", "3"]).splitlines()) == ["1", "3", "\\N"]
    assert lines_to_copy(schema, [""]) == "\\N\n"


# ------------------------------------------------ SQLite: stored forms straight from text

_STORED_SCHEMA = schema_for_export(
    Schema(
        (
            Field("i", INTEGER),
            Field("r", REAL),
            Field("d", DECIMAL, precision=12, scale=2),
            Field("b", BOOLEAN),
            Field("day", DATE),
            Field("ts", TIMESTAMP),
            Field("tz", TIMESTAMP, timezone="+03:00"),
            Field("t", TEXT),
        )
    )
)
_STORED_TEXTS: dict[str, list[str]] = {
    "i": ["0", "-17", "9223372036854775807", " 5", "+5", "007", "1_000", "x1", "", "[NULL]", "١٢"],
    "r": ["1.5", "-0", "1e5", "nan", "inf", "INF", "-INF", "NaN", "1.7976931348623157e308", "", "[NULL]", "x"],
    "d": ["0", "12.50", "-0.00", "007.5", ".5", "1E+3", "-12", "123456789012.99", "", "[NULL]", "1.2.3", "١٢"],
    "b": ["1", "0", "true", "F", "yes", "", "[NULL]"],
    "day": ["2026-01-07", "2026-02-30", "20260107", "2026-W01-1", "2026-01-07T10:00:00", "", "[NULL]",
            "0000-01-01", "١٢٣٤-01-01"],  # fmt: skip
    "ts": ["2026-01-07T10:00:00", "2026-01-07T10:00:00Z", "2026-01-07T10:00:00.5Z", "2026-01-07T10:00:00.500",
           "2026-01-07 10:00:00", "2026-01-07T10:00:00+03:00", "2026-01-07T25:00:00", "2026-01-07T10:00:00.1234567",
           "2026-01-07", "", "[NULL]", "2026-13-01T00:00:00"],  # fmt: skip
    "tz": ["2026-01-07T10:00:00", "2026-01-07T10:00:00Z", "", "[NULL]"],
    "t": ["plain", "", "[NULL]", "pipe | and \\ backslash", "line\nfeed", "[NULL]x"],
}


def _store_both_ways(lines: list[str]) -> tuple[list[tuple], list[tuple]]:
    """What SQLite holds after writing the lines through typed values, and through stored forms."""
    held = []
    for stored in (False, True):
        conn = sqlite3.connect(":memory:")
        conn.execute(create_table_sql("sqlite", _STORED_SCHEMA, "s"))
        rows = stored_rows(_STORED_SCHEMA, lines) if stored else [RowDecoder(_STORED_SCHEMA).decode(x) for x in lines]
        write_rows(conn, "s", _STORED_SCHEMA, rows, stored=stored)
        held.append(conn.execute("SELECT *, " + ", ".join(f"typeof({quote_ident(f.name, dialect='sqlite')})"
                                                          for f in _STORED_SCHEMA.fields) + " FROM s").fetchall())
    return held[0], held[1]


@pytest.mark.parametrize("column", list(_STORED_TEXTS))
def test_sqlite_stored_forms_equal_typed_values(column: str) -> None:
    """Every text of every type stores the same value and storage class both ways, or fails the same way."""
    from tdtp.values import escape_value

    base = {"i": "1", "r": "1", "d": "1", "b": "1", "day": "2026-01-07", "ts": "2026-01-07T10:00:00",
            "tz": "2026-01-07T10:00:00", "t": "x"}  # fmt: skip
    names = [f.name for f in _STORED_SCHEMA.fields]
    for text in _STORED_TEXTS[column]:
        values = dict(base, **{column: text})
        line = "|".join(escape_value(values[n]) for n in names)
        try:
            typed = [RowDecoder(_STORED_SCHEMA).decode(line)]
        except RowError as exc:
            with pytest.raises(RowError) as info:
                stored_rows(_STORED_SCHEMA, [line])
            assert str(info.value).replace("row 1: ", "") == str(exc), text
            continue
        assert typed is not None
        via_values, via_stored = _store_both_ways([line])
        assert via_stored == via_values, (column, text)


def test_sqlite_stored_write_error_names_the_row() -> None:
    """A row the table refuses (here: a duplicate key) is named by its place in the batch."""
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE s ("i" INTEGER PRIMARY KEY, "r" REAL, "d" TEXT, "b" INTEGER, "day" TEXT, '
                 '"ts" TEXT, "tz" TEXT, "t" TEXT)')  # fmt: skip
    lines = [f"{i}|1|1|1|2026-01-07|2026-01-07T10:00:00|2026-01-07T10:00:00|x" for i in (1, 2, 3, 2, 5)]
    with pytest.raises(TdtpError, match=r"writing table 's' failed at row 4 of 5: UNIQUE constraint failed"):
        write_rows(conn, "s", _STORED_SCHEMA, stored_rows(_STORED_SCHEMA, lines), stored=True)
