"""End to end with real Dagster processes, PostgreSQL source and target, and a real broker.

dagster-webserver and dagster-daemon run on a temporary DAGSTER_HOME; a backfill of
three daily partitions is launched through GraphQL (as the UI does); the daemon's
backfill runs the exports, and the part-arrival sensor launches land runs that
follow the stream, publish each partition and run its checks in the same run (no
publish run).  The test then
compares target and source per partition, re-materializes one partition and finds
no duplicates.  Over RabbitMQ it then copies one partition with the copy job (one
run, launched through GraphQL) and checks the sensor launched no land run for the
parts that run landed itself.  Once over a RabbitMQ stream, once over Kafka (Tansu), once with the
instance on PostgreSQL storage (dagster.postgres.yaml).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from tdtp_assets import names
from tests.e2e.dagster_procs import (
    INSTANCE_YAML,
    POSTGRES_INSTANCE_YAML,
    backfill_status,
    check_results,
    dagster_services,
    describe_runs,
    green_runs,
    launch_asset_backfill,
    launch_job,
    wait_for_location,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAYS = ["2026-02-01", "2026-02-02", "2026-02-03"]
ROWS_PER_DAY = 20_000
CHECKS = {"rows_match_summary", "parts_complete", "no_dead_letters", "checksum_matches", "schema_change"}


def make_source(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(
        f"""CREATE TABLE {schema}.events (
              id bigint PRIMARY KEY, ts timestamp NOT NULL, kind text, amount numeric(10,2), note text, flag boolean)"""
    )
    conn.execute(
        f"""INSERT INTO {schema}.events
            SELECT n, timestamp '{DAYS[0]}' + (n - 1) * interval '1 day' * 3 / {3 * ROWS_PER_DAY},
                   (ARRAY['click','view','buy'])[n % 3 + 1], ((n * 37) % 10000) / 100.0,
                   CASE WHEN n % 7 = 0 THEN NULL ELSE 'n' || n || E' | a\\\\b <x> & "y"' END, n % 2 = 0
            FROM generate_series(1, {3 * ROWS_PER_DAY}) AS n"""
    )


def fingerprint(conn: psycopg.Connection, table: str, day: str) -> tuple:
    """Count, distinct ids and a digest of every value of one day's rows."""
    return conn.execute(
        f"""SELECT count(*), count(DISTINCT id),
                   md5(string_agg(concat_ws('|', id, to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), kind,
                                            amount::numeric(10,2), note, flag), ',' ORDER BY id))
            FROM {table} WHERE ts >= %s::date AND ts < %s::date + 1""",
        (day, day),
    ).fetchone()


def land_runs_green(instance: dg.DagsterInstance, day: str) -> list[dg.DagsterRun]:
    """The land runs that published ``day`` and passed its four checks."""
    return [
        r for r in green_runs(instance, "events", day) if r.job_name == names.import_parts_job_name("events")
    ]


