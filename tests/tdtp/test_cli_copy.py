"""`tdtp copy`: export and import pipelined in one command, through every broker, and after failures.

Every test runs the real console entry point in a subprocess against the real
PostgreSQL, RabbitMQ and Tansu, and compares the target with the source row for row.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest

ROWS = 20_000


def run_tdtp(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tdtp.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def rows_of(i: int) -> tuple[int, str | None, float]:
    return (i, None if i % 10 == 0 else f"kind|{i % 7} ü", i * 0.5)


def make_sqlite_source(path: Path, rows: int = ROWS) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, amount REAL)")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", [rows_of(i) for i in range(rows)])
    return f"sqlite:///{path}"


def make_pg_source(conn: psycopg.Connection, schema: str, rows: int = ROWS) -> str:
    conn.execute(
        f'CREATE TABLE "{schema}".events (id bigint PRIMARY KEY, kind text, amount double precision)'
    )
    with conn.cursor().copy(f'COPY "{schema}".events FROM STDIN') as copy:
        for row in map(rows_of, range(rows)):
            copy.write_row(row)
    return f"{schema}.events"


def sqlite_rows(path: Path, table: str = "events") -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT id, kind, amount FROM {table} ORDER BY id").fetchall()


def pg_rows(conn: psycopg.Connection, table: str) -> list[tuple]:
    return conn.execute(f"SELECT id, kind, amount FROM {table} ORDER BY id").fetchall()


def expected(rows: int = ROWS) -> list[tuple]:
    return [rows_of(i) for i in range(rows)]


def result_of(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_copy_sqlite_to_sqlite_through_a_temporary_spool_that_is_removed(tmp_path: Path) -> None:
    source = make_sqlite_source(tmp_path / "src.db")
    target = tmp_path / "dst.db"
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = run_tdtp(
        "copy", "--source", source, "--table", "events", "--target", f"sqlite:///{target}",
        "--part-bytes", "20000", env={"TMPDIR": str(temp)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = result_of(proc)
    assert result["state"] == "finalized" and result["rows"] == ROWS
    assert result["export"]["rows"] == ROWS and result["export"]["parts"] > 3
    assert result["import"]["total_rows"] == ROWS
    assert result["import"]["parts_imported"] == result["export"]["parts"]
    assert result["seconds"] > 0 and result["via"] == "temporary spool"
    assert "copy: " in proc.stderr  # progress and the closing line on stderr
    assert sqlite_rows(target) == expected()
    assert list(temp.iterdir()) == []  # the temporary spool is gone


def test_copy_postgres_to_postgres_through_a_rabbitmq_stream(
    pg_conn: psycopg.Connection, pg_url: str, pg_schema: str, rabbitmq_stream: str, unique_name: str
) -> None:
    table = make_pg_source(pg_conn, pg_schema)
    via = rabbitmq_stream
    proc = run_tdtp(
        "copy", "--source", pg_url, "--table", table, "--via", via, "--target", pg_url,
        "--target-table", f"{pg_schema}.copied", "--part-bytes", "20000", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --quiet
    result = result_of(proc)
    assert result["state"] == "finalized" and result["import"]["total_rows"] == ROWS
    assert "guest:guest" not in proc.stdout and unique_name in result["via"]
    assert pg_rows(pg_conn, f'"{pg_schema}".copied') == expected()


def test_copy_sqlite_to_postgres_and_postgres_to_sqlite_through_kafka(
    tmp_path: Path,
    pg_conn: psycopg.Connection,
    pg_url: str,
    pg_schema: str,
    kafka_bootstrap: str,
    unique_name: str,
) -> None:
    source = make_sqlite_source(tmp_path / "src.db")
    via = f"kafka://{kafka_bootstrap}/{unique_name}"
    to_pg = run_tdtp(
        "copy", "--source", source, "--table", "events", "--via", via, "--target", pg_url,
        "--target-table", f"{pg_schema}.events", "--part-bytes", "20000", "--quiet",
    )  # fmt: skip
    assert to_pg.returncode == 0, to_pg.stderr
    assert pg_rows(pg_conn, f'"{pg_schema}".events') == expected()

    back = tmp_path / "back.db"
    to_sqlite = run_tdtp(
        "copy", "--source", pg_url, "--table", f"{pg_schema}.events", "--via", via,
        "--target", f"sqlite:///{back}", "--target-table", "events", "--part-bytes", "20000", "--quiet",
    )  # fmt: skip
    assert to_sqlite.returncode == 0, to_sqlite.stderr
    assert sqlite_rows(back) == expected()
    # Two exports share the stream: each copy landed its own (the second stepped over the first's).
    assert result_of(to_sqlite)["import"]["duplicates"] == 0


def test_a_target_that_refuses_rows_fails_the_copy_and_tdtp_import_finishes_it_once(
    tmp_path: Path, pg_conn: psycopg.Connection, pg_url: str, pg_schema: str
) -> None:
    source = make_sqlite_source(tmp_path / "src.db")
    target = f'"{pg_schema}".events'
    pg_conn.execute(
        f"CREATE TABLE {target} (id bigint PRIMARY KEY, kind text, amount double precision CHECK (amount < 5000))"
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = run_tdtp(
        "copy", "--source", source, "--table", "events", "--target", pg_url,
        "--target-table", f"{pg_schema}.events", "--part-bytes", "20000", "--quiet", env={"TMPDIR": str(temp)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    result = result_of(proc)
    assert result["state"] != "finalized" and result["import"]["dead_letters"] >= 1
    assert f"export {result['export_id']} is not published" in proc.stderr
    assert "check constraint" in proc.stderr.lower()
    assert pg_conn.execute(f"SELECT count(*) FROM {target}").fetchone() == (0,)  # nothing half-published
    finish = [line for line in proc.stderr.splitlines() if "finish with: " in line]
    assert len(finish) == 1
    command = finish[0].split("finish with: ", 1)[1].split(" (or ")[0].split()
    assert command[:2] == ["tdtp", "import"]

    pg_conn.execute(f"ALTER TABLE {target} DROP CONSTRAINT events_amount_check")
    imported = run_tdtp(*command[1:], "--quiet")
    assert imported.returncode == 0, imported.stderr
    assert pg_rows(pg_conn, target) == expected()
    status = run_tdtp("status", result["export_id"], "--target", pg_url, "--table", f"{pg_schema}.events")
    doc = json.loads(status.stdout)
    assert doc["state"] == "finalized", doc
    assert doc["parts_in_ledger"] == result["export"]["parts"] and not doc["missing_parts"]


def _wait_for_landed_parts(pg_conn: psycopg.Connection, export_id: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            (n,) = pg_conn.execute(
                "SELECT count(*) FROM tdtp._tdtp_ledger WHERE export_id = %s", (export_id,)
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            n = 0
        if n >= 2:
            return
        time.sleep(0.05)
    raise AssertionError("no part landed in time")


def test_a_killed_copy_leaves_nothing_behind_and_a_second_copy_appends_every_row_once(
    tmp_path: Path,
    pg_conn: psycopg.Connection,
    pg_url: str,
    pg_schema: str,
    rabbitmq_stream: str,
) -> None:
    rows = 200_000
    source = make_sqlite_source(tmp_path / "src.db", rows)
    target = f'"{pg_schema}".events'
    pg_conn.execute(f"CREATE TABLE {target} (id bigint, kind text, amount double precision)")  # no key: a
    # row written twice would show
    via = rabbitmq_stream
    args = [
        sys.executable, "-m", "tdtp.cli", "copy", "--source", source, "--table", "events", "--via", via,
        "--target", pg_url, "--target-table", f"{pg_schema}.events", "--mode", "append",
        "--part-bytes", "8000", "--quiet",
    ]  # fmt: skip
    first = subprocess.Popen(
        [*args, "--export-id", "REF-KILLED"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _wait_for_landed_parts(pg_conn, "REF-KILLED", time.monotonic() + 60)
        tree = psutil.Process(first.pid).children(recursive=True)
        assert tree, "the landing runs in a child process"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive, f"processes outlived the killed copy: {alive}"
    assert pg_conn.execute(f"SELECT count(*) FROM {target}").fetchone() == (0,)

    second = run_tdtp(*args[3:])
    assert second.returncode == 0, second.stderr
    assert pg_rows(pg_conn, target) == expected(rows)


def test_a_killed_landing_keeps_the_parts_and_tdtp_import_finishes_exactly_once(
    tmp_path: Path, pg_conn: psycopg.Connection, pg_url: str, pg_schema: str
) -> None:
    rows = 200_000
    source = make_sqlite_source(tmp_path / "src.db", rows)
    target = f'"{pg_schema}".events'
    pg_conn.execute(f"CREATE TABLE {target} (id bigint, kind text, amount double precision)")
    via = f"spool:///{tmp_path}/spool/events"
    copy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tdtp.cli",
            "copy",
            "--source",
            source,
            "--table",
            "events",
            "--via",
            via,
            "--target",
            pg_url,
            "--target-table",
            f"{pg_schema}.events",
            "--mode",
            "append",
            "--part-bytes",
            "8000",
            "--export-id",
            "REF-LANDER",
            "--quiet",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_landed_parts(pg_conn, "REF-LANDER", time.monotonic() + 60)
    landers = [p for p in psutil.Process(copy.pid).children() if p.name() == "tdtp-lander"]  # a fork, named
    assert len(landers) == 1
    landers[0].kill()
    out, err = copy.communicate(timeout=120)
    assert copy.returncode == 1, err
    assert "REF-LANDER is not published" in err and "Traceback" not in err
    assert pg_conn.execute(f"SELECT count(*) FROM {target}").fetchone() == (0,)

    command = [line for line in err.splitlines() if "finish with: " in line][0]
    assert f"--from {via}" in command
    imported = run_tdtp(
        "import",
        "--from",
        via,
        "--target",
        pg_url,
        "--table",
        f"{pg_schema}.events",
        "--mode",
        "append",
        "--quiet",
    )
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["duplicates"] >= 2  # what the killed landing committed is skipped
    assert pg_rows(pg_conn, target) == expected(rows)


def test_bad_copy_arguments_are_refused_in_one_line_before_anything_runs(tmp_path: Path) -> None:
    source = make_sqlite_source(tmp_path / "src.db", 10)
    for args, needle in (
        (["--target", f"csv:///{tmp_path}/x.csv"], "--target"),
        (["--target", f"sqlite:///{tmp_path}/t.db", "--via", str(tmp_path / "dir")], "--via"),
        (["--target", f"sqlite:///{tmp_path}/t.db", "--target-table", "_tdtp_ledger"], "--target-table"),
    ):
        proc = run_tdtp("copy", "--source", source, "--table", "events", *args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().startswith("tdtp copy:") and needle in proc.stderr
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("broker", ["spool", "rabbitmq", "kafka"])
def test_the_import_reads_the_first_part_as_soon_as_it_is_published(
    tmp_path: Path, pg_url: str, pg_schema: str, broker: str, request: pytest.FixtureRequest, unique_name: str
) -> None:
    """The lander is reading before the export publishes: the first part is read within a
    generous 0.5 s of its publish (bench/first_part.py prints the real figure, ~0.01-0.05 s)."""
    source = make_sqlite_source(tmp_path / "src.db")
    via = {
        "spool": lambda: f"spool:///{tmp_path}/spool/{unique_name}",
        "rabbitmq": lambda: request.getfixturevalue("rabbitmq_stream"),  # named unique_name too
        "kafka": lambda: f"kafka://{request.getfixturevalue('kafka_bootstrap')}/{unique_name}",
    }[broker]()
    gaps = []
    for attempt in range(2):  # the better of two: a machine busy for half a second is not a regression
        proc = run_tdtp(
            "copy", "--source", source, "--table", "events", "--via", via, "--target", pg_url,
            "--target-table", f"{pg_schema}.events{attempt}", "--quiet",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        result = result_of(proc)
        published, read = result["export"]["first_publish_at"], result["import"]["first_read_at"]
        assert result["import"]["first_landed_at"] >= read >= published
        gaps.append(read - published)
    assert min(gaps) < 0.5, f"first part read {min(gaps):.3f} s after its publish at best ({gaps})"


def test_the_schema_policy_reaches_the_landing(tmp_path: Path) -> None:
    """--schema freeze: a target table without one of the export's columns refuses the copy, named."""
    source = make_sqlite_source(tmp_path / "src.db", 100)
    target = tmp_path / "dst.db"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT)")
    frozen = run_tdtp(
        "copy", "--source", source, "--table", "events", "--target", f"sqlite:///{target}", "--schema", "freeze",
        "--quiet",
    )  # fmt: skip
    assert frozen.returncode == 1 and "Traceback" not in frozen.stderr
    assert "amount" in frozen.stderr and "--schema freeze" in frozen.stderr
    evolved = run_tdtp(
        "copy", "--source", source, "--table", "events", "--target", f"sqlite:///{target}", "--quiet"
    )
    assert evolved.returncode == 0, evolved.stderr
    assert sqlite_rows(target) == expected(100)


