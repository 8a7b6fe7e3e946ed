"""How soon a pipelined import has an export's first part, per broker, through the `tdtp` command.

Usage: ``.venv/bin/python bench/first_part.py [--rows 50000] [--brokers spool rabbitmq kafka]
[--repeat 3] [--pg URL] [--rabbitmq URL]``

Two ways, each on a fresh stream of each broker (Kafka is a Tansu broker this script
starts and stops):

  copy    - ``tdtp copy`` of a SQLite table into PostgreSQL: its lander process is
            started before the export and lands from the first part on
  follow  - ``tdtp import --follow`` started and given 3 s to be waiting, then ``tdtp export``

For each it prints, from the commands' own JSON (wall-clock times, comparable across
processes): ``read`` = the first data part received by the importer minus the moment
the exporter handed it to the broker, ``landed`` = the same for its commit into the
target, and for ``copy`` the wall time of the whole command.  Medians of ``--repeat``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_PG = os.environ.get("TDTP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_RABBITMQ = os.environ.get("TDTP_BENCH_RABBITMQ", "rabbitmq://guest:guest@127.0.0.1:5672")


def tdtp(*args: str) -> list[str]:
    return [sys.executable, "-m", "tdtp.cli", *args]


def make_source(path: Path, rows: int) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, amount REAL)")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", [(i, f"kind {i % 7}", i * 0.5) for i in range(rows)])
    return f"sqlite:///{path}"


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def gaps(export: dict, imported: dict) -> tuple[float, float]:
    published = export["first_publish_at"]
    return imported["first_read_at"] - published, imported["first_landed_at"] - published


def run_copy(source: str, via: str, pg: str, table: str) -> dict[str, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        tdtp("copy", "--source", source, "--table", "events", "--via", via, "--target", pg, "--target-table", table,
             "--quiet"),
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    wall = time.perf_counter() - started
    result = last_json(proc.stdout)
    read, landed = gaps(result["export"], result["import"])
    return {"read": read, "landed": landed, "wall": wall}


def run_follow(source: str, via: str, pg: str, table: str) -> dict[str, float]:
    importer = subprocess.Popen(
        tdtp("import", "--from", via, "--target", pg, "--table", table, "--follow", "--timeout", "4", "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3.0)
    export = subprocess.run(
        tdtp("export", "--source", source, "--table", "events", "--to", via, "--quiet"),
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    out, err = importer.communicate(timeout=300)
    if importer.returncode != 0:
        raise RuntimeError(f"tdtp import failed: {err}")
    read, landed = gaps(last_json(export.stdout), last_json(out))
    return {"read": read, "landed": landed}


@contextlib.contextmanager
def broker_base(name: str, rabbitmq: str) -> Iterator[str]:
    """A URL prefix to which a fresh stream name is appended."""
    if name == "spool":
        directory = tempfile.mkdtemp(prefix="tdtp-first-part-")
        try:
            yield f"spool:///{directory}/"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    elif name == "rabbitmq":
        yield f"{rabbitmq}/"
    else:
        from tests.fixtures_kafka import tansu_server

        with tansu_server() as bootstrap:
            yield f"kafka://{bootstrap}/"


def stream_url(base: str, name: str) -> str:
    stream = f"first_{uuid.uuid4().hex[:8]}"
    return f"{base}{stream}?queue_type=stream" if name == "rabbitmq" else f"{base}{stream}"


def drop_stream(url: str) -> None:
    from tdtp.brokers import open_broker

    with contextlib.suppress(Exception), open_broker(url, create=False) as log:
        log.delete()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--brokers", nargs="+", default=["spool", "rabbitmq", "kafka"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg", default=DEFAULT_PG)
    ap.add_argument("--rabbitmq", default=DEFAULT_RABBITMQ)
    args = ap.parse_args()
    import psycopg

    work = Path(tempfile.mkdtemp(prefix="tdtp-first-part-src-"))
    source = make_source(work / "src.db", args.rows)
    tables: list[str] = []
    print(f"{args.rows:,} rows, SQLite -> broker -> PostgreSQL; medians of {args.repeat} (seconds)")
    print(f"{'broker':9} {'how':7} {'read':>7} {'landed':>7} {'wall':>7}")
    try:
        for name in args.brokers:
            with broker_base(name, args.rabbitmq) as base:
                for how, run in (("copy", run_copy), ("follow", run_follow)):
                    figures: list[dict[str, float]] = []
                    for _ in range(args.repeat):
                        via = stream_url(base, name)
                        table = f"first_part_{uuid.uuid4().hex[:8]}"
                        tables.append(table)
                        try:
                            figures.append(run(source, via, args.pg, table))
                        finally:
                            if name != "spool":
                                drop_stream(via)
                    med = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
                    wall = f"{med['wall']:7.3f}" if "wall" in med else f"{'':7}"
                    print(f"{name:9} {how:7} {med['read']:7.3f} {med['landed']:7.3f} {wall}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with psycopg.connect(args.pg, autocommit=True) as conn:
            for table in tables:
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')


if __name__ == "__main__":
    main()
