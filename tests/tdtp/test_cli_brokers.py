"""The `tdtp` command with brokers: export to a log, tail it, import from it, and dead brokers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest


def run_tdtp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tdtp.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def make_source(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, amount REAL)")
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            [(i, None if i % 10 == 0 else f"kind|{i % 7}", i * 0.5) for i in range(rows)],
        )


def test_export_tail_import_through_the_spool(tmp_path: Path) -> None:
    source, target = tmp_path / "src.db", tmp_path / "dst.db"
    make_source(source, 5000)
    log = f"spool:///{tmp_path}/spool/events"
    exported = run_tdtp(
        "export", "--source", f"sqlite:///{source}", "--table", "events", "--to", log, "--part-bytes", "20000", "--quiet"
    )
    assert exported.returncode == 0, exported.stderr
    stats = json.loads(exported.stdout)
    assert stats["rows"] == 5000 and stats["parts"] > 2

    tail = run_tdtp("tail", log, "--from-seq", "0", "--no-follow")
    assert tail.returncode == 0, tail.stderr
    events = [json.loads(line) for line in tail.stdout.splitlines()]
    data = [e for e in events if e.get("kind") == "data"]
    summaries = [e for e in events if e.get("kind") == "summary"]
    assert [int(e["part"]) for e in data] == list(range(1, stats["parts"] + 1))
    assert len(summaries) == 1 and summaries[0]["export_id"] == stats["export_id"]
    assert sum(1 for e in events if "caught_up" in e) == 1 and "caught_up" in events[-1]

    for attempt in range(2):  # the second import finds every part in the ledger
        imported = run_tdtp("import", "--from", log, "--target", f"sqlite:///{target}", "--quiet")
        assert imported.returncode == 0, imported.stderr
        result = json.loads(imported.stdout)
        assert result["duplicates"] == (stats["parts"] if attempt else 0)
        with sqlite3.connect(source) as a, sqlite3.connect(target) as b:
            assert a.execute("SELECT * FROM events ORDER BY id").fetchall() == b.execute(
                "SELECT * FROM events ORDER BY id"
            ).fetchall()


@pytest.mark.parametrize(
    "url",
    [
        "rabbitmq://guest:guest@127.0.0.1:1/events?queue_type=stream",
        "kafka://127.0.0.1:1/events",
    ],
)
def test_a_dead_broker_fails_in_one_line_within_seconds(tmp_path: Path, url: str) -> None:
    source = tmp_path / "src.db"
    make_source(source, 10)
    started = time.monotonic()
    proc = run_tdtp("export", "--source", f"sqlite:///{source}", "--table", "events", "--to", url, "--quiet", timeout=90)
    assert proc.returncode != 0
    assert time.monotonic() - started < 60
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tdtp export:") and "127.0.0.1:1" in last
    assert "guest:guest" not in proc.stderr  # the password never shows


def test_unknown_broker_scheme_and_missing_stream_are_named(tmp_path: Path) -> None:
    proc = run_tdtp("tail", "nats://127.0.0.1:4222/x", "--no-follow")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "nats" in proc.stderr

    missing = run_tdtp(
        "import", "--from", f"spool:///{tmp_path}/nothing/here", "--target", f"sqlite:///{tmp_path}/t.db", "--quiet"
    )
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "does not exist" in missing.stderr and "here" in missing.stderr
    assert not (tmp_path / "nothing").exists()
