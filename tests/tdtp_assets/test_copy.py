"""The one-run copy: export and import of a partition in one run, and how the sensor treats it.

Real components throughout: the small SQLite source, the file spool, a SQLite target,
Dagster's ``materialize``/``instance_for_test``/``build_sensor_context``.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from tdtp_assets import names
from tests.e2e.support import DAYS, definitions_for, sqlite_count, tables_doc, tick
from tests.tdtp_assets.test_chain import checks_of, day_rows, export, land_and_publish

CHECKS = {"rows_match_summary", "parts_complete", "no_dead_letters", "checksum_matches", "schema_change"}


def copy_assets(defs: dg.Definitions, table: str = "events") -> list:
    """Both assets of a table and the import asset's checks, as a user selects them in the UI."""
    checks = [c for c in defs.asset_checks if names.import_key(table) in {k.asset_key for k in c.check_keys}]
    return [
        defs.get_assets_def(names.export_key(table)),
        defs.get_assets_def(names.import_key(table)),
        *checks,
    ]


def materialize_copy(
    defs: dg.Definitions, instance: dg.DagsterInstance, day: str
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        copy_assets(defs),
        instance=instance,
        partition_key=day,
        resources=defs.resources,
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_export_and_import_in_one_run_land_in_the_export_step(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home), home)
    result = materialize_copy(defs, instance, DAYS[0])
    assert result.success
    exported = metadata(result, names.export_op_name("events"))
    imported = metadata(result, names.import_op_name("events"))
    assert exported["parts"] > 1
    assert exported[names.META_LANDED_INLINE] is True
    assert exported["landed_parts"] == exported["parts"]
    assert (exported[names.META_LANDED_FROM], exported[names.META_LANDED_UNTIL]) == (
        exported[names.META_FIRST_SEQ],
        exported[names.META_LAST_SEQ],
    )
    assert imported["landed_in"] == "export run"
    assert imported["published"] is True
    assert imported["dagster/row_count"] == 1500
    assert imported["land_runs"] == 1
    assert checks_of(result)["rows_match_summary"] == (
        True,
        "1,500 rows in the target partition == TotalRows 1,500",
    )
    assert set(checks_of(result)) == CHECKS and all(p for p, _ in checks_of(result).values())
    assert day_rows(home, DAYS[0]) == 1500

    # Again: a new export replaces the partition; nothing doubles.
    again = materialize_copy(defs, instance, DAYS[0])
    assert again.success
    assert metadata(again, names.import_op_name("events"))["export_id"] != imported["export_id"]
    assert day_rows(home, DAYS[0]) == 1500
    assert sqlite_count(home / "target.db", "SELECT count(*) - count(DISTINCT id) FROM events") == 0

    # The sensor has nothing left to land or publish, and its cursor moved past both copies.
    requests, cursor = tick(defs, instance, None)
    assert requests == []
    assert json.loads(cursor)["seq"] == {
        "events": metadata(again, names.export_op_name("events"))[names.META_LAST_SEQ]
    }


def test_copy_job_is_one_run_with_the_checks(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home), home)
    job = defs.resolve_job_def(names.copy_job_name("events"))
    result = job.execute_in_process(instance=instance, partition_key=DAYS[1])
    assert result.success
    assert metadata(result, names.import_op_name("events"))["landed_in"] == "export run"
    assert {e.check_name for e in result.get_asset_check_evaluations() if e.passed} == CHECKS
    assert result.dagster_run.tags[names.TAG_LANDING] == "events"
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags[names.TAG_LANDING_FROM] == str(metadata(result, names.export_op_name("events"))[names.META_FIRST_SEQ])
    assert day_rows(home, DAYS[1]) == 1500


def test_export_alone_does_not_land(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home), home)
    meta = export(defs, instance, "events", DAYS[0])
    assert names.META_LANDED_INLINE not in meta
    assert day_rows_or_none(home, DAYS[0]) is None


def day_rows_or_none(home: Path, day: str) -> int | None:
    return day_rows(home, day) if (home / "target.db").exists() else None


