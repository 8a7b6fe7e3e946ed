"""What Dagster costs: the sensor chain against the copy job, and both against the CLI.

Two measurements on real ``dagster-webserver`` + ``dagster-daemon`` processes (a
temporary DAGSTER_HOME, runs launched through GraphQL as the UI's Launchpad does):

- **Three demo partitions, alternating rounds** (``--rounds N``, default 3 of each):
  the demo tables file as ``dagster dev`` loads it (sensor every 5 s), on one
  instance.  A *sensor chain* round launches ``tdtp_export_orders`` for three days
  (the part-arrival sensor launches land runs that follow the stream, publish and
  check); a *copy* round launches ``tdtp_copy_orders`` for the same days.  Each round
  is timed from the first launch to the last of the 12 green checks (4 per partition);
  rounds alternate (sensor, copy, sensor, copy, ...), each after the previous one's
  runs are over.  Printed: every round, the medians and the median ratio.
- **1M rows in one partition** (``--skip-1m`` leaves it out): the demo ``orders``
  table whole (one export, 15 parts) from SQLite through the spool into the
  ``--target``, four ways:

  - *CLI sequential*: ``tdtp export`` then ``tdtp import`` (two processes).
  - *CLI pipelined*: ``tdtp import --from-seq N --follow`` started first, then
    ``tdtp export``; timed until the export is published in the target.
  - *Dagster sensor chain*: the export job launched, the sensor's land run(s) landing
    while it exports; timed from the launch to the fourth green check.
  - *Dagster copy job*: ``tdtp_copy_orders``, one run; timed the same way.

  Figures from Dagster's run records and event log: end to end, sensor-to-run
  latency (the export's first part -> the first land run created), runs per chain,
  per-run overhead (a run's wall time minus its steps' own time).

Usage::

    .venv/bin/python bench/dagster.py                      # 3+3 rounds of 3 partitions, then 1M rows into SQLite
    .venv/bin/python bench/dagster.py --rounds 5 --skip-1m
    .venv/bin/python bench/dagster.py --skip-rounds --target postgresql://postgres@127.0.0.1:5432/postgres

Writes a JSON report to bench/out/dagster.json as well as a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# This file is named dagster.py: drop its own folder from the path so that
# `import dagster` finds the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
import yaml  # noqa: E402
from dagster import DagsterEventType  # noqa: E402

from resources.demo import ORDERS_ROWS, ensure_demo_db  # noqa: E402
from tdtp_assets import names  # noqa: E402
from tests.e2e.dagster_procs import (  # noqa: E402
    INSTANCE_YAML,
    dagster_services,
    describe_runs,
    launch_job,
    wait_for_location,
    wait_until,
)


def cli(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "tdtp.cli", *args, "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"tdtp {args[0]} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


CREATED_TABLES: list[tuple[str, str]] = []


def target_url(template: str, work: Path, tag: str) -> tuple[str, str]:
    """A fresh target (URL, table) per chain so neither sees the other's rows."""
    if template.startswith("sqlite"):
        return f"sqlite:///{work}/target_{tag}.db", "orders"
    table = f"bench_{tag}_{uuid.uuid4().hex[:6]}"
    CREATED_TABLES.append((template, table))
    return template, table


def drop_created_tables() -> None:
    """PostgreSQL targets: drop the tables this bench created (bookkeeping rows stay, keyed by export id)."""
    import psycopg

    for url, table in CREATED_TABLES:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


def run_cli(demo_db: Path, work: Path, target_template: str, workers: int) -> dict[str, Any]:
    url, table = target_url(target_template, work, "cli")
    spool = f"spool:///{work}/cli_spool/orders"
    started = time.perf_counter()
    exported = cli("export", "--source", f"sqlite:///{demo_db}", "--table", "orders", "--to", spool)
    middle = time.perf_counter()
    imported = cli("import", "--from", spool, "--target", url, "--table", table, "--workers", str(workers))
    ended = time.perf_counter()
    assert imported["total_rows"] == ORDERS_ROWS, imported
    return {
        "end_to_end_seconds": round(ended - started, 2),
        "export_process_seconds": round(middle - started, 2),
        "import_process_seconds": round(ended - middle, 2),
        "export_seconds": exported.get("seconds"),
        "import_seconds": imported.get("seconds"),
        "parts": exported.get("parts"),
    }


