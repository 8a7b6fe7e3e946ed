"""What the UI shows for a tables file: assets, groups, kinds, owners, checks, jobs, sensor, schedules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from resources import demo
from sensors.part_arrival import Cursor, seq_ranges
from tdtp_assets import names
from tdtp_assets.jobs import split_range
from tests.e2e.support import definitions_for, tables_doc


def test_asset_graph_per_table(tmp_path: Path) -> None:
    defs = definitions_for(tables_doc(tmp_path), tmp_path)
    graph = defs.resolve_asset_graph()
    for table in ("events", "people"):
        export, imported = names.export_key(table), names.import_key(table)
        assert graph.get(imported).parent_keys == {export}
        for key in (export, imported):
            node = graph.get(key)
            assert node.group_name == "source"
            assert node.owners == ["team:tests"]
            assert node.description
        assert graph.get(export).kinds == {"tdtp", "sqlite", "file"}
        assert graph.get(imported).kinds == {"tdtp", "sqlite"}
    assert graph.get(names.export_key("events")).partitions_def.get_partition_keys() == [
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
    ]
    assert graph.get(names.import_key("people")).partitions_def.get_partition_keys() == ["eu", "us"]


def test_four_blocking_and_one_warning_partitioned_checks_on_each_import_asset(tmp_path: Path) -> None:
    defs = definitions_for(tables_doc(tmp_path), tmp_path)
    graph = defs.resolve_asset_graph()
    checks = {
        key.name: graph.get_check_spec(key)
        for key in graph.asset_check_keys
        if key.asset_key == names.import_key("events")
    }
    blocking = {"rows_match_summary", "parts_complete", "no_dead_letters", "checksum_matches"}
    assert set(checks) == blocking | {"schema_change"}
    assert {name for name, spec in checks.items() if spec.blocking} == blocking
    assert all(spec.partitions_def is not None for spec in checks.values())


def test_jobs_sensor_and_schedules(tmp_path: Path) -> None:
    defs = definitions_for(tables_doc(tmp_path), tmp_path)
    for table in ("events", "people"):
        for job_name in (
            names.export_job_name(table),
            names.import_parts_job_name(table),
            names.publish_job_name(table),
        ):
            job = defs.resolve_job_def(job_name)
            assert job.executor_def.name == "in_process"
    assert defs.resolve_job_def(names.import_parts_job_name("events")).tags[names.TAG_TARGET] == "target"
    # Whatever writes into the target is in its pool (dagster.yaml limits runs per pool).
    land_job = defs.resolve_job_def(names.import_parts_job_name("events"))
    pools = {node.name: node.definition.pool for node in land_job.graph.nodes}
    assert pools == {"plan_parts_events": None, "land_parts_events": "tdtp/target/target",
                     "report_parts_events": "tdtp/target/target", "publish_parts_events": "tdtp/target/target",
                     "check_parts_events": "tdtp/target/target"}  # fmt: skip
    assert defs.get_assets_def(names.import_key("events")).op.pool == "tdtp/target/target"
    assert defs.get_assets_def(names.export_key("events")).op.pool is None, "plain exports only write the broker"

    sensor = defs.resolve_sensor_def("tdtp_part_arrival")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 1

    schedule = defs.resolve_schedule_def("tdtp_export_events_schedule")
    assert schedule.cron_schedule == "5 2 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 3, 3, 2, 0, tzinfo=dt.UTC))
    request = schedule.evaluate_tick(context).run_requests[0]
    assert request.partition_key == "2026-03-02"


def test_fanout_uses_the_multiprocess_executor(tmp_path: Path) -> None:
    doc = tables_doc(tmp_path)
    doc["tables"]["events"]["fanout"] = 2
    defs = definitions_for(doc, tmp_path)
    job = defs.resolve_job_def(names.import_parts_job_name("events"))
    assert job.executor_def.name == "multiprocess"


def test_seq_ranges_and_cursor() -> None:
    assert seq_ranges(-1, 0, 10) == []
    assert seq_ranges(-1, 5, 2) == [(0, 1), (2, 3), (4, 4)]
    assert seq_ranges(4, 5, 2) == []
    assert split_range(10, 19, 3) == [(10, 13), (14, 16), (17, 19)]
    assert split_range(0, 1, 4) == [(0, 0), (1, 1)]
    cursor = Cursor(seq={"orders": 41}, obs={"orders": 7}, waiting={"orders": {"REF-1": "2026-01-01"}})
    assert Cursor.parse(cursor.dump()) == cursor
    assert Cursor.parse(None) == Cursor()


def test_demo_source_is_deterministic_and_big_enough(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    assert demo.ensure_demo_db(path) is True
    assert demo.ensure_demo_db(path) is False
    import sqlite3

    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 1_000_000
    per_day = dict(
        conn.execute("SELECT substr(created_at, 1, 10), count(*) FROM orders GROUP BY 1").fetchall()
    )
    assert list(per_day) == demo.demo_partition_days()
    assert all(per_day[d] == demo.expected_orders_on(d) for d in per_day)
    first = conn.execute("SELECT * FROM orders WHERE id = 2").fetchone()
    conn.close()
    assert first == (
        2,
        "2026-01-01 00:00:02",
        7920,
        230,
        4,
        357.61,
        "delivered",
        'gift | wrap \\ "fragile" <ok> & fast',
    )


def test_sensor_gives_each_targets_pool_the_default_limit(tmp_path: Path) -> None:
    """Set before any run queues for it, so the first burst into a target is limited too."""
    from sensors import part_arrival
    from tests.e2e.support import tick

    doc = tables_doc(tmp_path)
    doc["tables"]["people"]["target"] = {"url": "sqlite:///{home}/other.db", "table": "people"}
    defs = definitions_for(doc, tmp_path)
    pools = {"default_limit": 2, "granularity": "run"}
    with dg.instance_for_test(overrides={"concurrency": {"pools": pools}}) as instance:
        storage = instance.event_log_storage
        assert storage.get_concurrency_keys() == set()
        tick(defs, instance, None)
        assert storage.get_concurrency_keys() == {"tdtp/target/target", "tdtp/target/other"}
        assert storage.get_concurrency_info("tdtp/target/target").slot_count == 2
        storage.set_concurrency_slots("tdtp/target/other", 1)  # a user's own limit for one target
        part_arrival._POOLS_READY.clear()  # as after a daemon restart
        tick(defs, instance, None)
        assert storage.get_concurrency_info("tdtp/target/other").slot_count == 1, "left as the user set it"
        assert storage.get_concurrency_info("tdtp/target/target").slot_count == 2
    with dg.instance_for_test() as instance:  # no default limit configured: nothing is set
        tick(defs, instance, None)
        assert instance.event_log_storage.get_concurrency_keys() == set()
