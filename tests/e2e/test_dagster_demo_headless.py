"""The demo from the shell, no configuration: `scripts/demo.sh --headless` runs the whole chain with `dg launch`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from resources.demo import expected_orders_on

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_headless_demo_exports_imports_and_checks_one_day(tmp_path: Path) -> None:
    """What the README's first command runs: no deprecation noise, four checks passed, the rows in."""
    env = {k: v for k, v in os.environ.items() if k not in ("TDTP_TABLES", "DAGSTER_HOME", "VIRTUAL_ENV")}
    env.update({"TDTP_HOME": str(tmp_path / ".tdtp"), "DAGSTER_HOME": str(tmp_path / "dagster_home")})
    day = "2026-01-07"
    proc = subprocess.run(
        ["bash", "scripts/demo.sh", "--headless"],
        cwd=ROOT, env={**env, "DEMO_PARTITION": day}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    for check in ("rows_match_summary", "parts_complete", "no_dead_letters", "checksum_matches"):
        assert f"Asset check '{check}' on 'tdtp/import/orders' passed" in output
    assert "SupersessionWarning" not in output
    assert "will not be used" not in output
    assert (tmp_path / ".tdtp" / "demo.db").exists(), "the demo source is generated on first use"
    conn = sqlite3.connect(tmp_path / ".tdtp" / "warehouse.db")
    rows = conn.execute("SELECT count(*), count(DISTINCT id) FROM orders").fetchone()
    conn.close()
    assert rows == (expected_orders_on(day), expected_orders_on(day))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_backfill_under_the_daemon(tmp_path: Path) -> None:
    """The demo as `dagster dev` runs it (webserver + daemon, no configuration): a backfill lands and checks."""
    import dagster as dg

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

    days = ["2026-01-10", "2026-01-11", "2026-01-12"]
    env = {"TDTP_HOME": str(tmp_path / ".tdtp"), "TDTP_TABLES": ""}
    with dagster_services(tmp_path / "dagster_home", env, instance_yaml=INSTANCE_YAML) as services:
        wait_for_location(services)
        instance = services.instance()
        launch_asset_backfill(services, list(names.export_key("orders").path), days)
        launch_asset_backfill(services, list(names.export_key("customers").path), ["eu", "us", "apac"])

        def checked(table: str, partition: str) -> bool:
            """Published and checked green by a land run of the sensor (one hop, no publish run)."""
            return any(r.job_name == names.import_parts_job_name(table) for r in green_runs(instance, table, partition))

        wait_until(
            lambda: (
                all(checked("orders", d) for d in days)
                and all(checked("customers", r) for r in ("eu", "us", "apac"))
            ),
            300,
            "every demo partition published and checked",
            lambda: describe_runs(instance) + services.log_tail(),
        )
        assert not instance.get_runs(filters=dg.RunsFilter(job_name=names.publish_job_name("orders")))
        instance.dispose()
    conn = sqlite3.connect(tmp_path / ".tdtp" / "warehouse.db")
    per_day = dict(
        conn.execute("SELECT substr(created_at, 1, 10), count(*) FROM orders GROUP BY 1").fetchall()
    )
    customers = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
    conn.close()
    assert per_day == {d: expected_orders_on(d) for d in days}
    assert customers == 30_000


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_backfill_of_both_assets_copies_each_partition_in_one_run(tmp_path: Path) -> None:
    """A backfill that selects the export and the import asset (UI: both selected -> Materialize ->
    a range) runs one copy per partition: landed in the export run, checked, no import-parts run.

    The copy runs' exports interleave in the stream; at most two of them run at once, the
    target's pool limit in dagster.yaml (their runs carry no job tags)."""
    import dagster as dg

    from tdtp_assets import names
    from tests.e2e.dagster_procs import (
        INSTANCE_YAML,
        check_results,
        dagster_services,
        describe_runs,
        launch_asset_backfill,
        wait_for_location,
        wait_until,
    )

    days = ["2026-01-10", "2026-01-11", "2026-01-12"]
    env = {"TDTP_HOME": str(tmp_path / ".tdtp"), "TDTP_TABLES": ""}
    with dagster_services(tmp_path / "dagster_home", env, instance_yaml=INSTANCE_YAML) as services:
        wait_for_location(services)
        instance = services.instance()
        pool = names.target_pool("warehouse")
        wait_until(
            lambda: pool in instance.event_log_storage.get_concurrency_keys(),
            60,
            "the sensor's first tick gives the warehouse's pool its default limit",
            services.log_tail,
        )
        assert instance.event_log_storage.get_concurrency_info(pool).slot_count == 2
        launch_asset_backfill(
            services, list(names.export_key("orders").path), days, with_assets=[list(names.import_key("orders").path)]
        )

        def finished() -> list[dg.DagsterRun]:
            runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
            return [r for r in runs if r.tags.get("dagster/partition") in days]

        wait_until(
            lambda: len(finished()) == len(days),
            300,
            "one successful run per backfilled day",
            lambda: describe_runs(instance) + services.log_tail(),
        )
        runs = finished()
        for run in runs:
            assert run.asset_selection == {names.export_key("orders"), names.import_key("orders")}
            checks = check_results(instance, run.run_id)
            assert len(checks) == 5 and all(checks.values()), checks
        landed = {
            rec.partition_key: rec.asset_materialization.metadata["landed_in"].value
            for rec in instance.fetch_materializations(names.import_key("orders"), limit=10).records
        }
        assert landed == dict.fromkeys(days, "export run")
        spans = [
            (r.start_time, r.end_time)
            for r in instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id for run in runs]))
        ]
        # Queued at once, all three started together before the pool limit (measured: 3).
        assert max_overlap(spans) <= 2, f"the target's pool lets two copy runs in at once: {spans}"
        time.sleep(6)  # a sensor tick after the runs (the daemon's floor is 5 s): it must launch nothing for them
        assert not instance.get_runs(filters=dg.RunsFilter(job_name=names.import_parts_job_name("orders")))
        instance.dispose()
    conn = sqlite3.connect(tmp_path / ".tdtp" / "warehouse.db")
    per_day = dict(
        conn.execute("SELECT substr(created_at, 1, 10), count(*) FROM orders GROUP BY 1").fetchall()
    )
    conn.close()
    assert per_day == {d: expected_orders_on(d) for d in days}


def max_overlap(spans: list[tuple[float | None, float | None]]) -> int:
    """How many of the (start, end) spans were in progress at the same moment, at most."""
    edges = sorted(
        [(start, 1) for start, _ in spans if start is not None] + [(end, -1) for _, end in spans if end is not None],
        key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
    )
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most
