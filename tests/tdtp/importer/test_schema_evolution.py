"""Schema evolution (issue 14): a source that gains, loses or widens a column keeps flowing.

Driven through the ``tdtp`` command as a user would, on day two: export and import a
table, change the source table, export and import again, into real PostgreSQL and
SQLite targets.  Each test asserts what the user sees: the exit code, the one-line
refusal, ``tdtp status``'s schema change, and the target's columns and rows.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tdtp.codec import decode_packet, encode_packet
from tdtp.packet import Field, Packet, Schema
from tests.tdtp.test_cli import run_tdtp


@dataclass
class Side:
    """One database holding the source table ``src`` and the target table ``dst``."""

    url: str
    conn: Any
    pg: bool
    src: str
    dst: str
    tmp: Path
    runs: int = 0

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        text = statement.format(src=self.src, dst=self.dst)
        cur = self.conn.execute(text if self.pg else text.replace("%s", "?"), params)
        return cur.fetchall() if cur.description else []

    def columns(self, table: str) -> dict[str, str]:
        if self.pg:
            rows = self.sql(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (table,),
            )
        else:
            rows = [(r[1], r[2]) for r in self.sql(f"PRAGMA table_info({table})")]
        return dict(rows)

    def export(self, where: str | None = None) -> tuple[Path, str]:
        """``tdtp export`` of the source (rows matching ``where``) into a new directory; its export id."""
        self.runs += 1
        out = self.tmp / f"export{self.runs}"
        extra = ("--where", where) if where else ()
        run_tdtp("export", "--source", self.url, "--table", self.src, "--to", str(out), "--quiet",
                 "--part-raw-bytes", "4096", *extra)  # fmt: skip
        first = min(out.iterdir())
        return out, decode_packet(first.read_bytes(), where=first.name).header.batch_id

    def import_(self, out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_tdtp("import", "--from", str(out), "--target", self.url, "--table", self.dst, "--quiet",
                        "--workers", "2", *extra, check=check)  # fmt: skip

    def status(self, export_id: str) -> dict:
        proc = run_tdtp("status", export_id, "--target", self.url, "--table", self.dst, check=False)
        return json.loads(proc.stdout)

    def ty(self, pg: str, sqlite: str) -> str:
        return pg if self.pg else sqlite


@pytest.fixture(params=["postgresql", "sqlite"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    if request.param == "postgresql":
        pg_conn = request.getfixturevalue("pg_conn")
        schema = request.getfixturevalue("pg_schema")
        yield Side(request.getfixturevalue("pg_url"), pg_conn, True, f"{schema}.src", f"{schema}.dst", tmp_path)
        return
    db = tmp_path / "db.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        yield Side(f"sqlite:///{db}", conn, False, "src", "dst", tmp_path)
    finally:
        conn.close()


def _first_day(side: Side, ddl: str, rows: str) -> None:
    """Day one: the source table, exported and imported."""
    side.sql(f"CREATE TABLE {{src}} ({ddl})")
    side.sql(f"INSERT INTO {{src}} VALUES {rows}")
    out, _ = side.export()
    side.import_(out)


def test_an_added_column_lands_with_values_and_old_rows_get_null(side: Side) -> None:
    _first_day(side, f"id {side.ty('bigint', 'INTEGER')} PRIMARY KEY, a text", "(1, 'x'), (2, 'y')")
    side.sql(f"ALTER TABLE {{src}} ADD COLUMN b {side.ty('bigint', 'INTEGER')}")
    side.sql("INSERT INTO {src} VALUES (3, 'z', 30), (4, 'w', 40)")
    out, export_id = side.export(where="id > 2")
    side.import_(out, "--mode", "append")
    assert side.sql("SELECT id, a, b FROM {dst} ORDER BY id") == [
        (1, "x", None), (2, "y", None), (3, "z", 30), (4, "w", 40)
    ]  # fmt: skip
    assert list(side.columns(side.dst)) == ["id", "a", "b"]
    status = side.status(export_id)
    assert status["state"] == "finalized"
    assert status["schema_change"]["added"] == [["b", side.ty("bigint", "INTEGER")]]


def test_a_dropped_column_stays_and_gets_null_in_append_and_in_a_replaced_table(side: Side) -> None:
    _first_day(side, f"id {side.ty('bigint', 'INTEGER')} PRIMARY KEY, a text, c text", "(1, 'x', 'c1')")
    side.sql("ALTER TABLE {src} DROP COLUMN c")
    side.sql("INSERT INTO {src} VALUES (2, 'y')")
    out, export_id = side.export(where="id > 1")
    side.import_(out, "--mode", "append")
    assert side.sql("SELECT id, a, c FROM {dst} ORDER BY id") == [(1, "x", "c1"), (2, "y", None)]
    assert side.status(export_id)["schema_change"]["dropped"] == [["c", side.ty("text", "TEXT")]]
    out, _ = side.export()  # the whole table, replaced: the column stays, NULL everywhere
    side.import_(out)
    assert side.sql("SELECT id, a, c FROM {dst} ORDER BY id") == [(1, "x", None), (2, "y", None)]


def test_integer_to_bigint_and_varchar_to_text_widen_the_target(side: Side) -> None:
    # The target was made by hand with narrow types; the source carries wider ones.
    side.sql(f"CREATE TABLE {{dst}} (id integer PRIMARY KEY, n integer, s {side.ty('varchar(5)', 'VARCHAR(5)')})")
    side.sql("INSERT INTO {dst} VALUES (1, 7, 'short')")
    side.sql(f"CREATE TABLE {{src}} (id {side.ty('bigint', 'INTEGER')} PRIMARY KEY, n bigint, s text)")
    side.sql("INSERT INTO {src} VALUES (2, 5000000000, 'a text longer than five')")
    out, export_id = side.export()
    side.import_(out, "--mode", "append")
    assert side.sql("SELECT id, n, s FROM {dst} ORDER BY id") == [
        (1, 7, "short"), (2, 5_000_000_000, "a text longer than five")
    ]  # fmt: skip
    change = side.status(export_id)["schema_change"]
    if side.pg:  # PostgreSQL's columns widen; SQLite's INTEGER and TEXT hold both as they are
        assert side.columns(side.dst) == {"id": "bigint", "n": "bigint", "s": "text"}
        assert change["widened"] == [
            ["id", "integer", "bigint"], ["n", "integer", "bigint"], ["s", "character varying(5)", "text"]
        ]  # fmt: skip
    else:
        assert change["widened"] == [] and not change["refused"]


def test_an_integer_column_whose_values_become_text_is_widened_to_text(side: Side) -> None:
    _first_day(side, f"id {side.ty('bigint', 'INTEGER')} PRIMARY KEY, code integer", "(1, 7), (2, 42)")
    if side.pg:
        side.sql("ALTER TABLE {src} ALTER COLUMN code TYPE text")
    else:  # SQLite cannot retype a column: the source is made again
        side.sql("ALTER TABLE {src} RENAME TO old_src")
        side.sql("CREATE TABLE {src} (id INTEGER PRIMARY KEY, code TEXT)")
        side.sql("INSERT INTO {src} SELECT id, code FROM old_src")
    side.sql("INSERT INTO {src} VALUES (3, '007'), (4, 'A-12')")
    side.sql("CREATE INDEX dst_code ON {dst} (code)")
    out, export_id = side.export()
    side.import_(out)
    assert side.sql("SELECT id, code FROM {dst} ORDER BY id") == [(1, "7"), (2, "42"), (3, "007"), (4, "A-12")]
    assert side.columns(side.dst)["code"] == side.ty("text", "TEXT")
    widened = side.status(export_id)["schema_change"]["widened"]
    assert widened == [["code", side.ty("bigint", "INTEGER"), side.ty("text", "TEXT")]]
    if not side.pg:  # the rebuilt table keeps its index
        assert side.sql("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'dst'") == [("dst_code",)]


def test_an_incompatible_change_is_refused_in_one_line_and_nothing_is_written(side: Side) -> None:
    _first_day(side, f"id {side.ty('bigint', 'INTEGER')} PRIMARY KEY, flag boolean", "(1, true), (2, false)")
    before = side.sql("SELECT * FROM {dst} ORDER BY id")
    side.sql("ALTER TABLE {src} RENAME TO old_src")
    side.sql(f"CREATE TABLE {{src}} (id {side.ty('bigint', 'INTEGER')} PRIMARY KEY, flag integer)")
    side.sql("INSERT INTO {src} VALUES (1, 5), (2, 6), (3, 7)")
    out, export_id = side.export()
    for policy in ("evolve", "discard_columns"):
        proc = side.import_(out, "--schema", policy, check=False)
        assert proc.returncode == 1
        line = next(x for x in proc.stderr.splitlines() if "schema change refused" in x)
        assert f"column flag: {side.ty('boolean -> bigint', 'BOOLEAN -> INTEGER')}: no lossless widening" in line
        assert side.sql("SELECT * FROM {dst} ORDER BY id") == before
        assert side.columns(side.dst)["flag"] == side.ty("boolean", "BOOLEAN")
        status = side.status(export_id)
        assert status["state"] == "blocked" and status["parts_in_ledger"] == 0
        assert all("schema change refused" in d["reason"] for d in status["dead_letters"])


def test_freeze_refuses_any_difference_before_a_row_lands(side: Side) -> None:
    _first_day(side, f"id {side.ty('bigint', 'INTEGER')} PRIMARY KEY, a text", "(1, 'x')")
    side.sql(f"ALTER TABLE {{src}} ADD COLUMN b {side.ty('bigint', 'INTEGER')}")
    side.sql("INSERT INTO {src} VALUES (2, 'y', 20)")
    out, export_id = side.export()
    proc = side.import_(out, "--schema", "freeze", check=False)
    assert proc.returncode == 1
    assert f"(schema: freeze): added b ({side.ty('bigint', 'INTEGER')})" in proc.stderr
    assert side.sql("SELECT id, a FROM {dst}") == [(1, "x")]
    assert list(side.columns(side.dst)) == ["id", "a"]
    status = side.status(export_id)
    assert status["parts_in_ledger"] == 0 and status["rows_in_ledger"] == 0
    # The user decides to let it evolve: the dead letters replay under the new policy.
    replay = run_tdtp("replay", "--target", side.url, "--export-id", export_id, "--schema", "evolve", check=False)
    assert replay.returncode == 0, replay.stderr
    assert side.sql("SELECT id, a, b FROM {dst} ORDER BY id") == [(1, "x", None), (2, "y", 20)]


def test_discard_columns_leaves_out_what_the_target_lacks(side: Side) -> None:
    _first_day(side, f"id {side.ty('bigint', 'INTEGER')} PRIMARY KEY, a text", "(1, 'x')")
    side.sql(f"ALTER TABLE {{src}} ADD COLUMN b {side.ty('bigint', 'INTEGER')}")
    side.sql("INSERT INTO {src} VALUES (2, 'y', 20)")
    for mode in ("append", "upsert"):
        out, export_id = side.export(where="id > 1")
        side.import_(out, "--schema", "discard_columns", "--mode", mode)
        assert side.sql("SELECT * FROM {dst} ORDER BY id") == [(1, "x"), (2, "y")]
        change = side.status(export_id)["schema_change"]
        assert change["policy"] == "discard_columns"
        assert change["discarded"] == [["b", side.ty("bigint", "INTEGER")]] and change["added"] == []


def test_two_parts_of_one_export_with_different_schemas_are_a_dead_letter_naming_both(side: Side) -> None:
    side.sql(f"CREATE TABLE {{src}} (id {side.ty('bigint', 'INTEGER')} PRIMARY KEY, a text)")
    side.sql("INSERT INTO {src} VALUES " + ", ".join(f"({i}, '{'v' * 200}{i}')" for i in range(1, 200)))
    out, export_id = side.export()
    parts = sorted(p for p in out.iterdir() if "summary" not in p.name)
    assert len(parts) >= 2
    packet = decode_packet(parts[1].read_bytes(), where="test")
    schema = Schema(packet.schema.fields + (Field(name="b", type="INTEGER"),))
    parts[1].write_bytes(encode_packet(Packet(header=packet.header, schema=schema, rows=[r + "|1" for r in packet.rows])))
    proc = side.import_(out, "--workers", "1", check=False)
    assert proc.returncode == 1
    status = side.status(export_id)
    reasons = [d["reason"] for d in status["dead_letters"]]
    assert len(reasons) == 1, reasons
    assert '["id INTEGER", "a TEXT", "b INTEGER"]' in reasons[0] and '["id INTEGER", "a TEXT"]' in reasons[0]
    assert not status["finalized"]


def test_kill_9_during_an_evolving_publish_leaves_the_old_table_and_the_rerun_ends_exact(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    side = Side(pg_url, pg_conn, True, f"{pg_schema}.src", f"{pg_schema}.dst", tmp_path)
    _first_day(side, "id bigint PRIMARY KEY, a text", "(1, 'x'), (2, 'y')")
    side.sql("ALTER TABLE {src} ADD COLUMN b bigint")
    side.sql("INSERT INTO {src} SELECT g, 'n' || g, g * 10 FROM generate_series(3, 3000) g")
    out, export_id = side.export()
    before = side.sql("SELECT * FROM {dst} ORDER BY id")
    with psycopg.connect(pg_url) as reader:  # a reader holds the table: the publish's ALTER waits for it
        reader.execute(f"SELECT count(*) FROM {side.dst}").fetchone()
        victim = subprocess.Popen(
            [sys.executable, "-m", "tdtp.cli", "import", "--from", str(out), "--target", pg_url,
             "--table", side.dst, "--quiet", "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not pg_conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE%%' AND wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone():
                assert victim.poll() is None and time.monotonic() < deadline, "the publish never reached ALTER"
                time.sleep(0.05)
            victim.send_signal(signal.SIGKILL)
            victim.wait(30)
        finally:
            if victim.poll() is None:
                victim.kill()
        reader.rollback()
    assert side.sql("SELECT * FROM {dst} ORDER BY id") == before
    assert list(side.columns(side.dst)) == ["id", "a"]
    side.import_(out)
    q = "SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) d"
    assert side.sql(q.format(a=side.src, b=side.dst)) == [(0,)] and side.sql(q.format(a=side.dst, b=side.src)) == [(0,)]
    status = side.status(export_id)
    assert status["state"] == "finalized" and status["schema_change"]["added"] == [["b", "bigint"]]


def test_a_sqlite_publish_that_fails_after_its_rebuild_leaves_the_old_table_and_the_rerun_ends_exact(
    tmp_path: Path,
) -> None:
    db = tmp_path / "db.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    side = Side(f"sqlite:///{db}", conn, False, "src", "dst", tmp_path)
    _first_day(side, "id INTEGER PRIMARY KEY, code INTEGER", "(1, 7), (2, 42)")
    side.sql("ALTER TABLE {src} RENAME TO old_src")
    side.sql("CREATE TABLE {src} (id INTEGER PRIMARY KEY, code TEXT)")
    side.sql("INSERT INTO {src} SELECT id, code FROM old_src")
    side.sql("INSERT INTO {src} VALUES (3, '007')")
    # The publish rebuilds the table (INTEGER -> TEXT), then its insert hits this trigger.
    side.sql("CREATE TRIGGER no_three BEFORE INSERT ON {dst} WHEN NEW.id = 3 BEGIN SELECT RAISE(ABORT, 'no 3'); END")
    out, export_id = side.export()
    assert side.import_(out, check=False).returncode == 1
    assert side.columns("dst") == {"id": "INTEGER", "code": "INTEGER"}
    assert side.sql("SELECT id, code, typeof(code) FROM {dst} ORDER BY id") == [(1, 7, "integer"), (2, 42, "integer")]
    side.sql("DROP TRIGGER no_three")
    side.import_(out)
    assert side.sql("SELECT id, code FROM {dst} ORDER BY id") == [(1, "7"), (2, "42"), (3, "007")]
    assert side.status(export_id)["state"] == "finalized"
    conn.close()
