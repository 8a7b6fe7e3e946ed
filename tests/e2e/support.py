"""Shared helpers for the Dagster tests: small sources, tables files, running what a sensor asks for."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from tdtp_assets.tables_config import TablesConfig, parse_tables
from tdtp_location.definitions import build_definitions

ROOT = Path(__file__).resolve().parents[2]
DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")
REGIONS = ("eu", "us")


def make_sqlite_source(path: Path, rows_per_day: int = 1500) -> dict[str, int]:
    """An ``events`` table over three UTC days and a ``people`` table over two regions.

    Returns the expected row count per partition key.  Values include NULLs, the
    delimiter, backslashes and XML specials, so the round trip is not trivial.
    """
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE events (id INTEGER PRIMARY KEY, ts TIMESTAMP NOT NULL, kind TEXT, amount DECIMAL(10,2), note TEXT);
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL);
        """
    )
    rows = []
    for d, day in enumerate(DAYS):
        for i in range(rows_per_day):
            n = d * rows_per_day + i + 1
            ts = f"{day} {i * 86400 // rows_per_day // 3600:02d}:{(i * 86400 // rows_per_day) % 3600 // 60:02d}:00"
            note = None if n % 7 == 0 else f'n{n} | a\\b <x> & "y"'
            rows.append((n, ts, ("click", "view", "buy")[n % 3], f"{(n * 37) % 10000 / 100:.2f}", note))
    with conn:
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?)", [(i, f"p{i}", REGIONS[i % 2]) for i in range(1, 401)]
        )
    conn.close()
    counts = {day: rows_per_day for day in DAYS}
    counts.update({r: 200 for r in REGIONS})
    return counts


def tables_doc(home: Path, *, part_bytes: int = 20_000, max_parts_per_run: int = 200) -> dict[str, Any]:
    """A tables file for the small SQLite source, the spool and a SQLite target."""
    return {
        "defaults": {
            "broker": "spool:///{home}/spool/{table}",
            "part_bytes": part_bytes,
            "workers": 2,
            "max_parts_per_run": max_parts_per_run,
            "owners": ["team:tests"],
        },
        "sensor": {"interval_seconds": 1},
        "tables": {
            "events": {
                "source": "sqlite:///{home}/source.db",
                "table": "events",
                "partition": {"daily": "ts", "start": DAYS[0], "end": "2026-03-04"},
                "target": {"url": "sqlite:///{home}/target.db", "table": "events"},
                "schedule": {"hour": 2},
            },
            "people": {
                "source": "sqlite:///{home}/source.db",
                "table": "people",
                "partition": {"static": "region", "values": list(REGIONS)},
                "target": {"url": "sqlite:///{home}/target.db", "table": "people"},
            },
        },
    }


def load_doc(doc: dict[str, Any], home: Path) -> TablesConfig:
    return parse_tables(doc, home / "tables.yaml", home)


def write_tables_file(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def definitions_for(doc: dict[str, Any], home: Path) -> dg.Definitions:
    return build_definitions(load_doc(doc, home))


def execute_request(
    defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    """Run what a sensor asked for, in this process, the way the daemon would launch it."""
    job = defs.resolve_job_def(request.job_name)
    return job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        partition_key=request.partition_key,
        tags={k: v for k, v in request.tags.items() if not k.startswith("dagster/")},
        raise_on_error=False,
    )


def tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None
) -> tuple[list[dg.RunRequest], str | None]:
    """One evaluation of the part-arrival sensor: its run requests and new cursor."""
    sensor = defs.resolve_sensor_def("tdtp_part_arrival")
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, repository_def=defs.get_repository_def()
    ) as context:
        data = sensor.evaluate_tick(context)
    return list(data.run_requests or []), data.cursor


def sqlite_count(path: Path, sql: str, params: tuple = ()) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def dg_check_defs(tables: Path, home: Path) -> subprocess.CompletedProcess:
    """``dg check defs`` from the repository root, as the README runs it."""
    env = {
        "TDTP_TABLES": str(tables),
        "TDTP_HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(home),
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "check", "defs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
