"""A PostgreSQL ``numeric`` NaN or infinity has no TDTP DECIMAL form: the export refuses it at
once, naming row and column, instead of shipping a part every importer refuses (found by a
hostile review: ``tdtp copy`` exported the whole table and failed only at import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
def test_tdtp_export_refuses_a_numeric_special_naming_row_and_column(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path, special: str
) -> None:
    table = _table(pg_conn, pg_schema, special)
    proc = subprocess.run(
        [sys.executable, "-m", "tdtp.cli", "export", "--source", pg_url, "--table", table,
         "--to", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "row 4321" in lines[0] and "column 'n'" in lines[0] and f"value {special} cannot travel as DECIMAL" in lines[0]


@pytest.mark.parametrize("fast", [True, False])
def test_both_read_paths_refuse_it_and_pass_float_and_text_specials(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, fast: bool
) -> None:
    clean = _table(pg_conn, pg_schema, None)
    with open_source(pg_url, table=clean, fast=fast) as source:
        lines = list(source.lines())
    assert len(lines) == 5000 and lines[0].endswith("|NaN|Infinity NaN -Infinity")
    refused = _table(pg_conn, pg_schema, "NaN")
    with open_source(pg_url, table=refused, fast=fast) as source, pytest.raises(RowError, match="NaN cannot travel as DECIMAL"):
        list(source.lines())


def test_tdtp_copy_lands_nothing(pg_url: str, pg_conn: psycopg.Connection, pg_schema: str) -> None:
    table = _table(pg_conn, pg_schema, "Infinity")
    proc = subprocess.run(
        [sys.executable, "-m", "tdtp.cli", "copy", "--source", pg_url, "--table", table, "--target", pg_url,
         "--target-table", f"{pg_schema}.landed", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "value Infinity cannot travel as DECIMAL" in proc.stderr
    landed = pg_conn.execute("SELECT to_regclass(%s)", (f"{pg_schema}.landed",)).fetchone()[0]
    assert landed is None or pg_conn.execute(f"SELECT count(*) FROM {pg_schema}.landed").fetchone()[0] == 0