def test_sensor_holds_land_runs_back_while_a_copy_run_is_in_flight(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home), home)
    meta = export(defs, instance, "events", DAYS[0])  # a plain export: the sensor's to land
    copy_run = create_run_for_test(
        instance,
        job_name=names.copy_job_name("events"),
        status=dg.DagsterRunStatus.STARTED,
        tags={names.TAG_LANDING: "events"},
    )
    requests, cursor = tick(defs, instance, None)
    assert requests == []
    assert "events" not in json.loads(cursor or "{}").get("seq", {})  # the seq cursor did not move: nothing is lost
    instance.report_run_failed(copy_run)
    requests, cursor = tick(defs, instance, cursor)
    assert [r.run_key for r in requests] == [f"events:0-{meta[names.META_LAST_SEQ]}"]


def test_sensor_skips_what_a_copy_run_landed_and_launches_the_rest(home: Path, instance) -> None:
    defs = definitions_for(tables_doc(home), home)
    plain_before = export(defs, instance, "events", DAYS[1])
    copied = materialize_copy(defs, instance, DAYS[0])
    assert copied.success
    copied_meta = metadata(copied, names.export_op_name("events"))
    plain_after = export(defs, instance, "events", DAYS[2])
    assert copied_meta[names.META_LANDED_FROM] == plain_before[names.META_LAST_SEQ] + 1

    requests, results, cursor = land_and_publish(defs, instance, None)
    land = [r.run_key for r in requests if r.job_name == names.import_parts_job_name("events")]
    assert land == [
        f"events:0-{plain_before[names.META_LAST_SEQ]}",
        f"events:{plain_after[names.META_FIRST_SEQ]}-{plain_after[names.META_LAST_SEQ]}",
    ]
    assert all(r.job_name == names.import_parts_job_name("events") for r in requests), "no publish run"
    published = [
        m.partition for r in results for m in r.asset_materializations_for_node(names.land_publish_op_name("events"))
    ]
    assert sorted(published) == [DAYS[1], DAYS[2]], "the copied partition was published by its own run"
    assert all(r.success for r in results)
    assert [day_rows(home, d) for d in DAYS] == [1500, 1500, 1500]
    assert tick(defs, instance, cursor)[0] == []


def test_failed_inline_landing_leaves_the_export_for_the_sensor(home: Path, instance) -> None:
    """The target cannot be opened during the copy run: the export still completes, the sensor lands it later."""
    doc = tables_doc(home)
    doc["tables"]["events"]["target"]["url"] = "sqlite:///{home}/later/target.db"
    defs = definitions_for(doc, home)
    result = materialize_copy(defs, instance, DAYS[0])
    assert not result.success, "the import step cannot reach the target either"
    exported = metadata(result, names.export_op_name("events"))
    assert exported[names.META_LANDED_INLINE] is False
    assert "unable to open database file" in exported["landing_error"]
    assert names.META_LANDED_UNTIL not in exported
    assert exported["dagster/row_count"] == 1500

    (home / "later").mkdir()
    requests, results, _ = land_and_publish(defs, instance, None)
    assert [r.run_key for r in requests if r.job_name == names.import_parts_job_name("events")] == [
        f"events:{exported[names.META_FIRST_SEQ]}-{exported[names.META_LAST_SEQ]}"
    ]
    assert all(r.success for r in results)
    (published,) = results
    assert metadata(published, names.land_publish_op_name("events"))["landed_in"] == "land runs"
    assert len(checks_of(published)) == 5 and all(p for p, _ in checks_of(published).values())
    assert sqlite_count(home / "later" / "target.db", "SELECT count(*) FROM events") == 1500


def test_schedule_can_run_the_copy_job(home: Path) -> None:
    doc = tables_doc(home)
    assert definitions_for(doc, home).resolve_schedule_def("tdtp_export_events_schedule").job_name == (
        names.export_job_name("events")
    )
    doc["tables"]["events"]["schedule"] = {"hour": 2, "job": "copy"}
    schedule = definitions_for(doc, home).resolve_schedule_def("tdtp_export_events_schedule")
    assert schedule.job_name == names.copy_job_name("events")


