"""Parallel import into PostgreSQL, measured beside ``psql \\copy`` and a ``COPY TO | COPY FROM`` pipe.

Usage: ``.venv/bin/python bench/import.py [--rows 1000000] [--repeat 3] [--pg URL] [--rabbitmq URL] [--skip-rabbitmq]
[--sections 1234]``

On one table of ``--rows`` rows (the mixed-type table of ``bench/parts.py``) it prints:

1. ``psql \\copy FROM`` of the table's COPY text into an empty copy of the table (primary key
   included): the anchor; then ``tdtp`` importing the same rows from part files, ledger and
   atomic publish included, each into such a table: the copy strategy (``--publish copy``:
   parts staged, one COPY publishes) with 1, 2 and 4 worker processes, 2 threads, and
   publishing at the end; then the swap strategy (``--publish auto``: the workers load a
   table in parallel, a rename publishes it) with 1, 2 and 4 workers, and with the primary
   key built before instead of after the load;
2. export alone (to a spool) beside export and import running together (the importer
   follows the spool while the exporter publishes), and when the import was published
   (swap and copy), with the CPU seconds the machine spent: export and import share
   the cores with the database server, so CPU used / cores is a floor no schedule beats;
3. end to end PostgreSQL -> RabbitMQ stream -> PostgreSQL beside ``psql COPY TO | psql COPY FROM``
   (swap and copy);
4. Sling and dlt, when the ``bench`` extra is installed (skipped otherwise).

Every measurement runs in a fresh process (peak RSS is that run's own).  Targets from the
importer issue are printed next to the figures.  The bench database (default
``tdtp_bench``) is created if missing; its ``tdtp`` bookkeeping schema is dropped between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_tables import ensure_db, ensure_mixed_table  # noqa: E402  (bench/ is on sys.path)

DEFAULT_ADMIN = os.environ.get("TDTP_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_RABBITMQ = os.environ.get("TDTP_BENCH_RABBITMQ", "rabbitmq://guest:guest@127.0.0.1:5672")
BENCH_DB = "tdtp_bench"


def source_table(rows: int) -> str:
    return f"bench_import_src_{rows}"


def ensure_source(pg: str, rows: int) -> None:
    """The bench/parts.py table: ints, numeric, md5 text, timestamptz, bool, float8, nullable text."""
    ensure_mixed_table(pg, source_table(rows), rows)


def fresh_target(pg: str, rows: int, name: str) -> None:
    """An empty table shaped like the source (primary key included), and no bookkeeping left over."""
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (LIKE {source_table(rows)} INCLUDING ALL)")
        conn.execute("DROP SCHEMA IF EXISTS tdtp CASCADE")
        conn.execute("CHECKPOINT")  # every run starts without the previous run's dirty pages


def same_rows(pg: str, a: str, b: str) -> bool:
    with psycopg.connect(pg) as conn:
        q = "SELECT count(*) FROM (SELECT * FROM {} EXCEPT ALL SELECT * FROM {}) d"
        return (
            conn.execute(q.format(a, b)).fetchone()[0] == 0
            and conn.execute(q.format(b, a)).fetchone()[0] == 0
        )


def psql(pg: str, command: str, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", pg, "-c", command], check=True, **kw)


# ---------------------------------------------------------------------------- children


def child_import(args: argparse.Namespace) -> dict[str, object]:
    from tdtp.importer import ImportOptions, ParallelImporter

    options = ImportOptions(
        workers=args.workers,
        executor=args.executor,
        table=args.table,
        live_publish=not args.publish_at_end,
        publish=args.publish,
        swap_indexes=args.swap_indexes,
    )
    with ParallelImporter(args.pg, options) as imp:
        if args.broker:
            from tdtp.brokers import open_broker

            print("ready", flush=True)
            with open_broker(args.broker) as log:
                stats = imp.import_log(log, follow=True, timeout=args.idle)
        else:
            stats = imp.import_files([args.dir])
    return stats.as_dict()


def child_export(args: argparse.Namespace) -> dict[str, object]:
    from tdtp.exporter import export_to_dir, export_to_log
    from tdtp.metrics import peak_rss_mb
    from tdtp.sources import open_source

    started = time.time()
    with open_source(args.pg, table=source_table(args.rows)) as source:
        if args.broker:
            from tdtp.brokers import open_broker

            with open_broker(args.broker) as log:
                stats = export_to_log(source, log)
        else:
            stats = export_to_dir(source, args.dir)
    return {
        "started": started,
        "ended": time.time(),
        "rows": stats.rows,
        "parts": stats.parts,
        "bytes": stats.bytes,
        "export_id": stats.export_id,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_dlt(args: argparse.Namespace) -> dict[str, object]:
    """dlt's PostgreSQL -> PostgreSQL load of the table (its pyarrow backend, replace disposition)."""
    import dlt
    from dlt.sources.sql_database import sql_table

    parts = urlsplit(args.pg)
    if parts.password is None:  # dlt insists on a password even where the server trusts
        netloc = f"{parts.username or ''}:unused@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        dest = urlunsplit(parts._replace(netloc=netloc))
    else:
        dest = args.pg
    with tempfile.TemporaryDirectory() as pipelines:
        started = time.perf_counter()
        pipeline = dlt.pipeline(
            pipeline_name="tdtp_bench",
            destination=dlt.destinations.postgres(credentials=dest),
            dataset_name="bench_dlt",
            pipelines_dir=pipelines,
        )
        pipeline.run(sql_table(credentials=args.pg, table=source_table(args.rows), backend="pyarrow"),
                     write_disposition="replace")  # fmt: skip
        seconds = time.perf_counter() - started
    with psycopg.connect(args.pg, autocommit=True) as conn:
        loaded = conn.execute(f"SELECT count(*) FROM bench_dlt.{source_table(args.rows)}").fetchone()[0]
        conn.execute("DROP SCHEMA bench_dlt CASCADE")
    if loaded != args.rows:
        raise SystemExit(f"dlt loaded {loaded} rows, expected {args.rows}")
    return {"seconds": seconds}