def run_cli_pipelined(demo_db: Path, work: Path, target_template: str, workers: int) -> dict[str, Any]:
    """``tdtp import --follow`` alongside ``tdtp export``: what a shell user gets without Dagster."""
    from tdtp.importer import export_status

    url, table = target_url(target_template, work, "clipipe")
    spool = f"spool:///{work}/clipipe_spool/orders"
    started = time.perf_counter()
    importer = subprocess.Popen(
        [sys.executable, "-m", "tdtp.cli", "import", "--from", spool, "--target", url, "--table", table,
         "--workers", str(workers), "--from-seq", "0", "--follow", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        exported = cli("export", "--source", f"sqlite:///{demo_db}", "--table", "orders", "--to", spool)
        export_done = time.perf_counter()
        deadline = time.monotonic() + 600
        while not _published(export_status, url, exported["export_id"]):
            if importer.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"pipelined import did not publish: {importer.communicate()[1][-2000:]}")
            time.sleep(0.02)
        ended = time.perf_counter()
    finally:
        importer.send_signal(signal.SIGINT)  # --follow imports "until interrupted"
        try:
            importer.wait(30)
        except subprocess.TimeoutExpired:
            importer.kill()
            importer.wait()
    status = export_status(url, exported["export_id"])
    assert status.published_rows == ORDERS_ROWS, status.describe()
    return {
        "end_to_end_seconds": round(ended - started, 2),
        "export_process_seconds": round(export_done - started, 2),
        "publish_after_export_seconds": round(ended - export_done, 2),
        "parts": exported.get("parts"),
    }


def _published(export_status: Any, url: str, export_id: str) -> bool:
    try:
        return bool(export_status(url, export_id).finalized)
    except Exception:  # the target's bookkeeping may not exist yet
        return False


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    """Sum of the run's step durations (STEP_START -> STEP_SUCCESS/FAILURE)."""
    starts: dict[str, float] = {}
    total = 0.0
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            total += entry.timestamp - starts.pop(event.step_key, entry.timestamp)
    return total


CHECKS = ("rows_match_summary", "parts_complete", "no_dead_letters", "checksum_matches")
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def green_at(instance: dg.DagsterInstance, table: str, partitions: list[str | None], since: float) -> float | None:
    """When the last of the partitions' four checks passed (after ``since``); None until all have."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # no fetch_* for check evaluations in 1.13
        records = instance.get_event_records(
            dg.EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_timestamp=since),
            limit=1000,
        )
    passed: dict[tuple[str | None, str], float] = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.passed and evaluation.asset_key == names.import_key(table):
            key = (evaluation.partition, evaluation.check_name)
            passed[key] = max(passed.get(key, 0.0), record.event_log_entry.timestamp)
    wanted = [(p, c) for p in partitions for c in CHECKS]
    if not all(k in passed for k in wanted):
        return None
    return max(passed[k] for k in wanted)


def wait_green(services: Any, instance: dg.DagsterInstance, table: str, partitions: list[str | None], since: float) -> float:
    """Seconds from ``since`` to the last green check of ``partitions``; fails on a failed run."""
    state: dict[str, float] = {}

    def done() -> bool:
        failed = instance.get_runs(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=_utc(since))
        )
        if failed:
            raise SystemExit(f"a run failed:\n{describe_runs(instance)}\n{services.log_tail()}")
        at = green_at(instance, table, partitions, since)
        if at is not None:
            state["at"] = at
        return at is not None

    wait_until(done, 600, f"green checks of {partitions}", lambda: describe_runs(instance) + services.log_tail())
    return state["at"] - since


def _utc(stamp: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(stamp, tz=dt.UTC)


def wait_quiet(instance: dg.DagsterInstance, seconds: float = 600) -> None:
    """Until no run is queued or running: a round starts on an idle instance."""
    deadline = time.monotonic() + seconds
    while instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT), limit=1):
        if time.monotonic() > deadline:
            raise SystemExit(f"runs still in flight after {seconds:.0f} s:\n{describe_runs(instance)}")
        time.sleep(0.5)


def runs_since(instance: dg.DagsterInstance, since: float) -> dict[str, int]:
    """Runs created since ``since``, per job."""
    out: dict[str, int] = {}
    for run in instance.get_runs(filters=dg.RunsFilter(created_after=_utc(since))):
        out[run.job_name] = out.get(run.job_name, 0) + 1
    return out


def run_partition_rounds(work: Path, rounds: int, days: list[str]) -> list[dict[str, Any]]:
    """Alternating rounds on one instance: three demo partitions as export runs (sensor chain), then as copy runs."""
    env = {"TDTP_HOME": str(work / "demo_home"), "TDTP_TABLES": ""}
    out = []
    with dagster_services(work / "dagster_home_rounds", env, instance_yaml=INSTANCE_YAML) as services:
        wait_for_location(services)
        instance = services.instance()
        # The demo source is generated on first use: once before timing anything.
        ensure_demo_db(work / "demo_home" / "demo.db")
        for n in range(rounds):
            for chain, job in (("sensor", names.export_job_name("orders")), ("copy", names.copy_job_name("orders"))):
                wait_quiet(instance)
                time.sleep(1.0)
                launched = time.time()
                for day in days:
                    launch_job(services, job, partition=day)
                seconds = wait_green(services, instance, "orders", list(days), launched)
                wait_quiet(instance)
                runs = runs_since(instance, launched)
                out.append({"round": n + 1, "chain": chain, "seconds": round(seconds, 2), "runs": runs})
                print(f"  round {n + 1} {chain:6}: {seconds:6.2f} s  runs {runs}", flush=True)
        instance.dispose()
    return out


def run_dagster(demo_db: Path, work: Path, target_template: str, workers: int, fanout: int) -> dict[str, Any]:
    """1M rows in one export: the sensor chain, then the copy job, on the same services."""
    url, table = target_url(target_template, work, f"dagster_f{fanout}")
    tables = {
        "defaults": {"workers": workers, "fanout": fanout},
        "sensor": {"interval_seconds": 5},
        "tables": {
            "orders": {
                "source": f"sqlite:///{demo_db}",
                "table": "orders",
                "broker": f"spool:///{work}/dagster_spool_f{fanout}/orders",
                "target": {"url": url, "table": table},
            }
        },
    }
    tables_file = work / f"tables_f{fanout}.yaml"
    tables_file.write_text(yaml.safe_dump(tables))
    env = {"TDTP_TABLES": str(tables_file), "TDTP_HOME": str(work / "data")}
    with dagster_services(
        work / f"dagster_home_f{fanout}", env, instance_yaml=INSTANCE_YAML
    ) as services:
        wait_for_location(services)
        instance = services.instance()
        launched = time.time()
        launch_job(services, names.export_job_name("orders"))
        seconds = wait_green(services, instance, "orders", [None], launched)
        wait_quiet(instance)
        records = instance.get_run_records()
        by_job: dict[str, list] = {}
        for record in records:
            by_job.setdefault(record.dagster_run.job_name, []).append(record)
        export = by_job[names.export_job_name("orders")][0]
        lands = sorted(
            by_job.get(names.import_parts_job_name("orders"), []),
            key=lambda r: r.create_timestamp.timestamp(),
        )
        mat = (
            instance.fetch_materializations(names.export_key("orders"), limit=1)
            .records[0]
            .asset_materialization
        )
        export_meta = {k: v.value for k, v in mat.metadata.items()}
        export_steps_started = _first_step_start(instance, export.dagster_run.run_id)
        first_part_at = export_steps_started + float(export_meta["first_part_seconds"])
        overhead: dict[str, list[float]] = {}
        for job, recs in by_job.items():
            for rec in recs:
                if rec.end_time is None:
                    continue
                wall = rec.end_time - rec.create_timestamp.timestamp()
                overhead.setdefault(job, []).append(wall - step_seconds(instance, rec.dagster_run.run_id))
        report = {
            "fanout": fanout,
            "end_to_end_seconds": round(seconds, 2),
            "export_run_seconds": round(export.end_time - export.create_timestamp.timestamp(), 2),
            "export_seconds": export_meta.get("seconds"),
            "parts": export_meta.get("parts"),
            "land_runs": len(lands),
            "publish_runs": len(by_job.get(names.publish_job_name("orders"), [])),
            "sensor_to_first_land_run_seconds": round(lands[0].create_timestamp.timestamp() - first_part_at, 2),
            "per_run_overhead_seconds": {job: round(statistics.median(v), 2) for job, v in overhead.items()},
        }
        report["copy"] = run_copy_chain(services, instance)
        instance.dispose()
        return report


def run_copy_chain(services: Any, instance: dg.DagsterInstance) -> dict[str, Any]:
    """The one-run copy on the same services, after the sensor chain: launch -> the fourth green check."""
    time.sleep(1.0)
    lands_before = len(
        instance.get_runs(filters=dg.RunsFilter(job_name=names.import_parts_job_name("orders")))
    )
    launched = time.time()
    run_id = launch_job(services, names.copy_job_name("orders"))
    seconds = wait_green(services, instance, "orders", [None], launched)
    wait_quiet(instance)
    record = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run_id]))[0]
    time.sleep(6)  # a sensor tick or two after the run: it must launch nothing for these parts
    lands_after = len(
        instance.get_runs(filters=dg.RunsFilter(job_name=names.import_parts_job_name("orders")))
    )
    mat = (
        instance.fetch_materializations(names.import_key("orders"), limit=1).records[0].asset_materialization
    )
    wall = record.end_time - record.create_timestamp.timestamp()
    return {
        "end_to_end_seconds": round(seconds, 2),
        "run_overhead_seconds": round(wall - step_seconds(instance, run_id), 2),
        "landed_in": mat.metadata["landed_in"].value,
        "rows": mat.metadata["dagster/row_count"].value,
        "land_runs_launched_meanwhile": lands_after - lands_before,
        "timeline": run_timeline(instance, run_id, launched),
    }


def run_timeline(instance: dg.DagsterInstance, run_id: str, since: float) -> dict[str, float]:
    """Seconds from the launch to the first event of each kind (per step): where a run's time goes."""
    marks: dict[str, float] = {}
    record = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run_id]))[0]
    marks["run created"] = round(record.create_timestamp.timestamp() - since, 2)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        name = event.event_type_value + (f" {event.step_key}" if event.step_key else "")
        marks.setdefault(name, round(entry.timestamp - since, 2))
        if event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.RUN_SUCCESS):
            marks[name] = round(entry.timestamp - since, 2)
    return marks


