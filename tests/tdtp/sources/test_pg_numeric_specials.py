"""A PostgreSQL ``numeric`` NaN or infinity has no TDTP DECIMAL form (found by a hostile review).

The cursor path's renderer refuses it at export, naming row and column.  The COPY path
passes numeric text as the server prints it: looking for the words in every chunk cost
0.11 CPU-s per 1M rows (two substring scans; ``NaN``'s letters are everywhere in COPY
text, ``\\N`` included) for a value every importer refuses anyway, naming part, row and
field, with nothing published."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from tdtp.packet import RowError
from tdtp.sources import open_source


def _table(conn: psycopg.Connection, schema: str, special: str | None) -> str:
    table = f'"{schema}".nums'
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n numeric, f float8, t text)")
    conn.execute(
        f"INSERT INTO {table} SELECT g, CASE WHEN g = 4321 THEN %s::numeric ELSE g * 1.5 END, 'NaN',"
        " 'Infinity NaN -Infinity' FROM generate_series(1, 5000) g",
        (special or "1",),
    )
    return f"{schema}.nums"


@pytest.mark.parametrize("special", ["NaN", "Infinity", "-Infinity"])
def test_the_cursor_path_refuses_it_naming_row_and_column(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, special: str
) -> None:
    clean = _table(pg_conn, pg_schema, None)
    with open_source(pg_url, table=clean, fast=False) as source:
        lines = list(source.lines())
    assert len(lines) == 5000 and lines[0].endswith("|NaN|Infinity NaN -Infinity")  # float and text pass
    refused = _table(pg_conn, pg_schema, special)
    with (
        open_source(pg_url, table=refused, fast=False) as source,
        pytest.raises(RowError, match=rf"row 4321: field 'n': value {special} cannot travel as DECIMAL"),
    ):
        list(source.lines())


@pytest.mark.parametrize("special", ["NaN", "Infinity"])
def test_tdtp_copy_fails_naming_the_value_and_lands_nothing(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, special: str
) -> None:
    table = _table(pg_conn, pg_schema, special)
    proc = subprocess.run(
        [sys.executable, "-m", "tdtp.cli", "copy", "--source", pg_url, "--table", table, "--target", pg_url,
         "--target-table", f"{pg_schema}.landed", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"'{special}'" in proc.stderr and "DECIMAL" in proc.stderr and "'n'" in proc.stderr, proc.stderr
    landed = pg_conn.execute("SELECT to_regclass(%s)", (f"{pg_schema}.landed",)).fetchone()[0]
    assert landed is None or pg_conn.execute(f"SELECT count(*) FROM {pg_schema}.landed").fetchone()[0] == 0


def test_tdtp_export_refuses_an_infinite_decimal_from_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A SQLite DECIMAL column holding inf goes through the renderer: refused at export,
    naming row and field (before: exported, then dead-lettered as 'INF' by every import)."""
    import sqlite3

    db = tmp_path / "s.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, d DECIMAL(10, 2))")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, 1.5), (2, float("inf")), (3, 2.5)])
    proc = subprocess.run(
        [sys.executable, "-m", "tdtp.cli", "export", "--source", f"sqlite:///{db}", "--table", "t",
         "--to", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "tdtp export: table 't' row 2: field 'd': value Infinity cannot travel as DECIMAL: TDTP's DECIMAL has "
        "no NaN or infinity (select the column as double precision: REAL carries them)"
    )
