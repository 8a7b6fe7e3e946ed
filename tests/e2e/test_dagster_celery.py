"""Land ops on Celery: two dagster-celery workers land one export's parts between them.

Real processes: dagster-webserver and dagster-daemon on an instance with PostgreSQL
storage (deploy/dagster.postgres.yaml, which Celery workers need: they read the run
from it), and two ``dagster-celery worker start`` processes, each in a working
directory and DAGSTER_HOME of its own as on two hosts, on the machine's RabbitMQ as
the Celery broker.  The table says ``executor: celery`` and ``fanout: 4``.  An export
is launched through GraphQL; the part-arrival sensor launches the land run(s), whose
land ops run as Celery tasks; the land run that completes the export publishes the
partition and runs its checks.  The ledger
then names both workers, every part is in it exactly once, and the target equals the
source.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import kombu
import psycopg
import pytest
import yaml

from tdtp_assets import names
from tests.e2e.dagster_procs import (
    POSTGRES_INSTANCE_YAML,
    celery_workers,
    dagster_services,
    describe_runs,
    launch_job,
    wait_for_location,
    wait_until,
)
from tests.e2e.test_dagster_e2e import DAYS, ROWS_PER_DAY, fingerprint, land_runs_green, make_source

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CELERY_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
WORKERS = ("celery-a", "celery-b")


@pytest.fixture()
def celery_queue():
    """A Celery queue of this run's own: a worker left from another run (on ``dagster``) cannot take its tasks."""
    queue = f"tdtp_e2e_{uuid.uuid4().hex[:10]}"
    try:
        yield queue
    finally:
        # Celery declared it durable on first use: delete it, as rabbitmq_stream deletes its stream.
        with contextlib.suppress(Exception), kombu.Connection(CELERY_BROKER) as conn:
            conn.default_channel.queue_delete(queue)


def test_two_celery_workers_land_one_export(
    tmp_path: Path, pg_url: str, rabbitmq_stream: str, dagster_pg_url: str, celery_queue: str
) -> None:
    uid = uuid.uuid4().hex[:8]
    src, dst = f"e2e_src_{uid}", f"e2e_dst_{uid}"
    day = DAYS[0]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        make_source(conn, src)
        conn.execute(f"CREATE SCHEMA {dst}")
    tables = {
        "defaults": {
            # 11 parts per day: enough for four land ops per run
            "part_raw_bytes": 131_072,
            "workers": 2,
            "celery_broker": CELERY_BROKER,
            "celery_queue": celery_queue,
        },
        "sensor": {"interval_seconds": 1},
        "tables": {
            "events": {
                "source": pg_url,
                "table": f"{src}.events",
                "partition": {"daily": "ts", "start": DAYS[0], "end": "2026-02-04"},
                "broker": rabbitmq_stream,
                "target": {"url": pg_url, "table": f"{dst}.events", "name": "e2e_dwh"},
                "executor": "celery",
                "fanout": 4,
            }
        },
    }
    tables_file = tmp_path / "tables.yaml"
    tables_file.write_text(yaml.safe_dump(tables))
    env = {
        "TDTP_TABLES": str(tables_file),
        "TDTP_HOME": str(tmp_path / "data"),
        "DAGSTER_PG_URL": dagster_pg_url,
    }
    with (
        dagster_services(tmp_path / "dagster_home", env, instance_yaml=POSTGRES_INSTANCE_YAML) as services,
        celery_workers(
            WORKERS,
            tmp_path / "hosts",
            env,
            broker=CELERY_BROKER,
            instance_yaml=POSTGRES_INSTANCE_YAML,
            queue=celery_queue,
        ) as worker_logs,
    ):
        wait_for_location(services)
        instance = services.instance()

        def diagnostics() -> str:
            tails = "\n".join(f"==== {p}\n{p.read_text(errors='replace')[-4000:]}" for p in worker_logs)
            return describe_runs(instance) + "\n" + services.log_tail() + "\n" + tails

        launch_job(services, names.export_job_name("events"), partition=day)
        wait_until(lambda: bool(land_runs_green(instance, day)), 300, "the partition published", diagnostics)

        land_runs = instance.get_runs(filters=dg.RunsFilter(job_name=names.import_parts_job_name("events")))
        assert land_runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in land_runs), diagnostics()
        # Every land op ran as a Celery task, on one of the two workers.
        engine_events = [
            entry.dagster_event
            for run in land_runs
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        ]
        celery_steps = [
            event.event_specific_data.metadata["Celery worker"].value
            for event in engine_events
            if "Celery worker" in event.event_specific_data.metadata
            and event.step_key.startswith("land_parts_")
        ]
        assert len(celery_steps) >= 4 and {w.split("@")[0] for w in celery_steps} <= set(WORKERS), [
            (e.step_key, e.message) for e in engine_events
        ]
        # ... sent to this run's queue (the tables file's celery_queue), not dagster-celery's default.
        submitted = [e.message for e in engine_events if e.message.startswith("Submitting celery task")]
        assert submitted and all(m.endswith(f'to queue "{celery_queue}".') for m in submitted), submitted
        instance.dispose()

    with psycopg.connect(pg_url, autocommit=True) as conn:
        source = fingerprint(conn, f"{src}.events", day)
        assert source[0] == ROWS_PER_DAY
        assert fingerprint(conn, f"{dst}.events", day) == source
        export_id, total_parts = conn.execute(
            "SELECT export_id, total_parts FROM tdtp._tdtp_exports WHERE table_name = %s", (f"{dst}.events",)
        ).fetchone()
        parts = conn.execute(
            "SELECT part_number, landed_by FROM tdtp._tdtp_ledger WHERE table_name = %s ORDER BY part_number",
            (f"{dst}.events",),
        ).fetchall()
    # Every part exactly once, landed by the two workers between them.
    assert [p for p, _ in parts] == list(range(1, total_parts + 1))
    assert {who for _, who in parts} == set(WORKERS), parts
    # What a user sees: tdtp status counts the parts per worker.
    status = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tdtp.cli",
                "status",
                export_id,
                "--target",
                pg_url,
                "--table",
                f"{dst}.events",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout  # fmt: skip
    )
    assert status["state"] == "finalized"
    assert set(status["landed_by"]) == set(WORKERS) and sum(status["landed_by"].values()) == total_parts
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {src} CASCADE")
        conn.execute(f"DROP SCHEMA {dst} CASCADE")
