"""Issue 12, items 5-7 and the reserved names, against the real targets.

One value rule for every target: each text below is fed through the decoder, the
SQLite target path (stored forms written into a SQLite file) and the PostgreSQL target
path (COPY, both the whole-part path and the per-value one) and must be accepted by all
of them or refused by all of them.  A timestamp with an offset stores one instant
everywhere; names are exact; the importer's bookkeeping names are refused.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tdtp.importer.pg_copy import copy_lines
from tdtp.packet import (
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
)
from tdtp.sinks.ddl import create_table_sql, quote_ident, refuse_reserved
from tdtp.sinks.sqlite import stored_rows, write_rows
from tdtp.sources import open_source
from tdtp.values import RowDecoder, escape_value, schema_for_export
from tests.tdtp.test_cli import run_tdtp

ACCEPT, REFUSE = True, False
# (type, subtype, text, outcome): the table first, then neighbours of each case.
CASES: list[tuple[str, str, str, bool]] = [
    (BOOLEAN, "", " 1", REFUSE),
    (BOOLEAN, "", "yes", REFUSE),
    (BOOLEAN, "", "tru", REFUSE),
    (BOOLEAN, "", "on", REFUSE),
    (BOOLEAN, "", "1", ACCEPT),
    (BOOLEAN, "", "TRUE", ACCEPT),
    (BOOLEAN, "", "f", ACCEPT),
    (DATE, "", "2025-1-5", REFUSE),
    (DATE, "", "2025-W03-1", REFUSE),
    (DATE, "", "20250105", REFUSE),
    (DATE, "", "Jan 5 2025", REFUSE),
    (DATE, "", "2025-02-30", REFUSE),
    (DATE, "", "2025-01-05", ACCEPT),
    (DATE, "", "2025-01-05T23:00:00-05:00", ACCEPT),
    (INTEGER, "", "1_000", REFUSE),
    (INTEGER, "", "١٢٣", REFUSE),
    (INTEGER, "", " 5", REFUSE),
    (INTEGER, "", "9223372036854775808", REFUSE),
    (INTEGER, "", "+5", ACCEPT),
    (INTEGER, "", "-9223372036854775808", ACCEPT),
    (REAL, "", "1e999", REFUSE),
    (REAL, "", "1_0", REFUSE),
    (REAL, "", "1e-400", REFUSE),
    (REAL, "", "inf", REFUSE),
    (REAL, "", "nan", REFUSE),
    (REAL, "", "0x10", REFUSE),
    (REAL, "", " 1.5", REFUSE),
    (REAL, "", "INF", ACCEPT),  # the declared marker
    (REAL, "", "NaN", ACCEPT),  # the declared marker
    (REAL, "", "1.5e3", ACCEPT),
    (REAL, "", "5e-324", ACCEPT),
    (DECIMAL, "", "sNaN", REFUSE),
    (DECIMAL, "", "NaN", REFUSE),  # no NaN marker declared on DECIMAL
    (DECIMAL, "", "Infinity", REFUSE),
    (DECIMAL, "", " 1", REFUSE),
    (DECIMAL, "", "12.50", ACCEPT),
    (DECIMAL, "", "1E+3", ACCEPT),
    (TIMESTAMP, "", "2025-01-15T24:00:00", REFUSE),
    (TIMESTAMP, "", "2025-01-15T23:59:60", REFUSE),
    (TIMESTAMP, "", "2025-01-15 10:00", REFUSE),
    (TIMESTAMP, "", "Jan 15 2025 10:00", REFUSE),
    (TIMESTAMP, "", "2025-01-15T10:00:00+03:00", ACCEPT),
    (TIMESTAMP, "", "2025-01-15 10:00:00.1234567Z", ACCEPT),
    (TIMESTAMP, "", "2025-01-15", ACCEPT),
    (TIMESTAMP, "time", "24:00:00", REFUSE),
    (TIMESTAMP, "time", "10:00:00+03", REFUSE),
    (TIMESTAMP, "time", "10:00", ACCEPT),
]


def _schema(typ: str, subtype: str) -> Schema:
    return schema_for_export(
        Schema((Field("id", INTEGER, key=True), Field("v", typ, subtype=subtype), Field("t", TEXT)))
    )


def _lines(text: str, per_value: bool) -> list[str]:
    """Three rows holding the value; with ``per_value`` each line has an escape, which sends
    it down the per-value path instead of the whole-part one."""
    tail = "a\\\\b" if per_value else "ab"
    return [f"{i}|{escape_value(text)}|{tail}" for i in (1, 2, 3)]


def _outcome(run: Any) -> tuple[bool, Any]:
    try:
        return ACCEPT, run()
    except RowError as exc:
        return REFUSE, exc


def _via_sqlite(path: Path, schema: Schema, lines: list[str]) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        conn.execute(create_table_sql("sqlite", schema, "v"))
        write_rows(conn, "v", schema, stored_rows(schema, lines), stored=True)
        conn.commit()
        return conn.execute('SELECT "v" FROM "v" ORDER BY "id"').fetchall()
    finally:
        conn.close()


def _via_pg(conn: psycopg.Connection, table: str, schema: Schema, lines: list[str]) -> list[tuple]:
    conn.execute(create_table_sql("postgresql", schema, table))
    with conn.transaction():
        copy_lines(conn, table, schema, lines)
    return conn.execute(f"SELECT v FROM {table} ORDER BY id").fetchall()


@pytest.mark.parametrize(("typ", "subtype", "text", "want"), CASES, ids=[f"{c[0]}{c[1]}-{c[2]!r}" for c in CASES])
def test_every_target_accepts_and_refuses_the_same_values(
    pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path, typ: str, subtype: str, text: str, want: bool
) -> None:
    schema = _schema(typ, subtype)
    for per_value in (False, True):
        lines = _lines(text, per_value)
        decoded = _outcome(lambda: [RowDecoder(schema).decode(x) for x in lines])  # noqa: B023
        lite = _outcome(lambda: _via_sqlite(tmp_path / f"{per_value}.db", schema, lines))  # noqa: B023
        table = f"{pg_schema}.v_{int(per_value)}"
        pg = _outcome(lambda: _via_pg(pg_conn, table, schema, lines))  # noqa: B023
        got = {"decoder": decoded[0], "sqlite": lite[0], "postgresql": pg[0]}
        assert got == dict.fromkeys(got, want), (text, per_value, decoded[1], lite[1], pg[1])
        if want is REFUSE:  # names row and field: ours, or the server's for what it refuses itself
            assert re.search(r"row 1: field 'v'|line 1, column v", str(pg[1])), pg[1]


def test_refused_value_names_row_field_and_text(pg_conn: psycopg.Connection, pg_schema: str) -> None:
    schema = _schema(BOOLEAN, "")
    table = f"{pg_schema}.named"
    pg_conn.execute(create_table_sql("postgresql", schema, table))
    with pytest.raises(RowError, match=r"row 3: field 'v': 'yes' is not a valid BOOLEAN"):
        copy_lines(pg_conn, table, schema, ["1|1|a", "2|0|b", "3|yes|c"])


@pytest.mark.parametrize("per_value", [False, True])
@pytest.mark.parametrize("column", ["timestamp", "timestamptz"])
def test_offset_timestamp_keeps_its_instant(
    pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path, column: str, per_value: bool
) -> None:
    """A zone-less field's ``+03:00`` value lands as 07:00 UTC in PostgreSQL, as in SQLite."""
    schema = _schema(TIMESTAMP, "")
    lines = _lines("2025-01-15T10:00:00+03:00", per_value) + ["9|2025-01-15T07:00:00Z|x"]
    table = f"{pg_schema}.ts_{column}"
    pg_conn.execute(create_table_sql("postgresql", schema, table))
    pg_conn.execute(f"ALTER TABLE {table} ALTER COLUMN v TYPE {column}")
    pg_conn.execute("SET TimeZone = 'Asia/Tokyo'")  # a timestamptz must not depend on it
    with pg_conn.transaction():
        copy_lines(pg_conn, table, schema, lines)
    got = {r[0] for r in pg_conn.execute(f"SELECT v FROM {table}").fetchall()}
    want = datetime(2025, 1, 15, 7, tzinfo=UTC)
    assert got == ({want.replace(tzinfo=None)} if column == "timestamp" else {want})
    assert set(_via_sqlite(tmp_path / "ts.db", schema, lines)) == {("2025-01-15T07:00:00Z",)}
    assert {RowDecoder(schema).decode(x)[1] for x in lines} == {want}


