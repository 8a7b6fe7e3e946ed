"""End to end with real Dagster processes: failures end somewhere visible, then recover by themselves.

Issue 11, items 5-7, through dagster-webserver + dagster-daemon, read as a user reads
them (GraphQL: run failure messages, sensor ticks; run storage: run keys, tags, checks):

- The target URL names a PostgreSQL database that does not exist.  A backfill of one
  export partition is launched through ``launchPartitionBackfill``; its runs carry
  ``tdtp/table`` and ``tdtp/target`` (7).  The sensor's land run fails with the cause
  as the run's failure message; the sensor launches the range again with new run
  keys; past ``land_retries`` the partition's import run fails its four checks naming
  the cause (5).  The test then creates the database, and without anything else the
  sensor's next re-launch lands the range and publishes the partition with four
  green checks in the same run; the target equals the source.
- A second table's broker is unreachable: the sensor's ticks say so, failing with
  the stream and the error (6), while the first table's runs go on.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from tdtp_assets import names
from tests.e2e.dagster_procs import (
    INSTANCE_YAML,
    dagster_services,
    describe_runs,
    green_runs,
    launch_asset_backfill,
    wait_for_location,
    wait_until,
)
from tests.e2e.test_dagster_e2e import CHECKS, DAYS, ROWS_PER_DAY, fingerprint, make_source

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAY = DAYS[0]
DEAD_BROKER = "rabbitmq://guest:guest@127.0.0.1:1/e2e_ghost?queue_type=stream&connect_timeout=1"

RUN_FAILURE = """
query Failure($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events { __typename ... on RunFailureEvent { message error { message } } }
    }
  }
}
"""

TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 100) { status skipReason error { message } } } }
  }
}
"""


def run_failure_message(services, run_id: str) -> str:
    """The run's failure as the UI shows it: the RunFailureEvent's error message."""
    events = services.graphql(RUN_FAILURE, {"runId": run_id})["logsForRun"]["events"]
    failures = [e for e in events if e["__typename"] == "RunFailureEvent"]
    assert failures, f"run {run_id} has no RunFailureEvent"
    error = failures[0].get("error") or {}
    return error.get("message") or failures[0]["message"]


def sensor_ticks(services) -> list[dict]:
    selector = {
        "repositoryLocationName": "tdtp",
        "repositoryName": "__repository__",
        "sensorName": "tdtp_part_arrival",
    }
    data = services.graphql(TICKS, {"selector": selector})["sensorOrError"]
    return data["sensorState"]["ticks"]


def runs_of(instance: dg.DagsterInstance, job: str) -> list[dg.DagsterRun]:
    return list(reversed(instance.get_runs(filters=dg.RunsFilter(job_name=job))))