def test_copy_runs_exporting_at_once_each_land_only_their_own_export(home: Path, instance) -> None:
    """Copy runs of two partitions (a backfill of both assets) interleave in the table's stream.

    The interleaving is built by hand so it is the same every time: two exports' messages
    are published alternately into a second stream, and a lander follows each export.
    """
    from tdtp.brokers import Message, open_broker
    from tdtp_assets.copying import InlineLander
    from tests.e2e.support import load_doc

    doc = tables_doc(home, part_bytes=4096)
    a, b = (export(definitions_for(doc, home), instance, "events", day) for day in DAYS[:2])
    with open_broker(f"spool:///{home}/spool/events") as log:
        by_export: dict[str, list[Message]] = {}
        for m in log.read(from_seq=0):
            if isinstance(m, Message):
                by_export.setdefault(m.headers["export_id"], []).append(m)
    ids = (a[names.META_EXPORT_ID], b[names.META_EXPORT_ID])
    mixed_a, mixed_b = by_export[ids[0]], by_export[ids[1]]
    assert len(mixed_a) > 3 and len(mixed_b) > 3
    doc["tables"]["events"]["broker"] = "spool:///{home}/mixed/{table}"
    first: dict[str, int] = {}
    with open_broker(f"spool:///{home}/mixed/events") as mixed:
        for i in range(max(len(mixed_a), len(mixed_b))):
            for m in (mixed_a[i:i + 1] + mixed_b[i:i + 1]):  # fmt: skip
                seq = mixed.publish(m.body, m.headers)
                first.setdefault(m.headers["export_id"], seq)

    defs = definitions_for(doc, home)
    table = load_doc(doc, home).tables["events"]
    target, broker = (defs.resources[k("events")] for k in (names.target_resource, names.broker_resource))
    landers = {}
    for export_id in ids:
        lander = InlineLander(table, target, broker, export_id)
        lander.start(first[export_id])
        lander.finish(10.0)
        landers[export_id] = lander
    for mine, other in (ids, ids[::-1]):
        lander = landers[mine]
        assert lander.error is None and lander.landed_everything
        assert lander.others == [other], "the other export's messages were met and left alone"
        assert lander.stats["parts_imported"] == len(by_export[mine]) - 1  # all but the summary
        assert lander.stats["duplicates"] == 0, "neither landed the other's parts"
        assert lander.metadata()[names.META_LANDED_AROUND].value == other
    assert [day_rows(home, d) for d in DAYS[:2]] == [1500, 1500]

    # The sensor skips a range only when every other export met in it landed itself.
    from sensors.part_arrival import covered_ranges

    ranges = {
        e: (lander.from_seq, lander.summary_seq, set(lander.others)) for e, lander in landers.items()
    }
    assert covered_ranges(ranges, -1) == sorted((r[0], r[1]) for r in ranges.values())
    alone = {ids[0]: ranges[ids[0]]}
    assert covered_ranges(alone, -1) == [], "the other export was not landed by a copy run: launch it"
    assert covered_ranges(ranges, max(r[1] for r in ranges.values())) == [], "both end before the cursor"