def test_an_unreachable_target_stops_the_copy_before_it_exports(tmp_path: Path) -> None:
    source = make_sqlite_source(tmp_path / "src.db")
    temp = tmp_path / "tmp"
    temp.mkdir()
    started = time.monotonic()
    proc = run_tdtp(
        "copy", "--source", source, "--table", "events", "--target", "postgresql://postgres:secret@127.0.0.1:1/x",
        env={"TMPDIR": str(temp)},
    )  # fmt: skip
    assert proc.returncode == 1 and time.monotonic() - started < 30
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tdtp copy: --target: the import cannot start: ")
    assert "127.0.0.1:1" in lines[0] and "secret" not in proc.stderr
    assert proc.stdout == "" and list(temp.iterdir()) == []  # nothing exported, no spool left


def test_the_source_is_read_while_the_landing_gets_ready(pg_url: str, pg_conn: psycopg.Connection, pg_schema: str) -> None:
    """The export does not wait for its lander before reading: its COPY runs while the
    lander is still held at the target (here: behind the bookkeeping's DDL lock of a fresh
    target database); only the first publish waits.  Every row lands once it is let go."""
    from tests.conftest import PG_ADMIN_URL, _pg_url_for

    table = make_pg_source(pg_conn, pg_schema)
    target_db = f"tdtp_wait_{pg_schema}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{target_db}"')
    proc = None
    try:
        target = _pg_url_for(target_db)
        with psycopg.connect(target, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (0x7D7D_0001,))  # tdtp/importer/bookkeeping.py
            proc = subprocess.Popen(
                [sys.executable, "-m", "tdtp.cli", "copy", "--source", pg_url, "--table", table,
                 "--target", target, "--target-table", "events", "--quiet"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            # Well under the 10 s the export waits for a lander at most (tdtp/copy.py), after
            # which it would read anyway.
            deadline = time.monotonic() + 5
            seen = False
            while not seen and time.monotonic() < deadline and proc.poll() is None:
                seen = bool(
                    pg_conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT%%'"
                        " AND query LIKE %s AND pid <> pg_backend_pid()",
                        (f"%{pg_schema}%",),
                    ).fetchone()[0]
                )
                time.sleep(0.02)
            assert seen, "the source's COPY did not start while the landing was held"
            assert proc.poll() is None  # still waiting for its lander
        # the lock is let go with the holder's connection
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["state"] == "finalized"
        with psycopg.connect(target) as conn:
            assert pg_rows(conn, "events") == expected()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
