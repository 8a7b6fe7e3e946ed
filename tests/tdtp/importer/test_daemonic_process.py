"""An import with worker processes started from a daemonic process (what a Celery prefork
pool's child is) fails with one line saying what to change, not Python's bare assertion."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from tests.tdtp.test_cli import run_tdtp


def _import_in_daemon(parts: str, target: str, out: multiprocessing.Queue) -> None:
    from tdtp.importer import ImportOptions, ParallelImporter

    try:
        with ParallelImporter(target, ImportOptions(workers=2)) as importer:
            importer.import_files(sorted(Path(parts).glob("*.xml")))
        out.put("imported")
    except Exception as exc:  # the message is what the test checks
        out.put(f"{type(exc).__name__}: {exc}")


def test_worker_processes_from_a_daemonic_process_are_refused_in_one_line(tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(2000)])
    run_tdtp("export", "--source", f"sqlite:///{src}", "--table", "t", "--to", str(tmp_path / "parts"),
             "--part-bytes", "8000")  # fmt: skip
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    proc = context.Process(
        target=_import_in_daemon, args=(str(tmp_path / "parts"), f"sqlite:///{tmp_path / 'dst.db'}", out), daemon=True
    )
    proc.start()
    message = out.get(timeout=120)
    proc.join(timeout=30)
    assert message == (
        "TdtpError: executor: the importer's worker processes cannot start in a daemonic process (a Celery "
        "prefork pool child): start the Celery worker with --pool solo, or import with executor thread"
    )