def test_sensor_skips_every_range_a_long_run_of_copies_landed(home: Path, instance, monkeypatch) -> None:
    """However many copy runs went by while land runs were held back, each landed range is skipped.

    The sensor reads export materializations page by page since the last one it read
    (here two per page and one page per tick, so three copies and a plain export take
    three ticks: a first tick over a long history must not run into the tick time limit).
    """
    from sensors import part_arrival

    monkeypatch.setattr(part_arrival, "_PAGE", 2)
    monkeypatch.setattr(part_arrival, "_PAGES_PER_TICK", 1)
    defs = definitions_for(tables_doc(home), home)
    copies = [metadata(materialize_copy(defs, instance, day), names.export_op_name("events")) for day in DAYS]
    plain = export(defs, instance, "events", DAYS[0])  # a re-export of a copied day, for the sensor
    cursor = None
    for _ in range(2):  # one page per tick: two full pages, then the short one
        requests, cursor = tick(defs, instance, cursor)
        assert requests == [] and "events" not in json.loads(cursor)["seq"], "reading on, launching nothing yet"
    requests, cursor = tick(defs, instance, cursor)
    assert [r.run_key for r in requests] == [f"events:{plain[names.META_FIRST_SEQ]}-{plain[names.META_LAST_SEQ]}"]
    doc = json.loads(cursor)
    assert doc["seq"] == {"events": plain[names.META_LAST_SEQ]}
    assert "landed" not in doc, "ranges behind the seq cursor are not kept"
    assert copies[-1][names.META_LANDED_UNTIL] < plain[names.META_FIRST_SEQ]
    assert tick(defs, instance, cursor)[0] == []


def test_sensor_keeps_a_passed_range_while_a_kept_one_names_it() -> None:
    """Ranges behind the seq cursor are dropped, unless a range still ahead met that export."""
    from sensors.part_arrival import covered_ranges, still_needed

    kept = {"a": [10, 30, ["b"]], "b": [12, 20, ["a"]], "c": [0, 9, []]}
    assert still_needed(kept, 25) == {"a": [10, 30, ["b"]], "b": [12, 20, ["a"]]}
    assert still_needed(kept, 30) == {}
    landed = {e: (f, u, set(o)) for e, (f, u, o) in still_needed(kept, 25).items()}
    assert covered_ranges(landed, 25) == [(10, 30)], "a's range still counts as covered"


def test_a_lander_that_cannot_start_leaves_the_export_going(home: Path, monkeypatch) -> None:
    """No process for the landing (here: no interpreter to run): an error on the materialization, no exception."""
    import sys

    from tdtp_assets.copying import InlineLander
    from tests.e2e.support import load_doc

    doc = tables_doc(home)
    defs = definitions_for(doc, home)
    table = load_doc(doc, home).tables["events"]
    lander = InlineLander(
        table, defs.resources[names.target_resource("events")], defs.resources[names.broker_resource("events")], "x"
    )
    monkeypatch.setattr(sys, "executable", str(home / "no-python"))
    lander.start(0)
    lander.finish(1.0)
    lander.abandon()  # idempotent, in any order
    meta = lander.metadata()
    assert meta[names.META_LANDED_INLINE].value is False
    assert meta["landing_error"].startswith("the landing process could not start"), meta["landing_error"]
    assert names.META_LANDED_UNTIL not in meta


def test_sensor_launches_the_seqs_before_a_running_copy_runs_landing(home: Path, instance) -> None:
    """A plain export's parts ahead of a copy run's landing are launched while it runs; the rest wait."""
    defs = definitions_for(tables_doc(home), home)
    before = export(defs, instance, "events", DAYS[0])
    after = export(defs, instance, "events", DAYS[1])  # stands for parts published during the copy
    copy_run = create_run_for_test(
        instance,
        job_name=names.copy_job_name("events"),
        status=dg.DagsterRunStatus.STARTED,
        tags={names.TAG_LANDING: "events", names.TAG_LANDING_FROM: str(after[names.META_FIRST_SEQ])},
    )
    create_run_for_test(  # the next copy run, its worker still starting: it has published nothing
        instance,
        job_name=names.copy_job_name("events"),
        status=dg.DagsterRunStatus.STARTING,
        # a retry: its parent's tags, copied by Dagster, name seqs that are not its own
        tags={names.TAG_LANDING: "events", names.TAG_LANDING_FROM: "0", names.TAG_EXPORT: "REF-parent"},
    )
    requests, cursor = tick(defs, instance, None)
    assert [r.run_key for r in requests] == [f"events:0-{before[names.META_LAST_SEQ]}"]
    assert json.loads(cursor)["seq"] == {"events": after[names.META_FIRST_SEQ] - 1}
    assert tick(defs, instance, cursor)[0] == [], "the copy run's seqs wait while it runs"
    instance.report_run_failed(copy_run)  # it landed nothing: its seqs go to land runs
    requests, cursor = tick(defs, instance, cursor)
    assert [r.run_key for r in requests] == [f"events:{after[names.META_FIRST_SEQ]}-{after[names.META_LAST_SEQ]}"]