def run_child(*argv: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *argv], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------ measurements


def bench_psql_copy(pg: str, rows: int, copy_file: Path) -> dict[str, float]:
    """Seconds and machine CPU seconds of one ``psql \\copy FROM`` of the rows: the anchor, and
    the least CPU any PostgreSQL text import spends."""
    fresh_target(pg, rows, "bench_import_psql")
    cpu_before = busy_cpu_seconds()
    started = time.perf_counter()
    psql(pg, f"\\copy bench_import_psql FROM '{copy_file}'")
    seconds = time.perf_counter() - started
    cpu = busy_cpu_seconds() - cpu_before
    assert same_rows(pg, source_table(rows), "bench_import_psql")
    return {"seconds": seconds, "cpu_seconds": cpu}


def median_of(repeat: int, run: Any) -> Any:
    """Run ``run()`` ``repeat`` times; keep the result with the median time (the machine is shared)."""
    results = [run() for _ in range(max(1, repeat))]
    return sorted(results, key=lambda r: r if isinstance(r, float) else float(r["seconds"]))[
        len(results) // 2
    ]


def bench_import_files(
    pg: str,
    rows: int,
    parts_dir: Path,
    workers: int,
    executor: str,
    live: bool = True,
    publish: str = "copy",
    swap_indexes: str = "after",
) -> dict[str, object]:
    fresh_target(pg, rows, "bench_import_dst")
    started = time.perf_counter()
    stats = run_child(
        "import", "--pg", pg, "--rows", str(rows), "--dir", str(parts_dir), "--workers", str(workers),
        "--executor", executor, "--table", "bench_import_dst", *([] if live else ["--publish-at-end"]),
        "--publish", publish, "--swap-indexes", swap_indexes,
    )  # fmt: skip
    stats["wall"] = time.perf_counter() - started  # process start and pool start included
    assert stats["finalized"], stats
    assert same_rows(pg, source_table(rows), "bench_import_dst")
    return stats


