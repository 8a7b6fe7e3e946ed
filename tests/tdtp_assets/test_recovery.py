"""Failures end somewhere visible and recover by themselves (issue 11, items 5-7), in one process.

A land run into a target that cannot be opened fails with the cause as the run's
failure message; the sensor launches the range again with new run keys; past
``land_retries`` the partition's import run fails its checks naming the cause; once
the cause is fixed, a re-launch lands the range and the partition is published with
green checks.  A dead broker makes the tick say so.  Runs Dagster builds from assets
(backfills, Materialize) carry the table's tags.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dagster import DagsterEventType

from sensors.part_arrival import SENSOR_NAME
from tdtp_assets import names
from tests.e2e.support import DAYS, definitions_for, execute_request, sqlite_count, tables_doc, tick
from tests.tdtp_assets.test_chain import checks_of, export

CHECKS = {"rows_match_summary", "parts_complete", "no_dead_letters", "checksum_matches", "schema_change"}


def failing_doc(home: Path, *, retries: bool = True) -> dict:
    """The events table into a SQLite file whose directory does not exist yet; re-launches due at once."""
    doc = tables_doc(home)
    if retries:
        doc["defaults"].update({"land_retries": 1, "land_retry_seconds": 0, "land_retry_max_seconds": 0})
    doc["tables"]["events"]["target"]["url"] = "sqlite:///{home}/dw/target.db"
    del doc["tables"]["people"]
    return doc


def run_failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """What Dagster shows as the run's failure: the run failure event's error."""
    (entry,) = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    error = entry.dagster_event.event_specific_data.error
    return error.message if error else entry.message


def test_failed_land_run_is_relaunched_then_fails_the_checks_then_lands(home: Path, instance) -> None:
    defs = definitions_for(failing_doc(home), home)
    meta = export(defs, instance, "events", DAYS[0])
    last = meta[names.META_LAST_SEQ]

    (first_try,), cursor = tick(defs, instance, None)
    assert first_try.run_key == f"events:0-{last}"
    result = execute_request(defs, instance, first_try)
    assert not result.success
    message = run_failure_message(instance, result.run_id)
    assert "unable to open database file" in message, message
    assert f"landing seq 0..{last} of events" in message
    assert "Exceeded max_retries" not in message

    # The cursor moved past the range; the failed run brings it back with a new run key.
    (retry,), cursor = tick(defs, instance, cursor)
    assert retry.run_key == f"events:0-{last}:retry-1"
    assert retry.tags[names.TAG_LAND_ATTEMPT] == "1"
    assert not execute_request(defs, instance, retry).success

    # land_retries: 1 re-launch failed too: the partition's import run fails its checks, naming the cause.
    requests, cursor = tick(defs, instance, cursor)
    by_job = {r.job_name: r for r in requests}
    assert set(by_job) == {names.publish_job_name("events"), names.import_parts_job_name("events")}
    assert by_job[names.import_parts_job_name("events")].run_key == f"events:0-{last}:retry-2"
    failed_import = by_job[names.publish_job_name("events")]
    assert failed_import.partition_key == DAYS[0]
    assert failed_import.run_key == f"events:land_failed:{meta['export_id']}"
    result = execute_request(defs, instance, failed_import)
    assert not result.success
    checks = checks_of(result)
    assert set(checks) == CHECKS
    for passed, description in checks.values():
        assert not passed
        assert "2 land run(s) failed" in description and "unable to open database file" in description

    # Nothing new while the re-launch is waiting: the same failure does not count twice.
    assert tick(defs, instance, cursor)[0] == []

    # Fix the cause: the re-launch lands the range, publishes the partition recorded as not
    # published, and its checks pass, all in that run; the sensor has nothing more to launch.
    (home / "dw").mkdir()
    result = execute_request(defs, instance, by_job[names.import_parts_job_name("events")])
    assert result.success
    (mat,) = result.asset_materializations_for_node(names.land_publish_op_name("events"))
    assert (mat.partition, mat.metadata["published"].value) == (DAYS[0], True)
    assert {name for name, (passed, _) in checks_of(result).items() if passed} == CHECKS
    assert sqlite_count(home / "dw" / "target.db", "SELECT count(*) FROM events") == 1500
    assert tick(defs, instance, cursor)[0] == []


def test_backoff_waits_and_is_capped(home: Path, instance) -> None:
    doc = failing_doc(home)
    doc["defaults"].update({"land_retries": 5, "land_retry_seconds": 3600, "land_retry_max_seconds": 7200})
    defs = definitions_for(doc, home)
    export(defs, instance, "events", DAYS[0])
    (first_try,), cursor = tick(defs, instance, None)
    assert not execute_request(defs, instance, first_try).success
    # An hour to go: the range waits in the cursor, nothing is launched.
    assert tick(defs, instance, cursor)[0] == []

    from sensors.land_retries import backoff_seconds
    from tests.e2e.support import load_doc

    table = load_doc(doc, home).table("events")
    assert [backoff_seconds(table, n) for n in (1, 2, 3, 4)] == [3600, 7200, 7200, 7200]


def sensor_outcome(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    """One tick: (run requests, skip reason, cursor); raises what the tick raises."""
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, repository_def=defs.get_repository_def()
    ) as context:
        data = sensor.evaluate_tick(context)
    return list(data.run_requests or []), data.skip_message, data.cursor


def test_a_tick_that_cannot_read_a_broker_says_so(home: Path, instance) -> None:
    doc = tables_doc(home)
    dead = "rabbitmq://guest:guest@127.0.0.1:1/dead_stream?queue_type=stream&connect_timeout=1"
    doc["tables"]["people"]["broker"] = dead
    defs = definitions_for(doc, home)

    # Other tables go on: the events parts are launched although people's broker is dead.
    export(defs, instance, "events", DAYS[0])
    requests, skip, cursor = sensor_outcome(defs, instance, None)
    assert [r.job_name for r in requests] == [names.import_parts_job_name("events")]
    assert skip is None

    # Nothing to launch and nothing to save: the tick fails, naming the stream and the error.
    with pytest.raises(Exception) as failed:
        sensor_outcome(defs, instance, cursor)
    text = "".join(str(e) for e in (failed.value, failed.value.__cause__) if e)
    assert "cannot read stream 'people'" in text and "rabbitmq://guest:***@127.0.0.1:1/dead_stream" in text, (
        text
    )
    assert "guest:guest" not in text
    assert "cannot connect to RabbitMQ" in text, text

    # With progress to save (the first tick of a cursor), it is a skip with that reason instead.
    del doc["tables"]["events"]
    fresh = definitions_for(doc, home)
    with dg.instance_for_test() as other:
        requests, skip, _ = sensor_outcome(fresh, other, None)
    assert requests == []
    assert skip and "cannot read stream 'people'" in skip and "cannot connect to RabbitMQ" in skip


def test_runs_dagster_builds_from_assets_carry_the_table_tags(home: Path, instance) -> None:
    """A backfill's or the UI's Materialize run is an asset job run without job tags; its steps tag it."""
    defs = definitions_for(tables_doc(home), home)
    result = dg.materialize(
        [defs.get_assets_def(names.export_key("events"))],
        instance=instance,
        partition_key=DAYS[0],
        resources=defs.resources,
    )
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert run.tags[names.TAG_TABLE] == "events"
    assert run.tags[names.TAG_TARGET] == "target"
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={names.TAG_TABLE: "events", names.TAG_TARGET: "target"})
    )
    assert [r.run_id for r in runs] == [result.run_id]


def test_publish_and_export_runs_fail_with_the_root_cause(home: Path, instance) -> None:
    """The run's failure message says what failed and why, not "Exceeded max_retries" or a bare class."""
    defs = definitions_for(failing_doc(home, retries=False), home)
    meta = export(defs, instance, "events", DAYS[0])
    publish = defs.resolve_job_def(names.publish_job_name("events")).execute_in_process(
        run_config={"ops": {names.import_op_name("events"): {"config": {"export_id": meta["export_id"]}}}},
        instance=instance,
        partition_key=DAYS[0],
        raise_on_error=False,
    )
    assert not publish.success
    message = run_failure_message(instance, publish.run_id)
    assert f"publishing {meta['export_id']} of events into sqlite://" in message, message
    assert "unable to open database file" in message, message

    doc = failing_doc(home, retries=False)
    doc["tables"]["events"]["table"] = "no_such_table"
    broken = definitions_for(doc, home)
    result = dg.materialize(
        [broken.get_assets_def(names.export_key("events"))],
        instance=instance,
        partition_key=DAYS[0],
        resources=broken.resources,
        raise_on_error=False,
    )
    assert not result.success
    message = run_failure_message(instance, result.run_id)
    assert f"exporting events partition {DAYS[0]} from sqlite://" in message, message
    assert "no_such_table" in message, message