@pytest.mark.parametrize("b_lands", [True, False], ids=["b-lands-its-export", "b-fails-before-landing"])
def test_a_finished_copy_that_met_a_running_one_is_not_relanded(home: Path, instance, b_lands: bool) -> None:
    """Copy A ended; copy B, whose messages A stepped over, still runs (a backfill of both assets).

    A's range is skipped up to where B lands from: none of B's messages lie before it.
    When B ends having landed its export, nothing is launched for it; when it fails
    before, its seqs go to land runs.  The copies' materializations are recorded as a
    copy run writes them; the stream holds a plain export first, then A's and B's parts.
    """
    defs = definitions_for(tables_doc(home), home)
    plain, a, b = (export(defs, instance, "events", day) for day in DAYS)
    a_id, b_id = a[names.META_EXPORT_ID], b[names.META_EXPORT_ID]

    def landed_by_copy(meta: dict, day: str, around: str) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=names.export_key("events"),
                partition=day,
                metadata={
                    names.META_EXPORT_ID: meta[names.META_EXPORT_ID],
                    names.META_LANDED_INLINE: True,
                    names.META_LANDED_FROM: meta[names.META_FIRST_SEQ],
                    names.META_LANDED_UNTIL: meta[names.META_LAST_SEQ],
                    names.META_LANDED_AROUND: around,
                },
            )
        )

    landed_by_copy(a, DAYS[1], around=b_id)
    copy_b = create_run_for_test(
        instance,
        job_name=names.copy_job_name("events"),
        status=dg.DagsterRunStatus.STARTED,
        tags={
            names.TAG_LANDING: "events",
            names.TAG_LANDING_FROM: str(b[names.META_FIRST_SEQ]),
            names.TAG_EXPORT: b_id,
        },
    )
    requests, cursor = tick(defs, instance, None)
    assert [r.run_key for r in requests] == [f"events:0-{plain[names.META_LAST_SEQ]}"], "A's parts are not re-landed"
    assert json.loads(cursor)["seq"] == {"events": b[names.META_FIRST_SEQ] - 1}
    if b_lands:
        landed_by_copy(b, DAYS[2], around=a_id)
    instance.report_run_failed(copy_b)  # over; its export step's materialization (if any) says what it landed
    requests, cursor = tick(defs, instance, cursor)
    expected = [] if b_lands else [f"events:{b[names.META_FIRST_SEQ]}-{b[names.META_LAST_SEQ]}"]
    assert [r.run_key for r in requests] == expected
    assert json.loads(cursor)["seq"] == {"events": b[names.META_LAST_SEQ]}


def test_the_lander_process_says_what_its_job_lacks() -> None:
    """Run by hand or with a broken job, the lander names what is missing, as JSON, and exits 1."""
    import os
    import subprocess
    import sys

    from tdtp.importer.one_export import JOB_ENV

    def run(env: dict[str, str]) -> tuple[int, dict]:
        proc = subprocess.run(
            [sys.executable, "-m", "tdtp.importer.one_export"], env=env, capture_output=True, text=True, timeout=60
        )
        return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])

    env = {k: v for k, v in os.environ.items() if k != JOB_ENV}
    assert run(env) == (1, {"error": f"ValueError: {JOB_ENV} is not set: it holds the landing's job as JSON"})
    code, out = run({**env, JOB_ENV: json.dumps({"export_id": "x", "table": "t"})})
    assert (code, out) == (1, {"error": f"ValueError: {JOB_ENV} lacks target_url, broker_url, mode, workers, from_seq"})