@pytest.mark.parametrize("name", [" lead", "trail ", " both "])
def test_sqlite_names_with_spaces_round_trip_exactly(tmp_path: Path, name: str) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    with sqlite3.connect(src) as conn:
        conn.execute(f'CREATE TABLE {quote_ident(name, dialect="sqlite")} ("id" INTEGER PRIMARY KEY, " c " TEXT)')
        conn.executemany(f"INSERT INTO {quote_ident(name, dialect='sqlite')} VALUES (?, ?)", [(1, "a"), (2, "b")])
    run_tdtp("export", "--source", f"sqlite:///{src}", "--table", name, "--to", str(tmp_path / "parts"), "--quiet")
    run_tdtp("import", "--from", str(tmp_path / "parts"), "--target", f"sqlite:///{dst}", "--quiet")
    with sqlite3.connect(dst) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert name in tables and name.strip() not in tables
        assert conn.execute(f"SELECT * FROM {quote_ident(name, dialect='sqlite')} ORDER BY 1").fetchall() == [
            (1, "a"),
            (2, "b"),
        ]
    with open_source(f"sqlite:///{dst}", table=name) as back:
        assert back.schema.names == ["id", " c "]


def test_pg_qualified_name_checked_per_component(pg_url: str, pg_conn: psycopg.Connection) -> None:
    """``public.<60 letters>``: each part is valid, the whole text is longer than 63 bytes."""
    name = "x" * 60
    pg_conn.execute(f'CREATE TABLE public."{name}" (id bigint PRIMARY KEY, note text)')
    try:
        pg_conn.execute(f"INSERT INTO public.\"{name}\" VALUES (1, 'a'), (2, NULL)")
        with open_source(pg_url, table=f"public.{name}") as src:
            assert sorted(src.lines()) == ["1|a", "2|\\N"]
        with pytest.raises(SchemaError, match="longer than PostgreSQL's 63 bytes"):
            open_source(pg_url, table=f"public.{'y' * 64}")  # a component too long is still refused
    finally:
        pg_conn.execute(f'DROP TABLE public."{name}"')


