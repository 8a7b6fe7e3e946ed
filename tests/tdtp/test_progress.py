"""Progress a person can read, through the `tdtp` command: a bar with % and ETA on a terminal,
plain lines with the estimated total in a log, nothing with --quiet."""

from __future__ import annotations

import os
import pty
import re
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROWS = 30_000
LINE = re.compile(
    r"^(export|copy): [\d,]+ of ~([\d,]+) rows \((\d+)%\), \d+ parts, [\d,]+ rows/s, ETA \d+:\d\d:\d\d$"
)


def tdtp(*args: str) -> list[str]:
    return [sys.executable, "-m", "tdtp.cli", *args]


def make_source(path: Path, rows: int = ROWS) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT)")
        conn.executemany("INSERT INTO events VALUES (?, ?)", [(i, f"kind {i % 7}") for i in range(rows)])
    return f"sqlite:///{path}"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tdtp(*args), capture_output=True, text=True, timeout=180)


def progress_lines(stderr: str) -> list[re.Match[str]]:
    matches = [LINE.match(line) for line in stderr.splitlines()]
    assert all(matches), f"lines that are not progress lines: {stderr!r}"
    return [m for m in matches if m]


def test_without_a_terminal_export_prints_plain_lines_with_the_total_percent_and_eta(tmp_path: Path) -> None:
    proc = run(
        "export", "--source", make_source(tmp_path / "src.db"), "--table", "events", "--to", str(tmp_path / "out"),
        "--part-bytes", "8000",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr  # no control codes in a log
    lines = progress_lines(proc.stderr)
    assert lines and lines[-1].group(2) == f"{ROWS:,}" and lines[-1].group(3) == "100"


def test_postgres_and_csv_sources_give_an_estimated_total(
    tmp_path: Path, pg_conn: psycopg.Connection, pg_url: str, pg_schema: str
) -> None:
    pg_conn.execute(
        f'CREATE TABLE "{pg_schema}".events AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 20000) g'
    )
    pg_conn.execute(f'ANALYZE "{pg_schema}".events')
    from_pg = run(
        "export", "--source", pg_url, "--table", f"{pg_schema}.events", "--to", str(tmp_path / "pg")
    )
    assert from_pg.returncode == 0, from_pg.stderr
    last = progress_lines(from_pg.stderr)[-1]
    assert last.group(2) == "20,000" and last.group(3) == "100"  # ANALYZEd: the planner knows

    csv = tmp_path / "events.csv"
    csv.write_text("id,kind\n" + "".join(f"{i},kind {i % 7}\n" for i in range(50_000)))
    from_csv = run("export", "--source", f"csv:///{csv}", "--table", "events", "--to", str(tmp_path / "csv"))
    assert from_csv.returncode == 0, from_csv.stderr
    assert progress_lines(from_csv.stderr)[-1].group(2) == "50,000"


def test_on_a_terminal_export_and_copy_draw_a_bar_with_percent_and_eta(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.db")
    for args in (
        (
            "export",
            "--source",
            source,
            "--table",
            "events",
            "--to",
            str(tmp_path / "out"),
            "--part-bytes",
            "8000",
        ),
        ("copy", "--source", source, "--table", "events", "--target", f"sqlite:///{tmp_path / 'dst.db'}"),
    ):
        master, slave = pty.openpty()
        proc = subprocess.Popen(tdtp(*args), stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        screen = b""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
        os.close(master)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, screen.decode(errors="replace")
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
        assert "\x1b[" in screen.decode(errors="replace")  # drawn, not printed line by line
        assert "100%" in text and "ETA" in text and f"{ROWS:,} rows" in text, text
        assert out.strip().startswith(b"{")  # stdout still carries only the JSON result


def test_quiet_prints_nothing_on_stderr(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.db")
    out = tmp_path / "out"
    for args in (
        ("export", "--source", source, "--table", "events", "--to", str(out), "--quiet"),
        ("import", "--from", str(out), "--target", f"sqlite:///{tmp_path / 'a.db'}", "--quiet"),
        (
            "copy",
            "--source",
            source,
            "--table",
            "events",
            "--target",
            f"sqlite:///{tmp_path / 'b.db'}",
            "--quiet",
        ),
    ):
        proc = run(*args)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", f"{args[0]}: {proc.stderr!r}"
