"""The importer reading real brokers: RabbitMQ streams, Kafka (Tansu), and a killed import resumed.

These use the exporter's own publishing path where delivery order does not matter,
and hand-made delivery (reversed, repeated) where it does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tdtp.brokers import open_broker
from tdtp.exporter import export_to_log
from tdtp.importer import ImportOptions, ParallelImporter
from tdtp.parts import PartOptions
from tdtp.sources import open_source
from tests.broker_support import deleted_after
from tests.importer_support import count, differences, export, make_source, publish, summary_headers

ROOT = Path(__file__).resolve().parents[3]


def test_rabbitmq_stream_import_runs_while_the_export_is_still_publishing(
    pg_url, pg_conn, pg_schema, rabbitmq_stream
):
    src = make_source(pg_conn, pg_schema, rows=6000)
    dst = f"{pg_schema}.dst"
    result: dict[str, object] = {}
    url = rabbitmq_stream
    with open_broker(url):
        pass  # declare the stream before the importer starts following it

    def follow() -> None:
        with (
            open_broker(url) as log,
            ParallelImporter(pg_url, ImportOptions(workers=2, table=dst)) as imp,
        ):
            result["stats"] = imp.import_log(log, follow=True, timeout=1.5)

    reader = threading.Thread(target=follow)
    reader.start()
    with open_broker(url) as log, open_source(pg_url, table=src) as source:
        exported = export_to_log(source, log, options=PartOptions(part_bytes=20_000))
    reader.join(30)
    stats = result["stats"]
    assert stats.parts_imported == exported.parts and stats.finalized == [exported.export_id]
    assert stats.publish[exported.export_id] == "swap"  # a whole-table stream: known from its first part
    assert differences(pg_conn, src, dst) == (0, 0)


def test_kafka_every_part_twice_in_reverse_order(pg_url, pg_conn, pg_schema, kafka_bootstrap, unique_name):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src)
    dst = f"{pg_schema}.dst"
    with deleted_after(f"kafka://{kafka_bootstrap}/{unique_name}") as url, open_broker(url) as log:
        publish(log, list(reversed(exp.parts)))
        log.publish(exp.summary.to_json(), summary_headers(exp.summary))
        publish(log, exp.parts)
        with ParallelImporter(pg_url, ImportOptions(workers=2, table=dst)) as imp:
            stats = imp.import_log(log)
    n = len(exp.parts)
    assert (stats.parts_imported, stats.duplicates, stats.finalized) == (n, n, [exp.export_id])
    assert stats.last_seq == 2 * n
    assert differences(pg_conn, src, dst) == (0, 0)


def _ledger_parts(conn, export_id: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM tdtp._tdtp_ledger WHERE export_id = %s", (export_id,)
    ).fetchone()[0]


def _wait_for_backends_to_end(conn, seconds: float = 10.0) -> None:
    """Until no other backend of this database is busy: the killed importer's are gone or idle."""
    deadline = time.monotonic() + seconds
    while conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle'"
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the killed importer's server backends are still busy"
        time.sleep(0.05)


def _session_alive(sid: int) -> list[int]:
    alive = []
    for p in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
    return alive


@pytest.mark.parametrize("strategy", ["copy", "auto"], ids=["copy", "swap"])
def test_sigkill_mid_import_then_rerun_gives_the_source_exactly(
    pg_url, pg_conn, pg_schema, tmp_path, strategy
):
    src = make_source(pg_conn, pg_schema, rows=4000)
    exp = export(pg_url, src, part_bytes=8_000)
    dst = f"{pg_schema}.dst"
    url = f"spool:///{tmp_path}/parts"
    cut = len(exp.parts) * 2 // 3
    with open_broker(url) as log:
        publish(log, exp.parts[:cut])  # the export is still running: the rest comes later
    cmd = [sys.executable, "-m", "tdtp.cli", "import", "--from", url, "--target", pg_url,
           "--table", dst, "--follow", "--workers", "2", "--quiet", "--publish", strategy]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        with psycopg_conn(pg_url) as conn:
            while _bookkeeping_ready(conn) is False or _ledger_parts(conn, exp.export_id) < 3:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the import made no progress"
                time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # the importer only: its workers must not outlive it
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _session_alive(proc.pid):
            assert time.monotonic() < deadline, f"workers outlived the importer: {_session_alive(proc.pid)}"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    # A COMMIT a worker sent just before it died still completes in its server backend,
    # which ends only when it notices the client gone: count once those backends are.
    _wait_for_backends_to_end(pg_conn)
    done_before = _ledger_parts(pg_conn, exp.export_id)
    assert 3 <= done_before <= cut
    assert count(pg_conn, dst) == 0  # nothing published by the killed run

    with open_broker(url) as log:
        publish(log, exp.parts[cut:])
        log.publish(exp.summary.to_json(), summary_headers(exp.summary))
        with ParallelImporter(pg_url, ImportOptions(workers=2, table=dst, publish=strategy)) as imp:
            stats = imp.import_log(log)
    assert stats.duplicates == done_before and stats.parts_imported == len(exp.parts) - done_before
    assert stats.finalized == [exp.export_id]
    assert stats.publish[exp.export_id].split(" ")[0] == ("copy" if strategy == "copy" else "swap")
    assert differences(pg_conn, src, dst) == (0, 0)
    assert count(pg_conn, dst) == 4000


def psycopg_conn(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _bookkeeping_ready(conn) -> bool:
    return conn.execute("SELECT to_regclass('tdtp._tdtp_ledger') IS NOT NULL").fetchone()[0]