def test_a_land_run_whose_checks_fail_fails_and_is_not_launched_again(home: Path, instance) -> None:
    """Blocking checks that fail in the land run fail it, naming them; landing again would change nothing."""
    import sqlite3

    doc = tables_doc(home)
    doc["defaults"].update({"land_retry_seconds": 0, "land_retry_max_seconds": 0})  # a re-launch would be due at once
    del doc["tables"]["people"]
    defs = definitions_for(doc, home)
    # A target whose trigger eats one row of every load: the partition lands one row short.
    conn = sqlite3.connect(home / "target.db")
    conn.executescript(
        """
        CREATE TABLE events (id INTEGER PRIMARY KEY, ts TIMESTAMP NOT NULL, kind TEXT, amount DECIMAL(10,2), note TEXT);
        CREATE TRIGGER eat_one AFTER INSERT ON events WHEN NEW.id % 1500 = 1
        BEGIN DELETE FROM events WHERE id = NEW.id; END;
        """
    )
    conn.close()
    export(defs, instance, "events", DAYS[0])
    (land,), cursor = tick(defs, instance, None)
    result = execute_request(defs, instance, land)
    assert not result.success
    checks = checks_of(result)
    assert checks["rows_match_summary"] == (
        False, "1 rows missing: 1,499 rows in the target partition, TotalRows 1,500"
    )  # fmt: skip
    message = run_failure_message(instance, result.run_id)
    assert "1 check(s) failed: 2026-03-01 rows_match_summary: 1 rows missing" in message, message
    # The partition is materialized (published), its red check says why; nothing is launched again.
    assert tick(defs, instance, cursor)[0] == []
