"""What Dagster costs on top of the engine: 1M rows through Dagster vs. the same chain through the CLI.

Both chains move the demo ``orders`` table (1M rows, generated on first use) from
SQLite through the file spool into the same kind of target, whole (one export):

- **CLI sequential**: ``tdtp export`` to the spool, then ``tdtp import`` from it (two
  processes, one after the other), timed from the first command's start to the
  second's end.
- **CLI pipelined**: ``tdtp import --from-seq N --follow`` started first, then
  ``tdtp export``; timed from the import's start until the export is published in
  the target (polled with the engine's ``export_status``), then the import is stopped.
- **Dagster sensor chain**: real ``dagster-webserver`` and ``dagster-daemon`` on a
  temporary DAGSTER_HOME; the export job is launched through GraphQL; the
  part-arrival sensor launches import-parts runs while the export is still
  publishing, then the import asset's run (publish + four checks).  Timed from the
  launch to the end of that run.
- **Dagster copy chain**: on the same services, the copy job (``tdtp_copy_orders``:
  export step landing its parts as it goes, import step, four checks, one run) is
  launched through GraphQL.  Timed from the launch to the end of that run.

Figures, from Dagster's run records and event log:

- end to end, every chain, and each Dagster chain's overhead in percent of each CLI chain;
- sensor-to-run latency: export's first part published -> first import-parts run
  created, and export finished -> publish run created;
- per-run overhead: a run's wall time (created -> ended) minus its steps' own time
  (queue wait, process start, code loading, event writes), per job.

Usage::

    .venv/bin/python bench/dagster.py                      # fanout 1 (default config)
    .venv/bin/python bench/dagster.py --fanout 1,2 --repeat 2
    .venv/bin/python bench/dagster.py --target postgresql://postgres@127.0.0.1:5432/postgres

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


def run_dagster(demo_db: Path, work: Path, target_template: str, workers: int, fanout: int) -> dict[str, Any]:
    url, table = target_url(target_template, work, f"dagster_f{fanout}")
    tables = {
        "defaults": {"workers": workers, "fanout": fanout},
        "sensor": {"interval_seconds": 1},
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

        def published() -> bool:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name=names.publish_job_name("orders")))
            return any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)

        wait_until(published, 600, "the publish run", lambda: describe_runs(instance) + services.log_tail())
        records = instance.get_run_records()
        by_job: dict[str, list] = {}
        for record in records:
            by_job.setdefault(record.dagster_run.job_name, []).append(record)
        export = by_job[names.export_job_name("orders")][0]
        lands = sorted(
            by_job.get(names.import_parts_job_name("orders"), []),
            key=lambda r: r.create_timestamp.timestamp(),
        )
        publish = [
            r
            for r in by_job[names.publish_job_name("orders")]
            if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        ][0]
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
        checks_passed = all(
            e.dagster_event.event_specific_data.passed
            for e in instance.all_logs(
                publish.dagster_run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
            )
        )
        report = {
            "fanout": fanout,
            "end_to_end_seconds": round(publish.end_time - launched, 2),
            "export_run_seconds": round(export.end_time - export.create_timestamp.timestamp(), 2),
            "export_seconds": export_meta.get("seconds"),
            "parts": export_meta.get("parts"),
            "land_runs": len(lands),
            "sensor_to_first_land_run_seconds": round(
                lands[0].create_timestamp.timestamp() - first_part_at, 2
            ),
            "export_end_to_publish_run_seconds": round(
                publish.create_timestamp.timestamp() - export.end_time, 2
            ),
            "per_run_overhead_seconds": {job: round(statistics.median(v), 2) for job, v in overhead.items()},
            "checks_passed": checks_passed,
        }
        report["copy"] = run_copy_chain(services, instance)
        instance.dispose()
        return report


def run_copy_chain(services: Any, instance: dg.DagsterInstance) -> dict[str, Any]:
    """The one-run copy on the same services, after the sensor chain: launch -> run end."""
    lands_before = len(
        instance.get_runs(filters=dg.RunsFilter(job_name=names.import_parts_job_name("orders")))
    )
    launched = time.time()
    run_id = launch_job(services, names.copy_job_name("orders"))

    def done() -> bool:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status == dg.DagsterRunStatus.FAILURE:
            raise SystemExit(f"copy run failed:\n{describe_runs(instance)}\n{services.log_tail()}")
        return run is not None and run.status == dg.DagsterRunStatus.SUCCESS

    wait_until(done, 600, "the copy run", lambda: describe_runs(instance) + services.log_tail())
    record = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run_id]))[0]
    time.sleep(6)  # a sensor tick or two after the run: it must launch nothing for these parts
    lands_after = len(
        instance.get_runs(filters=dg.RunsFilter(job_name=names.import_parts_job_name("orders")))
    )
    mat = (
        instance.fetch_materializations(names.import_key("orders"), limit=1).records[0].asset_materialization
    )
    checks = [
        e.dagster_event.event_specific_data.passed
        for e in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    wall = record.end_time - record.create_timestamp.timestamp()
    return {
        "end_to_end_seconds": round(record.end_time - launched, 2),
        "run_overhead_seconds": round(wall - step_seconds(instance, run_id), 2),
        "landed_in": mat.metadata["landed_in"].value,
        "rows": mat.metadata["dagster/row_count"].value,
        "land_runs_launched_meanwhile": lands_after - lands_before,
        "checks_passed": len(checks) == 4 and all(checks),
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
    parser.add_argument("--fanout", default="1", help="comma-separated fanout values for the Dagster chain")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--target", default="sqlite", help="'sqlite' (a fresh file per chain) or a PostgreSQL URL"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "dagster.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tdtp-bench-dagster-") as tmp:
        work = Path(tmp)
        demo_db = work / "demo.db"
        ensure_demo_db(demo_db)
        results: dict[str, Any] = {
            "rows": ORDERS_ROWS,
            "workers": args.workers,
            "cli": [],
            "cli_pipelined": [],
            "dagster": [],
        }
        for i in range(args.repeat):
            round_dir = work / f"r{i}"
            round_dir.mkdir()
            results["cli"].append(run_cli(demo_db, round_dir, args.target, args.workers))
            results["cli_pipelined"].append(run_cli_pipelined(demo_db, round_dir, args.target, args.workers))
            for fanout in [int(x) for x in args.fanout.split(",")]:
                results["dagster"].append(run_dagster(demo_db, round_dir, args.target, args.workers, fanout))
        drop_created_tables()
    med = statistics.median
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
        e2e = med(r["end_to_end_seconds"] for r in runs)
        first = runs[0]
        label = f"Dagster sensor chain (fanout {fanout})"
        print(f"{label}: {e2e:6.2f} s  overhead {overheads(label, e2e)}")
        print(
            f"  sensor: first part -> first import run {first['sensor_to_first_land_run_seconds']} s; "
            f"export end -> publish run {first['export_end_to_publish_run_seconds']} s; "
            f"{first['land_runs']} import runs for {first['parts']} parts; checks passed: {first['checks_passed']}"
        )
        print(f"  per-run overhead (median s): {first['per_run_overhead_seconds']}")
        copies = [r["copy"] for r in runs]
        e2e = med(c["end_to_end_seconds"] for c in copies)
        label = "Dagster copy chain (one run)"
        print(f"{label}: {e2e:6.2f} s  overhead {overheads(label, e2e)}")
        print(
            f"  copy run overhead (median s): {med(c['run_overhead_seconds'] for c in copies):.2f}; "
            f"landed in: {copies[0]['landed_in']}; land runs launched meanwhile: "
            f"{max(c['land_runs_launched_meanwhile'] for c in copies)}; "
            f"checks passed: {all(c['checks_passed'] for c in copies)}"
        )
        print("  copy run timeline (s after launch, last round): " + ", ".join(
            f"{k} {v}" for k, v in copies[-1].get("timeline", {}).items()))  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
