"""The ledger records which host/worker landed each part, and `tdtp status` shows the spread.

Two imports of one export stand for two hosts: each names itself with
``TDTP_WORKER_NAME`` (as a Celery worker would, docs/deploy.md), the first lands two
parts, the second the rest.  On PostgreSQL the importer's worker processes write the
ledger rows, on SQLite the importing process does: both must record the lander's name.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.importer_support import export, make_source, write_files


def tdtp(*args: str, worker: str | None, check: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TDTP_WORKER_NAME"}
    if worker:
        env["TDTP_WORKER_NAME"] = worker
    proc = subprocess.run(
        [sys.executable, "-m", "tdtp.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0 or not check, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_status_shows_how_many_parts_each_worker_landed(
    kind: str, pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src = make_source(pg_conn, pg_schema, rows=3000)
    exp = export(pg_url, src)
    first, rest = tmp_path / "first", tmp_path / "rest"
    paths = write_files(first, exp, summary=False)
    for path in paths[2:]:
        path.unlink()
    write_files(rest, exp)
    target = pg_url if kind == "postgresql" else f"sqlite:///{tmp_path / 'dst.db'}"
    table = f"{pg_schema}.t" if kind == "postgresql" else "t"
    base = ("import", "--target", target, "--table", table, "--workers", "2", "--quiet")
    # Two of its parts and no summary: staged, not published yet (exit code "not complete").
    tdtp(*base, "--from", str(first), worker="host-a", check=False)
    tdtp(*base, "--from", str(rest), worker="host-b")
    export_id = exp.summary.export_id
    status = tdtp("status", export_id, "--target", target, "--table", table, worker=None)
    assert status["state"] == "finalized", status
    assert status["landed_by"] == {"host-a": 2, "host-b": len(exp.parts) - 2}
    # Without a name, a lander is host:pid.
    tdtp("reset", export_id, "--target", target, "--table", table, "--force", worker=None)
    tdtp(*base, "--from", str(rest), worker=None)
    status = tdtp("status", export_id, "--target", target, "--table", table, worker=None)
    ((who, parts),) = status["landed_by"].items()
    host, _, pid = who.rpartition(":")
    assert host == socket.gethostname() and pid.isdigit() and parts == len(exp.parts)