def strategy_of(stats: dict[str, object]) -> str:
    """How the run published its export: "swap", "copy", "attach" or "insert" (the reason, if any, cut)."""
    return ", ".join(str(v).split(" ", 1)[0] for v in dict(stats["publish"]).values())  # type: ignore[arg-type]


def wait_finalized(pg: str, deadline: float) -> float:
    """Poll the bookkeeping until an export is published; return that moment (epoch seconds)."""
    with psycopg.connect(pg, autocommit=True) as conn:
        while time.time() < deadline:
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                if conn.execute("SELECT 1 FROM tdtp._tdtp_exports WHERE status = 'finalized'").fetchone():
                    return time.time()
            time.sleep(0.01)
    raise SystemExit("the import did not finish in time")


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every process, the database server's included)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user, nice, system, idle, iowait, irq, softirq: all but idle and iowait were busy.
    return (sum(fields[:7]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def bench_pipelined(
    pg: str, rows: int, broker: str, workers: int, publish: str = "auto"
) -> dict[str, object]:
    """Importer following ``broker`` while the exporter publishes; times relative to the export's start."""
    fresh_target(pg, rows, "bench_import_dst")
    importer = subprocess.Popen(
        [sys.executable, __file__, "--child", "import", "--pg", pg, "--rows", str(rows), "--broker", broker,
         "--workers", str(workers), "--table", "bench_import_dst", "--idle", "3", "--publish", publish],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert importer.stdout is not None
        assert importer.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # the worker pool and the broker reader are up
        cpu_before = busy_cpu_seconds()
        exported = run_child("export", "--pg", pg, "--rows", str(rows), "--broker", broker)
        done = wait_finalized(pg, time.time() + 120)
        cpu_used = busy_cpu_seconds() - cpu_before
        stats = json.loads(importer.communicate(timeout=60)[0].strip().splitlines()[-1])
    finally:
        if importer.poll() is None:
            importer.kill()
    assert same_rows(pg, source_table(rows), "bench_import_dst")
    return {
        "export_seconds": exported["ended"] - exported["started"],
        "import_done_seconds": done - exported["started"],
        "parts": exported["parts"],
        "bytes": exported["bytes"],
        "import_peak_rss_mb": stats["peak_rss_mb"],
        "import_worker_peak_rss_mb": stats["worker_peak_rss_mb"],
        "strategy": strategy_of(stats),
        "cpu_seconds": cpu_used,
    }


def bench_export_alone(pg: str, rows: int, broker: str) -> dict[str, object]:
    cpu_before = busy_cpu_seconds()
    out = run_child("export", "--pg", pg, "--rows", str(rows), "--broker", broker)
    out["cpu_seconds"] = busy_cpu_seconds() - cpu_before
    return out


def cpu_floor_text(together: dict[str, object], alone_s: float) -> str:
    """What the cores allow: the run's busy CPU seconds spread over every core, beside export alone.

    Export and import compete for the same cores (the database server's backends
    included), so no schedule can finish before CPU used / cores; when that floor
    is itself above a target, only spending less CPU can meet it.
    """
    cores = os.cpu_count() or 1
    cpu = float(together["cpu_seconds"])  # type: ignore[arg-type]
    floor = cpu / cores
    return (f"machine CPU busy {cpu:.2f} CPU-s -> floor on {cores} cores {floor:.2f} s "
            f"= {floor / alone_s:.2f}x export alone")  # fmt: skip


def bench_copy_pipe(pg: str, rows: int) -> tuple[float, float]:
    """Seconds and machine CPU seconds of ``psql COPY TO | psql COPY FROM``."""
    fresh_target(pg, rows, "bench_import_pipe")
    cpu_before = busy_cpu_seconds()
    started = time.perf_counter()
    subprocess.run(
        f"psql -X -q -v ON_ERROR_STOP=1 '{pg}' -c '\\copy (SELECT * FROM {source_table(rows)}) TO STDOUT' "
        f"| psql -X -q -v ON_ERROR_STOP=1 '{pg}' -c '\\copy bench_import_pipe FROM STDIN'",
        shell=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    cpu = busy_cpu_seconds() - cpu_before
    assert same_rows(pg, source_table(rows), "bench_import_pipe")
    return seconds, cpu


def bench_sling(sling: str, pg: str, rows: int) -> float:
    """Sling's own PostgreSQL -> PostgreSQL copy of the table (it creates the target table)."""
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_import_sling")
    url = (
        pg if "sslmode=" in pg else pg + ("&" if "?" in pg else "?") + "sslmode=disable"
    )  # Go's pq wants it said
    started = time.perf_counter()
    subprocess.run(
        [sling, "run", "--src-conn", url, "--src-stream", f"public.{source_table(rows)}",
         "--tgt-conn", url, "--tgt-object", "public.bench_import_sling", "--mode", "full-refresh"],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    with psycopg.connect(pg) as conn:
        assert conn.execute("SELECT count(*) FROM bench_import_sling").fetchone()[0] == rows
    return seconds


def delete_broker(url: str) -> None:
    from tdtp.brokers import BrokerError, open_broker

    with contextlib.suppress(BrokerError), open_broker(url) as log:
        delete = getattr(log, "delete", None)
        if delete is not None:
            delete()


# -------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", help=f"bench database URL (default: {BENCH_DB} next to the admin URL)")
    ap.add_argument("--admin", default=DEFAULT_ADMIN, help="URL used to create the bench database")
    ap.add_argument("--rabbitmq", default=DEFAULT_RABBITMQ)
    ap.add_argument("--skip-rabbitmq", action="store_true")
    ap.add_argument("--sections", default="1234", help="which sections to run, e.g. 23 (default: all)")
    ap.add_argument("--repeat", type=int, default=1, help="section 1: runs per figure, the median is shown")
    ap.add_argument("--child")
    ap.add_argument("--dir")
    ap.add_argument("--broker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executor", default="process")
    ap.add_argument("--table")
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--publish-at-end", action="store_true")
    ap.add_argument("--publish", default="auto", choices=("auto", "swap", "copy"))
    ap.add_argument("--swap-indexes", default="after", choices=("after", "before"))
    args = ap.parse_args()
    if args.child:
        runner = {"import": child_import, "export": child_export, "dlt": child_dlt}[args.child]
        result = runner(args)
        print(json.dumps(result, default=str))
        return 0

    rows = args.rows
    pg = args.pg or ensure_db(args.admin, BENCH_DB)
    ensure_source(pg, rows)
    work = Path(tempfile.mkdtemp(prefix="tdtp-bench-import-"))
    try:
        copy_file = work / "rows.copy"
        psql(pg, f"\\copy {source_table(rows)} TO '{copy_file}'")
        copy_mb = copy_file.stat().st_size / 1e6
        parts_dir = work / "parts"
        exported_files = run_child("export", "--pg", pg, "--rows", str(rows), "--dir", str(parts_dir))
        cpus = os.cpu_count() or 1
        print(f"tdtp import bench: {rows:,} rows, {copy_mb:.0f} MB as COPY text, {exported_files['parts']} parts "
              f"({exported_files['bytes'] / 1e6:.0f} MB zstd), {cpus} CPUs")  # fmt: skip

        if "1" in args.sections:
            # 1. workers, beside psql \copy
            rep = args.repeat
            anchor = float(median_of(rep, lambda: bench_psql_copy(pg, rows, copy_file))["seconds"])
            runs: dict[str, dict[str, object]] = {}
            for workers, executor, unit in ((1, "process", "process"), (2, "process", "processes"),
                                            (4, "process", "processes"), (2, "thread", "threads")):  # fmt: skip
                runs[f"copy, {workers} {unit}"] = median_of(
                    rep, lambda w=workers, e=executor: bench_import_files(pg, rows, parts_dir, w, e)
                )
            for w in (1, 2):
                runs[f"copy, {w} process{'es' if w > 1 else ''}, at end"] = median_of(
                    rep, lambda w=w: bench_import_files(pg, rows, parts_dir, w, "process", live=False)
                )
            for w in (1, 2, 4):
                runs[f"swap, {w} process{'es' if w > 1 else ''}"] = median_of(
                    rep, lambda w=w: bench_import_files(pg, rows, parts_dir, w, "process", publish="auto")
                )
            runs["swap, 2 processes, PK before"] = median_of(
                rep,
                lambda: bench_import_files(
                    pg, rows, parts_dir, 2, "process", publish="auto", swap_indexes="before"
                ),
            )
            print(
                "\n1. import from part files into an empty table with a primary key (ledger + atomic publish included)"
            )
            print(f"{'run':>30} {'strategy':>8} {'seconds':>8} {'rows/s':>10} {'MB/s':>6} {'staged s':>8} "
                  f"{'publish s':>9} {'p50 ms':>7} {'p95 ms':>7} {'RSS MB':>7} {'workers RSS':>11}")  # fmt: skip
            label = "psql \\copy FROM"
            print(f"{label:>30} {'':>8} {anchor:>8.2f} {rows / anchor:>10,.0f} {copy_mb / anchor:>6.1f}")
            for label, st in runs.items():
                sec = float(st["seconds"])
                print(f"{label:>30} {strategy_of(st):>8} {sec:>8.2f} {rows / sec:>10,.0f} {copy_mb / sec:>6.1f} "
                      f"{st['staged_seconds']:>8.2f} {st['finalize_seconds']:>9.2f} "
                      f"{st['p50_part_seconds'] * 1000:>7.0f} {st['p95_part_seconds'] * 1000:>7.0f} "
                      f"{st['peak_rss_mb']:>7.0f} {st['worker_peak_rss_mb']:>11.0f}")  # fmt: skip

            def took(label: str) -> float:
                return float(runs[label]["seconds"])

            at_end1, at_end2 = runs["copy, 1 process, at end"], runs["copy, 2 processes, at end"]
            print(f"   copy: 2 workers vs 1: {took('copy, 1 process') / took('copy, 2 processes'):.2f}x; staging only "
                  f"(decode + ledger, publish at end): "
                  f"{float(at_end1['staged_seconds']) / float(at_end2['staged_seconds']):.2f}x; "
                  f"2 workers / psql copy: {took('copy, 2 processes') / anchor:.2f}")  # fmt: skip
            print(f"   swap: 2 workers vs 1: {took('swap, 1 process') / took('swap, 2 processes'):.2f}x (target >= 1.4x); "
                  f"2 workers / psql copy: {took('swap, 2 processes') / anchor:.2f} (target <= 1.00); "
                  f"best run / psql copy: {min(float(r['seconds']) for r in runs.values()) / anchor:.2f}")  # fmt: skip

        if "2" in args.sections:
            # 2. export alone vs export + import together
            spool = f"spool:///{work}/spool-alone"
            alone = bench_export_alone(pg, rows, spool)
            alone_s = float(alone["ended"]) - float(alone["started"])
            print("\n2. export alone vs export + import pipelined (spool broker, 2 workers)")
            print(f"   export alone: {alone_s:.2f} s, machine CPU busy {float(alone['cpu_seconds']):.2f} CPU-s")
            least = float(alone["cpu_seconds"]) + bench_psql_copy(pg, rows, copy_file)["cpu_seconds"]
            cores = os.cpu_count() or 1
            print(f"   export alone + one psql \\copy FROM of the rows: {least:.2f} CPU-s -> even an importer costing "
                  f"no more than psql could not finish before {least / cores:.2f} s = "
                  f"{least / cores / alone_s:.2f}x export alone on {cores} cores")  # fmt: skip
            for publish in ("auto", "copy"):
                together = bench_pipelined(pg, rows, f"spool:///{work}/spool-pipe-{publish}", 2, publish)
                print(f"   {together['strategy']}: with the import running, export {together['export_seconds']:.2f} s, "
                      f"import published {together['import_done_seconds']:.2f} s after the export started; "
                      f"import done / export alone: {float(together['import_done_seconds']) / alone_s:.2f}x "
                      "(target <= 1.2x)")  # fmt: skip
                print(f"      {cpu_floor_text(together, alone_s)}")

        if "3" in args.sections:
            # 3. end to end through RabbitMQ, beside a COPY pipe
            pipe, pipe_cpu = bench_copy_pipe(pg, rows)
            print("\n3. end to end PostgreSQL -> broker -> PostgreSQL")
            print(f"{'psql COPY TO | COPY FROM':>34}: {pipe:.2f} s, {rows / pipe:,.0f} rows/s")
            if args.skip_rabbitmq:
                print("   RabbitMQ: skipped (--skip-rabbitmq)")
            else:
                for publish in ("auto", "copy"):
                    url = f"{args.rabbitmq}/bench_{uuid.uuid4().hex[:8]}?queue_type=stream"
                    try:
                        e2e = bench_pipelined(pg, rows, url, 2, publish)
                    finally:
                        delete_broker(url)
                    took = float(e2e["import_done_seconds"])
                    label = f"tdtp via RabbitMQ stream ({e2e['strategy']})"
                    print(f"{label:>34}: {took:.2f} s, {rows / took:,.0f} rows/s "
                          f"(export alone in that run {e2e['export_seconds']:.2f} s); "
                          f"rate / COPY pipe rate: {pipe / took * 100:.0f}% (target >= 60%)")  # fmt: skip
                    print(f"{'':>36}machine CPU busy {float(e2e['cpu_seconds']):.2f} CPU-s "
                          f"(COPY pipe {pipe_cpu:.2f}) -> floor on {os.cpu_count() or 1} cores "
                          f"{float(e2e['cpu_seconds']) / (os.cpu_count() or 1):.2f} s")  # fmt: skip
        if "4" in args.sections:
            # 4. peers on the same table
            beside = Path(sys.executable).with_name("sling")  # installed into this venv by the bench extra
            sling = shutil.which("sling") or (str(beside) if beside.exists() else None)
            if sling is None:
                print("   sling: not installed (pip install -e '.[bench]'), skipped")
            else:
                try:
                    sec = bench_sling(sling, pg, rows)
                    print(f"{'sling (PG -> PG, full refresh)':>34}: {sec:.2f} s, {rows / sec:,.0f} rows/s")
                except (subprocess.CalledProcessError, AssertionError) as exc:
                    print(f"   sling: failed ({exc}), skipped")
            if importlib.util.find_spec("dlt") is None:
                print("   dlt: not installed (pip install -e '.[bench]'), skipped")
            else:
                try:
                    sec = float(run_child("dlt", "--pg", pg, "--rows", str(rows))["seconds"])
                    print(f"{'dlt (sql_table pyarrow -> postgres)':>34}: {sec:.2f} s, {rows / sec:,.0f} rows/s")
                except (subprocess.CalledProcessError, KeyError, ValueError) as exc:
                    print(f"   dlt: failed ({exc}), skipped")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with psycopg.connect(pg, autocommit=True) as conn:
            for t in ("bench_import_dst", "bench_import_psql", "bench_import_pipe", "bench_import_sling"):
                conn.execute(f"DROP TABLE IF EXISTS {t}")
            conn.execute("DROP SCHEMA IF EXISTS tdtp CASCADE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