def _first_step_start(instance: dg.DagsterInstance, run_id: str) -> float:
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START):
        return entry.timestamp
    raise RuntimeError(f"run {run_id} has no step")


def lander_start_seconds(rounds: int = 5) -> float:
    """Median seconds for the copy run's lander process to start and import the engine.

    ``python -m tdtp.importer.one_export`` with an empty job: it imports everything a
    landing needs, then reports the missing job and exits.
    """
    env = {**os.environ, "TDTP_LAND_JOB": "{}", "PYTHONPATH": str(ROOT)}
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tdtp.importer.one_export"], env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each chain over three demo partitions")
    parser.add_argument("--days", default="2026-01-05,2026-01-06,2026-01-07", help="the demo partitions")
    parser.add_argument("--skip-rounds", action="store_true", help="leave out the three-partition rounds")
    parser.add_argument("--skip-1m", action="store_true", help="leave out the 1M-row comparison")
    parser.add_argument("--fanout", default="1", help="comma-separated fanout values for the 1M sensor chain")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the 1M comparison")
    parser.add_argument(
        "--target", default="sqlite", help="1M comparison: 'sqlite' (a fresh file per chain) or a PostgreSQL URL"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "dagster.json"))
    args = parser.parse_args()
    med = statistics.median
    results: dict[str, Any] = {"load_before": os.getloadavg()}

    with tempfile.TemporaryDirectory(prefix="tdtp-bench-dagster-") as tmp:
        work = Path(tmp)
        if not args.skip_rounds:
            days = args.days.split(",")
            print(f"{len(days)} demo partitions of orders, sensor chain vs copy runs, alternating rounds:")
            rounds = run_partition_rounds(work, args.rounds, days)
            results["rounds"] = rounds
            sensor = [r["seconds"] for r in rounds if r["chain"] == "sensor"]
            copy = [r["seconds"] for r in rounds if r["chain"] == "copy"]
            ratios = [a / b for a, b in zip(sensor, copy, strict=True)]
            results["rounds_median"] = {
                "sensor_chain": med(sensor), "copy": med(copy), "ratio": round(med(ratios), 2),
            }  # fmt: skip
            print("| round | sensor chain | copy runs | ratio |\n|---|---|---|---|")
            for n, (a, b) in enumerate(zip(sensor, copy, strict=True), 1):
                print(f"| {n} | {a:.2f} s | {b:.2f} s | {a / b:.2f}x |")
            print(f"| median | {med(sensor):.2f} s | {med(copy):.2f} s | {med(ratios):.2f}x |")
            print(f"ratio of the medians: {med(sensor) / med(copy):.2f}x")
            results["rounds_median"]["ratio_of_medians"] = round(med(sensor) / med(copy), 2)
        if not args.skip_1m:
            run_one_million(args, work, results)
    results["load_after"] = os.getloadavg()
    print(f"load average before / after: {results['load_before']} / {results['load_after']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"report: {args.out}")


def run_one_million(args: argparse.Namespace, work: Path, results: dict[str, Any]) -> None:
    """1M rows in one export: the CLI chains, the sensor chain and the copy job."""
    med = statistics.median
    demo_db = work / "demo.db"
    ensure_demo_db(demo_db)
    results.update({"rows": ORDERS_ROWS, "workers": args.workers, "cli": [], "cli_pipelined": [], "dagster": []})
    for i in range(args.repeat):
        round_dir = work / f"r{i}"
        round_dir.mkdir()
        results["cli"].append(run_cli(demo_db, round_dir, args.target, args.workers))
        results["cli_pipelined"].append(run_cli_pipelined(demo_db, round_dir, args.target, args.workers))
        for fanout in [int(x) for x in args.fanout.split(",")]:
            results["dagster"].append(run_dagster(demo_db, round_dir, args.target, args.workers, fanout))
    drop_created_tables()
    cli_chains = {
        "CLI sequential": med(r["end_to_end_seconds"] for r in results["cli"]),
        "CLI pipelined": med(r["end_to_end_seconds"] for r in results["cli_pipelined"]),
    }
    print(
        f"1M rows, demo orders, {args.workers} workers, target {args.target}, {args.repeat} round(s), medians"
    )
    split = (
        f"export {med(r['export_process_seconds'] for r in results['cli']):.2f} s, "
        f"import {med(r['import_process_seconds'] for r in results['cli']):.2f} s"
    )
    print(f"CLI sequential (export, then import):        {cli_chains['CLI sequential']:6.2f} s ({split})")
    print(f"CLI pipelined (import --follow beside export): {cli_chains['CLI pipelined']:6.2f} s")
    results["lander_start_seconds"] = round(lander_start_seconds(), 3)
    print(f"copy run's lander process: {results['lander_start_seconds']:.2f} s to start (median of 5)")

    def overheads(label: str, seconds: float) -> str:
        parts = []
        for cli_label, cli_seconds in cli_chains.items():
            pct = (seconds - cli_seconds) / cli_seconds * 100
            results[f"overhead_percent {label} vs {cli_label}"] = round(pct, 1)
            parts.append(f"{pct:+.0f}% vs {cli_label}")
        return ", ".join(parts)

    for fanout in sorted({r["fanout"] for r in results["dagster"]}):
        runs = [r for r in results["dagster"] if r["fanout"] == fanout]
        chain = med(r["end_to_end_seconds"] for r in runs)
        first = runs[0]
        label = f"Dagster sensor chain (fanout {fanout})"
        print(f"{label}: {chain:6.2f} s  overhead {overheads(label, chain)}")
        print(
            f"  sensor: first part -> first land run {first['sensor_to_first_land_run_seconds']} s; "
            f"{first['land_runs']} land run(s), {first['publish_runs']} publish run(s) for {first['parts']} parts"
        )
        print(f"  per-run overhead (median s): {first['per_run_overhead_seconds']}")
        copies = [r["copy"] for r in runs]
        copy = med(c["end_to_end_seconds"] for c in copies)
        label = "Dagster copy chain (one run)"
        print(f"{label}: {copy:6.2f} s  overhead {overheads(label, copy)}")
        print(f"sensor chain / copy job: {chain / copy:.2f}x")
        results[f"ratio_1m_fanout_{fanout}"] = round(chain / copy, 2)
        print(
            f"  copy run overhead (median s): {med(c['run_overhead_seconds'] for c in copies):.2f}; "
            f"landed in: {copies[0]['landed_in']}; land runs launched meanwhile: "
            f"{max(c['land_runs_launched_meanwhile'] for c in copies)}"
        )
        print("  copy run timeline (s after launch, last round): " + ", ".join(
            f"{k} {v}" for k, v in copies[-1].get("timeline", {}).items()))  # fmt: skip


if __name__ == "__main__":
    main()