def published_exports(instance: dg.DagsterInstance, day: str) -> dict[str, str]:
    """Export id -> the run that materialized it, for every import materialization of ``day``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=names.import_key("events"), asset_partitions=[day]), limit=50
    ).records
    return {str(r.asset_materialization.metadata["export_id"].value): r.run_id for r in records}


def copy_one_partition(
    services, instance: dg.DagsterInstance, pg_url: str, src: str, dst: str, diagnostics
) -> None:
    """The copy job re-copies DAYS[2] in one run; the sensor launches no land run for its parts."""
    run_id = launch_job(services, names.copy_job_name("events"), partition=DAYS[2])
    wait_until(
        lambda: (
            instance.get_run_by_id(run_id).status
            in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
        ),
        180,
        "the copy run",
        diagnostics,
    )
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS, diagnostics()
    assert check_results(instance, run_id) == dict.fromkeys(CHECKS, True)
    export = instance.fetch_materializations(names.export_key("events"), limit=1).records[0]
    assert export.run_id == run_id
    meta = {k: v.value for k, v in export.asset_materialization.metadata.items()}
    assert meta[names.META_LANDED_INLINE] is True
    landed = range(meta[names.META_LANDED_FROM], meta[names.META_LANDED_UNTIL] + 1)
    imported = instance.fetch_materializations(names.import_key("events"), limit=1).records[0]
    assert imported.run_id == run_id
    assert imported.asset_materialization.metadata["landed_in"].value == "export run"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for day in DAYS:
            assert fingerprint(conn, f"{dst}.events", day) == fingerprint(conn, f"{src}.events", day)
    time.sleep(7)  # at least one sensor tick after the copy run (the daemon ticks every 5 s at most)
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=names.import_parts_job_name("events"))):
        first, last = (int(x) for x in run.tags[names.TAG_SEQ_RANGE].split("-"))
        assert not set(range(first, last + 1)) & set(landed), (
            f"land run {run.run_id} for seqs the copy run landed"
        )


def run_chain(
    tmp_path: Path,
    pg_url: str,
    broker_url: str,
    instance_yaml: Path,
    extra_env: dict[str, str],
    *,
    copy: bool = False,
) -> None:
    uid = uuid.uuid4().hex[:8]
    src, dst = f"e2e_src_{uid}", f"e2e_dst_{uid}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        make_source(conn, src)
        conn.execute(f"CREATE SCHEMA {dst}")
    tables = {
        "defaults": {"part_bytes": 300_000, "workers": 2, "max_parts_per_run": 100},
        "sensor": {"interval_seconds": 2},
        "tables": {
            "events": {
                "source": {"env": "E2E_SOURCE_URL"},
                "table": f"{src}.events",
                "partition": {"daily": "ts", "start": DAYS[0], "end": "2026-02-04"},
                "broker": {"env": "E2E_BROKER_URL"},
                "target": {"url": {"env": "E2E_TARGET_URL"}, "table": f"{dst}.events", "name": "e2e_dwh"},
            }
        },
    }
    tables_file = tmp_path / "tables.yaml"
    tables_file.write_text(yaml.safe_dump(tables))
    env = {
        "TDTP_TABLES": str(tables_file),
        "TDTP_HOME": str(tmp_path / "data"),
        "E2E_SOURCE_URL": pg_url,
        "E2E_TARGET_URL": pg_url,
        "E2E_BROKER_URL": broker_url,
        **extra_env,
    }
    with dagster_services(tmp_path / "dagster_home", env, instance_yaml=instance_yaml) as services:
        wait_for_location(services)
        instance = services.instance()
        backfill = launch_asset_backfill(services, list(names.export_key("events").path), DAYS)

        def diagnostics() -> str:
            return describe_runs(instance) + "\n" + services.log_tail()

        wait_until(
            lambda: all(land_runs_green(instance, day) for day in DAYS),
            240,
            "a land run that published each partition with all checks passed",
            diagnostics,
        )
        land_runs = instance.get_runs(filters=dg.RunsFilter(job_name=names.import_parts_job_name("events")))
        assert land_runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in land_runs)
        assert all(r.tags["dagster/sensor_name"] == "tdtp_part_arrival" for r in land_runs)
        assert all(r.tags[names.TAG_TARGET] == "e2e_dwh" for r in land_runs)
        # One hop: each export is published and checked in one land run; no publish run at all.
        for day in DAYS:
            ((export_id, run_id),) = published_exports(instance, day).items()
            assert run_id in {r.run_id for r in land_runs}, (day, export_id)
        assert instance.get_runs(filters=dg.RunsFilter(job_name=names.publish_job_name("events"))) == []

        with psycopg.connect(pg_url, autocommit=True) as conn:
            for day in DAYS:
                source = fingerprint(conn, f"{src}.events", day)
                assert source[0] == ROWS_PER_DAY
                assert fingerprint(conn, f"{dst}.events", day) == source

        # Materialize one partition again: a new export replaces it, nothing doubles.
        before = {run.run_id for run in land_runs_green(instance, DAYS[1])}
        launch_asset_backfill(services, list(names.export_key("events").path), [DAYS[1]])
        wait_until(
            lambda: {run.run_id for run in land_runs_green(instance, DAYS[1])} - before != set(),
            180,
            "the re-materialized partition's land run",
            diagnostics,
        )
        assert len(published_exports(instance, DAYS[1])) == 2
        assert instance.get_runs(filters=dg.RunsFilter(job_name=names.publish_job_name("events"))) == []
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for day in DAYS:
                assert fingerprint(conn, f"{dst}.events", day) == fingerprint(conn, f"{src}.events", day)
            total, distinct = conn.execute(
                f"SELECT count(*), count(DISTINCT id) FROM {dst}.events"
            ).fetchone()
            assert total == distinct == 3 * ROWS_PER_DAY
        if copy:
            copy_one_partition(services, instance, pg_url, src, dst, diagnostics)
        # The backfill daemon marks a backfill done on its next pass (about every 30 s).
        wait_until(
            lambda: backfill_status(services, backfill).startswith("COMPLETED"),
            60,
            "backfill completed",
            diagnostics,
        )
        instance.dispose()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {src} CASCADE")
        conn.execute(f"DROP SCHEMA {dst} CASCADE")


def test_backfill_over_rabbitmq_stream(tmp_path: Path, pg_url: str, rabbitmq_stream: str) -> None:
    """The sensor chain, then one partition through the copy job (one run, no land runs)."""
    run_chain(tmp_path, pg_url, rabbitmq_stream, INSTANCE_YAML, {}, copy=True)


def test_backfill_over_kafka(tmp_path: Path, pg_url: str, kafka_bootstrap: str) -> None:
    topic = f"e2e_{uuid.uuid4().hex[:10]}"
    run_chain(tmp_path, pg_url, f"kafka://{kafka_bootstrap}/{topic}", INSTANCE_YAML, {})


def test_backfill_with_postgres_instance_storage(
    tmp_path: Path, pg_url: str, rabbitmq_stream: str, dagster_pg_url: str
) -> None:
    run_chain(tmp_path, pg_url, rabbitmq_stream, POSTGRES_INSTANCE_YAML, {"DAGSTER_PG_URL": dagster_pg_url})