@pytest.mark.parametrize(
    ("table", "dialect"),
    [
        ("tdtp._tdtp_ledger", "postgresql"),
        ("tdtp.orders", "postgresql"),
        ('"tdtp"."_tdtp_exports"', "postgresql"),
        ("_tdtp_ledger", "postgresql"),
        ("public._tdtp_stage_x", "postgresql"),
        ("_tdtp_ledger", "sqlite"),
        ("_TDTP_Exports", "sqlite"),
        ("_tdtp_dead_letters", "sqlite"),
    ],
)
def test_reserved_names_are_refused(table: str, dialect: str) -> None:
    with pytest.raises(SchemaError, match="reserved"):
        refuse_reserved(table, dialect, where="part 1")


@pytest.mark.parametrize(
    ("table", "dialect"),
    [("TDTP.orders", "postgresql"), ("tdtp", "postgresql"), ("public.tdtp_x", "postgresql"), ("tdtp.x", "sqlite")],
)
def test_names_near_the_reserved_ones_are_fine(table: str, dialect: str) -> None:
    refuse_reserved(table, dialect, where="--table")


def test_cli_refuses_reserved_table(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "parts").mkdir()
    proc = run_tdtp(
        "import", "--from", str(tmp_path / "parts"), "--target", f"sqlite:///{tmp_path / 'w.db'}",
        "--table", "_tdtp_ledger", "--quiet", check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "reserved" in proc.stderr
    proc = run_tdtp(
        "export", "--source", pg_url, "--table", "tdtp._tdtp_ledger", "--to", str(tmp_path / "out"), check=False
    )
    assert proc.returncode != 0 and "reserved" in proc.stderr


def test_column_check_tiers_agree_with_the_reader(pg_conn: psycopg.Connection, pg_schema: str) -> None:
    """A part mixing every form of every tier (markers, empties, fractions, offsets, shapes)
    lands in PostgreSQL as the decoder reads it, whichever tier vouched for each column."""
    schema = schema_for_export(
        Schema(
            (
                Field("id", INTEGER, key=True),
                Field("n", INTEGER),
                Field("r", REAL),
                Field("d", DECIMAL, precision=12, scale=2),
                Field("b", BOOLEAN),
                Field("day", DATE),
                Field("ts", TIMESTAMP),
                Field("tz", TIMESTAMP, timezone="UTC", subtype="timestamptz"),
                Field("tm", TIMESTAMP, subtype="time"),
                Field("t", TEXT),
            )
        )
    )
    forms = {
        "n": ["-5", "+7", "[NULL]", "", "0"],
        "r": ["1.5", "INF", "-INF", "NaN", "1e-7", "[NULL]", ""],
        "d": ["12.50", "-0.5", "1E+3", "[NULL]", ""],
        "b": ["1", "0", "true", "F", "[NULL]", ""],
        "day": ["2026-01-07", "2026-01-07T23:30:00-05:00", "[NULL]", ""],
        "ts": ["2026-01-07T10:00:00", "2026-01-07 10:00:00.5", "2026-01-07T10:00:00.123456789Z",
               "2026-01-07T10:00:00+05:30", "2026-01-07", "[NULL]", ""],  # fmt: skip
        "tz": ["2026-01-07T10:00:00Z", "2026-01-07T10:00:00", "2026-01-07T10:00:00-02:00", "[NULL]"],
        "tm": ["10:00:00", "10:00", "23:59:59.1234567", "[NULL]", ""],
        "t": ["x", "", "[NULL]", "a b"],
    }
    for uniform in (True, False):  # one form per column (tiers 1-2), then all forms mixed (tier 3)
        lines = []
        for i in range(300):
            k = 0 if uniform else i
            lines.append("|".join([str(i)] + [vals[k % len(vals)] for vals in forms.values()]))
        table = f"{pg_schema}.tiers_{int(uniform)}"
        pg_conn.execute(create_table_sql("postgresql", schema, table))
        with pg_conn.transaction():
            assert copy_lines(pg_conn, table, schema, lines) == len(lines)
        cols = ", ".join(quote_ident(f.name) for f in schema.fields)
        got = {r[0]: r for r in pg_conn.execute(f"SELECT {cols} FROM {table}").fetchall()}
        for line in lines:
            want = RowDecoder(schema).decode(line)
            for f, g, w in zip(schema.fields, got[want[0]], want, strict=True):
                if isinstance(w, float) and w != w:
                    assert g != g, (f.name, line)
                elif isinstance(w, datetime) and f.name == "ts":  # a timestamp column holds UTC wall time
                    assert g == (w.astimezone(UTC).replace(tzinfo=None) if w.tzinfo else w), (f.name, line)
                else:
                    assert g == w, (f.name, line, g, w)
