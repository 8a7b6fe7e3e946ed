"""Bookkeeping written by the previous version (exports and parts keyed by export alone) is
upgraded on the next import: re-keyed by target table, its rows kept, so what landed
then is still a duplicate now and nothing lands twice."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg

from tests.importer_support import count, differences, export, make_source, write_files
from tests.tdtp.importer.test_per_target import _changed_body
from tests.tdtp.test_cli import run_tdtp

# The previous version's keys and the columns it did not have yet.
NEW_EXPORT_COLUMNS = ("produced_at",)
NEW_LEDGER_COLUMNS = ("body_hash", "source", "landed_by")


def _downgrade_pg(conn: psycopg.Connection) -> None:
    for table, key, columns in (
        ("_tdtp_exports", "export_id", NEW_EXPORT_COLUMNS),
        ("_tdtp_ledger", "export_id, part_number", NEW_LEDGER_COLUMNS),
        ("_tdtp_stage_parts", "export_id, part_number", ("table_name",)),
    ):
        (pkey,) = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (f"tdtp.{table}",),
        ).fetchone()
        conn.execute(f'ALTER TABLE tdtp.{table} DROP CONSTRAINT "{pkey}"')
        for column in columns:
            conn.execute(f"ALTER TABLE tdtp.{table} DROP COLUMN {column}")
        conn.execute(f"ALTER TABLE tdtp.{table} ADD PRIMARY KEY ({key})")


def test_postgres_bookkeeping_of_the_previous_version_is_rekeyed_and_kept(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src = make_source(pg_conn, pg_schema, rows=1500)
    exp = export(pg_url, src, batch=True)
    write_files(tmp_path / "parts", exp)
    table = f"{pg_schema}.t"
    args = ("import", "--from", str(tmp_path / "parts"), "--target", pg_url, "--table", table, "--quiet")
    run_tdtp(*args)
    _downgrade_pg(pg_conn)
    again = json.loads(run_tdtp(*args).stdout)
    assert again["duplicates"] == len(exp.parts) and again["total_rows"] == 0, again
    assert differences(pg_conn, src, table) == (0, 0) and count(pg_conn, table) == 1500
    keys = pg_conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'tdtp._tdtp_ledger'::regclass "
        "AND contype = 'p'"
    ).fetchone()[0]
    assert keys == "PRIMARY KEY (table_name, export_id, part_number)"
    # A ledger row of the previous version has no body hash: another copy of its part
    # is still checked by its rows, not skipped.
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    (impostor / "x.tdtp.xml").write_bytes(_changed_body(exp.parts[0].body))
    refused = run_tdtp("import", "--from", str(impostor), "--target", pg_url, "--table", table, "--quiet",
                       check=False)  # fmt: skip
    assert refused.returncode != 0 and "conflicting duplicate" in refused.stderr, refused.stderr
    assert differences(pg_conn, src, table) == (0, 0)


def test_sqlite_bookkeeping_of_the_previous_version_is_rebuilt_and_kept(tmp_path: Path) -> None:
    src_db = tmp_path / "src.db"
    with sqlite3.connect(src_db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(5000)])
    run_tdtp("export", "--source", f"sqlite:///{src_db}", "--table", "t", "--to", str(tmp_path / "parts"),
             "--part-bytes", "20000")  # fmt: skip
    dst = tmp_path / "dst.db"
    args = ("import", "--from", str(tmp_path / "parts"), "--target", f"sqlite:///{dst}", "--quiet")
    first = json.loads(run_tdtp(*args).stdout)
    with sqlite3.connect(dst) as conn:  # the previous version's tables, rows kept
        for table, key, dropped in (
            ("_tdtp_exports", "export_id", NEW_EXPORT_COLUMNS),
            ("_tdtp_ledger", "export_id, part_number", NEW_LEDGER_COLUMNS),
        ):
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] not in dropped]
            decl = ", ".join(cols)
            conn.execute(f"ALTER TABLE {table} RENAME TO old")
            conn.execute(f"CREATE TABLE {table} ({decl}, PRIMARY KEY ({key}))")
            conn.execute(f"INSERT INTO {table} SELECT {decl} FROM old")
            conn.execute("DROP TABLE old")
    again = json.loads(run_tdtp(*args).stdout)
    assert again["duplicates"] == first["parts_imported"] and again["total_rows"] == 0, again
    with sqlite3.connect(dst) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (5000, 5000)
        key = [r[1] for r in sorted(conn.execute("PRAGMA table_info(_tdtp_ledger)"), key=lambda r: r[5]) if r[5]]
        assert key == ["table_name", "export_id", "part_number"]