def test_failed_land_runs_relaunch_fail_the_checks_then_recover(tmp_path: Path, pg_url: str) -> None:
    uid = uuid.uuid4().hex[:8]
    src, dst = f"e2e_src_{uid}", f"e2e_dst_{uid}"
    base, _, _ = pg_url.rpartition("/")
    target_db = f"e2e_missing_{uid}"
    target_url = f"{base}/{target_db}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        make_source(conn, src)
    tables = {
        "defaults": {
            "part_bytes": 300_000,
            "workers": 2,
            "land_retries": 1,
            "land_retry_seconds": 1,
            "land_retry_max_seconds": 2,
        },
        "sensor": {"interval_seconds": 2},
        "tables": {
            "events": {
                "source": {"env": "E2E_SOURCE_URL"},
                "table": f"{src}.events",
                "partition": {"daily": "ts", "start": DAYS[0], "end": "2026-02-04"},
                "target": {"url": {"env": "E2E_TARGET_URL"}, "table": f"{dst}.events", "name": "e2e_dwh"},
            },
            "ghost": {
                "source": {"env": "E2E_SOURCE_URL"},
                "table": f"{src}.events",
                "broker": DEAD_BROKER,
                "target": {"url": {"env": "E2E_SOURCE_URL"}, "table": f"{dst}.ghost", "name": "e2e_ghost"},
            },
        },
    }
    tables_file = tmp_path / "tables.yaml"
    tables_file.write_text(yaml.safe_dump(tables))
    env = {
        "TDTP_TABLES": str(tables_file),
        "TDTP_HOME": str(tmp_path / "data"),
        "E2E_SOURCE_URL": pg_url,
        "E2E_TARGET_URL": target_url,
    }
    land_job, publish_job = names.import_parts_job_name("events"), names.publish_job_name("events")
    try:
        with dagster_services(tmp_path / "dagster_home", env, instance_yaml=INSTANCE_YAML) as services:
            wait_for_location(services)
            instance = services.instance()

            def diagnostics() -> str:
                return describe_runs(instance) + "\n" + services.log_tail()

            backfill = launch_asset_backfill(services, list(names.export_key("events").path), [DAY])

            # 5: the land run fails, the sensor launches it again with new run keys, and past
            # land_retries (1) the partition's import run fails its checks naming the cause.
            def failed_import_runs() -> list[dg.DagsterRun]:
                return [
                    r
                    for r in runs_of(instance, publish_job)
                    if r.tags.get(names.TAG_LAND_FAILED) and r.status == dg.DagsterRunStatus.FAILURE
                ]

            wait_until(lambda: bool(failed_import_runs()), 300, "the failed import run", diagnostics)
            land_runs = runs_of(instance, land_job)
            keys = [r.tags.get("dagster/run_key", "") for r in land_runs]
            assert len(land_runs) >= 2 and ":retry-" not in keys[0], keys
            assert keys[1] == keys[0] + ":retry-1", keys
            assert all(r.status == dg.DagsterRunStatus.FAILURE for r in land_runs[:2]), diagnostics()
            for run in land_runs[:2]:
                message = run_failure_message(services, run.run_id)
                assert f'database "{target_db}" does not exist' in message, message
                assert "Exceeded max_retries" not in message, message

            (failed,) = failed_import_runs()
            assert failed.tags["dagster/partition"] == DAY
            checks = {
                e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
                for e in instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            }
            assert set(checks) == CHECKS, diagnostics()
            for evaluation in checks.values():
                assert not evaluation.passed
                assert f'database "{target_db}" does not exist' in (evaluation.description or "")

            # 7: the backfill's run (an __ASSET_JOB run) carries the table's tags.
            backfill_runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill}))
            assert backfill_runs
            for run in backfill_runs:
                assert run.tags[names.TAG_TABLE] == "events"
                assert run.tags[names.TAG_TARGET] == "e2e_dwh"

            # 6: ticks with nothing else to do fail, naming the dead stream and the error.
            ticks = sensor_ticks(services)
            said = [
                (t.get("error") or {}).get("message") or t.get("skipReason") or ""
                for t in ticks
                if t["status"] in ("FAILURE", "SKIPPED")
            ]
            assert any("cannot read stream 'ghost'" in s and "127.0.0.1:1" in s for s in said), ticks[:5]
            assert any(t["status"] == "FAILURE" for t in ticks), [t["status"] for t in ticks]

            # Fix the cause; nobody touches the UI: a re-launch lands, the partition is published.
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{target_db}"')

            # The re-launched land run lands, publishes and checks the partition itself.
            wait_until(
                lambda: any(r.job_name == land_job for r in green_runs(instance, "events", DAY)),
                300,
                "the partition published with four green checks",
                diagnostics,
            )
            assert any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs_of(instance, land_job))
            with (
                psycopg.connect(pg_url, autocommit=True) as source,
                psycopg.connect(target_url, autocommit=True) as target,
            ):
                expected = fingerprint(source, f"{src}.events", DAY)
                assert expected[0] == ROWS_PER_DAY
                assert fingerprint(target, f"{dst}.events", DAY) == expected
            instance.dispose()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {src} CASCADE")
        base_admin = f"{base}/postgres"
        with psycopg.connect(base_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
