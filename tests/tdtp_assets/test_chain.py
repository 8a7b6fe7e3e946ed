"""The whole chain inside one process: export assets, sensor ticks, import runs, checks.

Uses Dagster's own test helpers (``materialize``, ``build_sensor_context``,
``instance_for_test``) on a small SQLite source, the file spool and a SQLite target,
and asserts what a user sees: runs requested, rows in the target, check results.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from tdtp.brokers import open_broker
from tdtp.codec import export_message_id
from tdtp.packet import Summary
from tdtp.parts import PartOptions, build_parts
from tdtp.sources import open_source
from tdtp_assets import names
from tests.e2e.support import (
    DAYS,
    definitions_for,
    execute_request,
    sqlite_count,
    tables_doc,
    tick,
)


def export(defs: dg.Definitions, instance: dg.DagsterInstance, table: str, partition: str) -> dict:
    result = dg.materialize(
        [defs.get_assets_def(names.export_key(table))],
        instance=instance,
        partition_key=partition,
        resources=defs.resources,
    )
    assert result.success
    mat = result.asset_materializations_for_node(names.export_op_name(table))[0]
    return {k: v.value for k, v in mat.metadata.items()}


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str]]:
    return {ev.check_name: (ev.passed, ev.description or "") for ev in result.get_asset_check_evaluations()}


def day_rows(home: Path, day: str) -> int:
    return sqlite_count(home / "target.db", "SELECT count(*) FROM events WHERE substr(ts, 1, 10) = ?", (day,))


def land_and_publish(defs, instance, cursor):
    """Tick until the sensor asks for nothing; run everything it asks for.  Returns (requests, results, cursor)."""
    seen, results = [], []
    for _ in range(6):
        requests, cursor = tick(defs, instance, cursor)
        if not requests:
            break
        for request in requests:
            seen.append(request)
            results.append(execute_request(defs, instance, request))
    return seen, results, cursor


def test_backfilled_partitions_are_landed_published_and_checked_in_one_land_run(home: Path, instance) -> None:
    """One sensor hop: the land run publishes every export it completes and runs their checks; no publish run."""
    defs = definitions_for(tables_doc(home), home)
    exports = [export(defs, instance, "events", day) for day in DAYS]
    assert all(e["parts"] > 1 for e in exports), "the small part budget should give several parts per day"
    assert [e["dagster/row_count"] for e in exports] == [1500, 1500, 1500]

    requests, results, cursor = land_and_publish(defs, instance, None)
    assert all(r.success for r in results), [r.dagster_run.job_name for r in results if not r.success]

    last_seq = exports[-1][names.META_LAST_SEQ]
    assert [(r.job_name, r.run_key) for r in requests] == [
        (names.import_parts_job_name("events"), f"events:0-{last_seq}")
    ], "one land run, and no publish run"
    (land,) = results
    mats = {
        m.partition: {k: v.value for k, v in m.metadata.items()}
        for m in land.asset_materializations_for_node(names.land_publish_op_name("events"))
    }
    assert sorted(mats) == list(DAYS)
    for day, exported in zip(DAYS, exports, strict=True):
        assert day_rows(home, day) == 1500
        assert mats[day]["export_id"] == exported["export_id"]
        assert mats[day]["dagster/row_count"] == 1500
        assert mats[day]["published"] is True
        assert mats[day]["landed_in"] == "land runs"
    evaluations = land.get_asset_check_evaluations()
    assert len(evaluations) == 15
    assert {(e.partition, e.check_name) for e in evaluations} == {
        (day, check) for day in DAYS for check in ("rows_match_summary", "parts_complete", "no_dead_letters",
                                                   "checksum_matches", "schema_change")
    }  # fmt: skip
    assert all(e.passed for e in evaluations), [e.description for e in evaluations]
    assert {e.check_name for e in evaluations if not e.blocking} == {"schema_change"}, "four blocking, as specified"
    rows = [e for e in evaluations if e.check_name == "rows_match_summary"]
    assert {e.description for e in rows} == {"1,500 rows in the target partition == TotalRows 1,500"}
    # What the asset's page shows: each partition's latest materialization came from the land run.
    for day in DAYS:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=names.import_key("events"), asset_partitions=[day]), limit=1
        ).records[0]
        assert record.run_id == land.run_id

    # Nothing new: the sensor asks for nothing, also after a "daemon restart" with the stored cursor.
    assert tick(defs, instance, cursor)[0] == []
    assert tick(definitions_for(tables_doc(home), home), instance, cursor)[0] == []


def test_land_run_follows_an_export_still_running_and_publishes_it(home: Path, instance) -> None:
    """Launched at the first part, the land run reads on until the summary, then publishes and checks it."""
    defs = definitions_for(tables_doc(home), home)
    export_id = export_message_id("REF")
    with open_source(f"sqlite:///{home / 'source.db'}", table="events", where=f"substr(ts, 1, 10) = '{DAYS[0]}'") as source:
        items = list(build_parts(source.schema, source.lines(), table="events", export_id=export_id,
                                 options=PartOptions(part_bytes=20_000), partition=DAYS[0]))  # fmt: skip
    summary = items[-1]
    summary.extra["partition_filter"] = {"column": "ts", "kind": "day", "value": DAYS[0]}
    spool = f"spool:///{home}/spool/events"
    with open_broker(spool) as log:
        log.publish(items[0].body, items[0].headers())
    (land,), cursor = tick(defs, instance, None)
    assert land.run_key == "events:0-0"
    assert land.tags[names.TAG_FOLLOW]

    def rest_of_the_export() -> None:
        time.sleep(1.5)  # the land run is reading by now
        with open_broker(spool) as log:
            for part in items[1:-1]:
                log.publish(part.body, part.headers())
            log.publish(summary.to_json(), {"kind": "summary", "export_id": export_id, "partition": DAYS[0]})

    exporter = threading.Thread(target=rest_of_the_export)
    exporter.start()
    result = execute_request(defs, instance, land)
    exporter.join()
    assert result.success
    assert day_rows(home, DAYS[0]) == 1500
    (mat,) = result.asset_materializations_for_node(names.land_publish_op_name("events"))
    assert mat.partition == DAYS[0]
    assert mat.metadata["export_id"].value == export_id
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(
        ("rows_match_summary", "parts_complete", "no_dead_letters", "checksum_matches", "schema_change"), True
    )
    last_seq = len(items) - 1
    assert instance.get_run_by_id(result.run_id).tags[names.TAG_FOLLOWED_UNTIL] == str(last_seq)
    # The seqs it read after its range are not launched again, and no publish run follows.
    requests, cursor = tick(defs, instance, cursor)
    assert requests == []
    assert json.loads(cursor)["seq"]["events"] == last_seq


def test_parts_are_batched_per_run_with_stable_run_keys(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home, max_parts_per_run=3), home)
    meta = export(defs, instance, "events", DAYS[0])
    total = meta[names.META_LAST_SEQ] + 1
    requests, cursor = tick(defs, instance, None)
    keys = [r.run_key for r in requests]
    expected = [f"events:{a}-{min(a + 2, total - 1)}" for a in range(0, total, 3)]
    assert keys == expected
    assert all(r.tags[names.TAG_TARGET] == "target" for r in requests)
    # The same cursor never yields the same ranges again; a lost cursor yields the same
    # run keys, which Dagster's run-key dedupe then skips.
    assert tick(defs, instance, cursor)[0] == []
    assert [r.run_key for r in tick(defs, instance, None)[0]] == expected


def test_reexport_replaces_the_partition_without_duplicates(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home), home)
    first = export(defs, instance, "events", DAYS[1])
    _, results, cursor = land_and_publish(defs, instance, None)
    assert all(r.success for r in results)
    assert day_rows(home, DAYS[1]) == 1500

    second = export(defs, instance, "events", DAYS[1])
    assert second["export_id"] != first["export_id"]
    requests, results, _ = land_and_publish(defs, instance, cursor)
    assert all(r.success for r in results)
    assert [r.job_name for r in requests] == [names.import_parts_job_name("events")]
    (mat,) = results[0].asset_materializations_for_node(names.land_publish_op_name("events"))
    assert (mat.partition, mat.metadata["export_id"].value) == (DAYS[1], second["export_id"])
    assert day_rows(home, DAYS[1]) == 1500
    assert sqlite_count(home / "target.db", "SELECT count(*) - count(DISTINCT id) FROM events") == 0


def test_static_partitions(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home), home)
    for region in ("eu", "us"):
        assert export(defs, instance, "people", region)["dagster/row_count"] == 200
    requests, results, _ = land_and_publish(defs, instance, None)
    assert all(r.success for r in results)
    assert [r.job_name for r in requests] == [names.import_parts_job_name("people")]
    published = results[0].asset_materializations_for_node(names.land_publish_op_name("people"))
    assert sorted(m.partition for m in published) == ["eu", "us"]
    assert sqlite_count(home / "target.db", "SELECT count(*) FROM people WHERE region = 'eu'") == 200


def test_import_asset_alone_lands_its_export_when_no_sensor_ran(home: Path, instance) -> None:
    """Materializing the import partition from the UI (sensor stopped) still lands, publishes and checks."""
    defs = definitions_for(tables_doc(home), home)
    export(defs, instance, "events", DAYS[2])
    result = defs.resolve_job_def(names.publish_job_name("events")).execute_in_process(
        instance=instance, partition_key=DAYS[2]
    )
    assert result.success
    assert day_rows(home, DAYS[2]) == 1500
    assert all(passed for passed, _ in checks_of(result).values())


def test_import_without_export_says_what_to_do(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home), home)
    result = defs.resolve_job_def(names.publish_job_name("events")).execute_in_process(
        instance=instance, partition_key=DAYS[0], raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error.message
    assert f"materialize {names.export_key('events').to_user_string()} first" in failure


def test_check_says_how_many_rows_are_missing(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home), home)
    export(defs, instance, "events", DAYS[0])
    _, results, _ = land_and_publish(defs, instance, None)
    assert all(r.success for r in results)
    conn = sqlite3.connect(home / "target.db")
    with conn:
        conn.execute("DELETE FROM events WHERE id IN (1, 2, 3)")
    conn.close()
    result = defs.resolve_job_def(names.publish_job_name("events")).execute_in_process(
        instance=instance, partition_key=DAYS[0], raise_on_error=False
    )
    assert not result.success, "a failing blocking check fails the run"
    passed, description = checks_of(result)["rows_match_summary"]
    assert not passed
    assert description == "3 rows missing: 1,497 rows in the target partition, TotalRows 1,500"


def test_lost_part_fails_the_parts_check_naming_the_part(home: Path, instance) -> None:
    """An export whose part 1 never reached the stream: the checks name part 1, after no run is in flight."""
    defs = definitions_for(tables_doc(home), home)
    export_id = export_message_id("REF")
    with open_source(f"sqlite:///{home / 'source.db'}", table="events") as source:
        items = list(build_parts(source.schema, source.lines(), table="events", export_id=export_id,
                                 options=PartOptions(part_bytes=20_000), partition=DAYS[0]))  # fmt: skip
    summary = items[-1]
    assert isinstance(summary, Summary)
    summary.extra["partition_filter"] = {"column": "ts", "kind": "day", "value": DAYS[0]}
    with open_broker(f"spool:///{home}/spool/events") as log:
        first = log.publish(items[1].body, items[1].headers())  # part 2 only: part 1 is lost
        for part in items[2:-1]:
            log.publish(part.body, part.headers())
        last = log.publish(
            summary.to_json(), {"kind": "summary", "export_id": export_id, "partition": DAYS[0]}
        )
    # An export made outside this Dagster (e.g. by the CLI), reported so the import asset knows its range.
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=names.export_key("events"),
            partition=DAYS[0],
            metadata={"export_id": export_id, "first_seq": first, "summary_seq": last},
        )
    )
    requests, results, _ = land_and_publish(defs, instance, None)
    publish = [r for r in requests if r.job_name == names.publish_job_name("events")]
    assert [r.run_key for r in publish] == [f"events:publish:{export_id}:incomplete"]
    checks = checks_of(results[-1])
    assert not results[-1].success
    assert checks["parts_complete"][0] is False
    assert checks["parts_complete"][1].startswith("parts missing: 1 (")
    assert day_rows(home, DAYS[0]) == 0, "an incomplete export is never published"


def test_single_partition_range_run_exports_that_partition(home: Path, instance) -> None:
    """Some launchers send a one-partition range instead of a partition key: same export."""
    defs = definitions_for(tables_doc(home), home)
    job = defs.resolve_job_def(names.export_job_name("events"))
    result = job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": DAYS[1], "dagster/asset_partition_range_end": DAYS[1]},
    )
    mat = result.asset_materializations_for_node(names.export_op_name("events"))[0]
    assert mat.metadata["dagster/row_count"].value == 1500
    assert mat.metadata["partition"].value == DAYS[1]


def test_corrupt_part_fails_the_dead_letter_check(home: Path, instance) -> None:
    """A part that cannot be decoded is dead-lettered; the checks name it and nothing is published."""
    defs = definitions_for(tables_doc(home), home)
    export_id = export_message_id("REF")
    with open_source(f"sqlite:///{home / 'source.db'}", table="events") as source:
        items = list(build_parts(source.schema, source.lines(), table="events", export_id=export_id,
                                 options=PartOptions(part_bytes=20_000), partition=DAYS[2]))  # fmt: skip
    summary = items[-1]
    summary.extra["partition_filter"] = {"column": "ts", "kind": "day", "value": DAYS[2]}
    with open_broker(f"spool:///{home}/spool/events") as log:
        broken = bytearray(items[0].body)
        broken[len(broken) // 2 :] = b"<garbage/>" * (len(broken) // 20)
        first = log.publish(bytes(broken), items[0].headers())
        for part in items[1:-1]:
            log.publish(part.body, part.headers())
        last = log.publish(
            summary.to_json(), {"kind": "summary", "export_id": export_id, "partition": DAYS[2]}
        )
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=names.export_key("events"),
            partition=DAYS[2],
            metadata={"export_id": export_id, "first_seq": first, "summary_seq": last},
        )
    )
    _, results, _ = land_and_publish(defs, instance, None)
    checks = checks_of(results[-1])
    assert checks["no_dead_letters"][0] is False
    assert checks["no_dead_letters"][1].startswith("1 dead letter(s), parts 1: ")
    assert checks["parts_complete"][1].startswith("parts missing: 1 (")
    assert day_rows(home, DAYS[2]) == 0


def test_unreachable_broker_does_not_stop_other_tables(home: Path, instance) -> None:
    doc = tables_doc(home)
    doc["tables"]["ghost"] = {
        "source": "sqlite:///{home}/source.db",
        "table": "people",
        "broker": "rabbitmq://guest:guest@127.0.0.1:1/ghost?queue_type=stream&connect_timeout=0.3",
        "target": {"url": "sqlite:///{home}/target.db", "table": "ghost"},
    }
    defs = definitions_for(doc, home)
    export(defs, instance, "events", DAYS[0])
    requests, cursor = tick(defs, instance, None)
    assert [r.job_name for r in requests] == [names.import_parts_job_name("events")]
    assert "ghost" not in json.loads(cursor)["seq"]


def test_a_tick_waits_for_the_first_part_and_launches_its_land_run_at_once(home: Path, instance) -> None:
    """The daemon ticks every 5 s at best: a tick that finds nothing keeps polling, so a first part is not left waiting."""
    doc = tables_doc(home)
    doc["sensor"]["interval_seconds"] = 5  # a tick waits up to 4 s
    defs = definitions_for(doc, home)
    started = time.monotonic()
    assert tick(defs, instance, None)[0] == []
    assert time.monotonic() - started >= 3.8, "nothing arrived: the tick polled for the interval less a second"

    def first_part() -> None:
        time.sleep(0.5)
        with open_broker(f"spool:///{home}/spool/events") as log:
            log.publish(b"<DataPacket/>", {"kind": "data", "export_id": "REF-x", "partition": DAYS[0]})

    producer = threading.Thread(target=first_part)
    started = time.monotonic()
    producer.start()
    requests, _ = tick(defs, instance, None)
    producer.join()
    assert [r.run_key for r in requests] == ["events:0-0"]
    assert time.monotonic() - started < 3.3, "the land run was requested as soon as the part arrived"


def test_a_run_landing_three_partitions_reports_each_its_own_throughput(home: Path, instance) -> None:
    """Throughput is per partition: each gets the time its own parts were in work, not the whole run's."""
    defs = definitions_for(tables_doc(home), home)
    for day in DAYS:
        export(defs, instance, "events", day)
    requests, results, _ = land_and_publish(defs, instance, None)
    assert all(r.success for r in results)
    land_runs = [r for r in results if r.dagster_run.job_name == names.import_parts_job_name("events")]
    assert len(land_runs) == 1, "one run lands the three partitions"
    record = instance.get_run_record_by_id(land_runs[0].dagster_run.run_id)
    run_wall = record.end_time - record.start_time
    figures = {}
    for record in instance.fetch_materializations(names.import_key("events"), limit=10).records:
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        figures[record.partition_key] = (meta["seconds"], meta["rows_per_second"])
    assert set(figures) == set(DAYS)
    seconds = [s for s, _ in figures.values()]
    assert all(s > 0 for s in seconds)
    assert len(set(seconds)) == 3, figures
    # Each partition's share of the run, not the run's time three times over.
    assert sum(seconds) <= run_wall, (figures, run_wall)
    for s, rate in figures.values():
        assert rate == pytest.approx(1500 / s, rel=0.02)
