"""PostgreSQL -> RabbitMQ stream -> PostgreSQL at scale: ``tdtp copy`` beside a COPY pipe and Sling.

Usage::

    .venv/bin/python bench/scale.py [--rows 1000000 10000000] [--repeat 1] [--only pipe,tdtp_copy,sling]
                                    [--before REV]

The source is ``bench/peers.py``'s deterministic mixed-type table (bigint primary key,
int, numeric, text, timestamptz, boolean, float8, a text NULL in every 10th row) of
``--rows`` rows in the database ``tdtp_bench`` (created if missing and kept); every
contender copies it into a fresh table of ``tdtp_bench_target`` and the result is
checked against the source (count, sum(id), count(label), sum(amount)). Contenders:

  pipe       ``psql \\copy (SELECT ...) TO STDOUT | psql \\copy ... FROM STDIN`` into a table
             with the primary key: the anchor
  tdtp_copy  ``tdtp copy --via rabbitmq://.../<fresh stream>?queue_type=stream`` (the
             stream is deleted afterwards); the target gets the source's primary key
  tdtp_copy_before  with ``--before REV``: the same ``tdtp copy`` by the ``tdtp`` package of
             that git revision (extracted to a temporary directory, first on PYTHONPATH)
  dagster_copy  the table's export and import assets and the import asset's checks in one
             run (what the ``tdtp_copy_<table>`` job runs), by ``dg.materialize`` in the child
             on a temporary instance: Dagster's run machinery without a daemon's run launch
  sling      ``sling run ... --mode full-refresh`` (the ``bench`` extra's binary; no key)

Each contender runs in a fresh child process of this script, which starts the tools
and waits for them, so ``getrusage(RUSAGE_CHILDREN)`` there is exactly the client
side: CPU seconds of every client process (psql, tdtp and its lander and workers,
sling; not the PostgreSQL server's; for the Dagster run also this child's own CPU during
the run) and the peak RSS of the largest one (the Dagster run: this child, Dagster loaded). Printed per
contender and size: wall seconds, rate against the pipe of the same round
(pipe seconds / seconds: 1.00 = as fast), client CPU-s per 1M rows, peak RSS MB, and
the accounting: CPU seconds the PostgreSQL server (all its processes) and RabbitMQ's
Erlang VM spent during the contender's run, and the floor they make with the client's
CPU on this machine's cores ((client + servers) / cores: no run can end sooner).
Medians of ``--repeat`` rounds; contenders take turns each round. The load average
is printed before and after: on a shared machine compare figures of one run only.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# bench/ last, not first (where running this script puts it): bench/dagster.py is not the dagster package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]
sys.path.insert(0, str(BENCH.parent))

from bench_tables import db_url, ensure_db  # noqa: E402
from peers_common import DEFAULT_ADMIN, DEFAULT_RABBITMQ, SOURCE_DB, TARGET, TARGET_DB, Ctx, Skip  # noqa: E402
from peers_contenders import bench_copy_psql, bench_sling  # noqa: E402
from peers_db import ensure_source, reset_target, source_table, table_check  # noqa: E402
from peers_procs import run_proc, tdtp_cmd  # noqa: E402

CONTENDERS = ("pipe", "tdtp_copy", "tdtp_copy_before", "dagster_copy", "sling")
BEFORE_TREE_ENV = "TDTP_BENCH_BEFORE_TREE"  # where --before put the older tdtp package
LABELS = {
    "pipe": "COPY pipe: psql | psql",
    "tdtp_copy": "tdtp copy via RabbitMQ stream",
    "tdtp_copy_before": "tdtp copy of --before, same way",
    "dagster_copy": "Dagster copy run, same stream",
    "sling": "Sling",
}


def bench_tdtp_copy(ctx: Ctx, tree: Path | None = None) -> str:
    """``tdtp copy`` of this tree, or with ``tree`` the ``tdtp`` package found there (--before)."""
    from tdtp.brokers import open_broker

    via = f"{ctx.rabbitmq}/scale_{uuid.uuid4().hex[:8]}?queue_type=stream"
    # Another tree's package comes first on the path; the working directory must not be this one.
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
    try:
        run_proc(
            tdtp_cmd(
                "copy", "--source", ctx.src, "--table", ctx.table, "--via", via,
                "--target", ctx.tgt, "--target-table", TARGET, "--quiet",
                *(["--workers", str(ctx.workers)] if ctx.workers else []),
            ),
            timeout=ctx.timeout,
            env=env,
            cwd=None if tree is None else ctx.tmp,
        )  # fmt: skip
    finally:
        with open_broker(via, create=False) as log:
            log.delete()
    return TARGET


def bench_dagster_copy(ctx: Ctx) -> str:
    """Both assets of the table and the import asset's checks in one run (what the copy job runs),
    executed in this process by ``dg.materialize`` on a temporary instance: the export step lands
    its parts through its lander process; the import step publishes and checks."""
    import dagster as dg

    from tdtp.brokers import open_broker
    from tdtp_assets import names
    from tdtp_assets.tables_config import parse_tables
    from tdtp_location.definitions import build_definitions

    stream = f"scale_{uuid.uuid4().hex[:8]}"
    doc = {
        "defaults": {"broker": f"{ctx.rabbitmq}/{stream}?queue_type=stream", "workers": ctx.workers or 2},
        "tables": {
            "scale": {"source": ctx.src, "table": ctx.table, "target": {"url": ctx.tgt, "table": TARGET}},
        },
    }
    defs = build_definitions(parse_tables(doc, ctx.tmp / "tables.yaml", ctx.tmp))
    import_key = names.import_key("scale")
    checks = [c for c in defs.asset_checks if import_key in {k.asset_key for k in c.check_keys}]
    selection = [defs.get_assets_def(names.export_key("scale")), defs.get_assets_def(import_key), *checks]
    try:
        with dg.instance_for_test(temp_dir=str(ctx.tmp)) as instance:
            result = dg.materialize(selection, instance=instance, resources=defs.resources, raise_on_error=False)
            if not result.success:
                raise RuntimeError("the Dagster copy run failed")
    finally:
        with open_broker(f"{ctx.rabbitmq}/{stream}?queue_type=stream", create=False) as log:
            log.delete()
    return TARGET


def bench_tdtp_copy_before(ctx: Ctx) -> str:
    return bench_tdtp_copy(ctx, Path(os.environ[BEFORE_TREE_ENV]))


BENCHES = {
    "pipe": bench_copy_psql,
    "tdtp_copy": bench_tdtp_copy,
    "tdtp_copy_before": bench_tdtp_copy_before,
    "dagster_copy": bench_dagster_copy,
    "sling": bench_sling,
}


def child(name: str, args: argparse.Namespace) -> dict[str, object]:
    """One contender in this fresh process: wall time, and its client processes' CPU and peak RSS."""
    src, tgt = db_url(args.admin, SOURCE_DB), db_url(args.admin, TARGET_DB)
    with tempfile.TemporaryDirectory(prefix="tdtp-scale-") as tmp:
        ctx = Ctx(src, tgt, args.rows[0], source_table(args.rows[0]), args.rabbitmq, args.workers,
                  args.timeout, Path(tmp), "")  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        try:
            table = BENCHES[name](ctx)
        except Skip as why:
            return {"skipped": str(why)}
        seconds = time.perf_counter() - started
    # The tools' processes, and this one's own work during the run (the Dagster run executes here).
    own = resource.getrusage(resource.RUSAGE_SELF)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own_cpu = (own.ru_utime + own.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "seconds": seconds,
        "cpu": usage.ru_utime + usage.ru_stime + own_cpu,
        "peak_rss_mb": max(usage.ru_maxrss, own.ru_maxrss if name == "dagster_copy" else 0) / 1024,
        "check": [str(v) for v in table_check(tgt, table)],
    }


def server_cpu() -> dict[str, float]:
    """CPU seconds spent so far by the PostgreSQL server (every process, and the backends its
    postmaster has reaped) and by RabbitMQ's Erlang VM: the other half of the accounting, since
    on this machine the servers share the client's two cores."""
    import psutil

    spent = {"postgres": 0.0, "rabbitmq": 0.0}
    for proc in psutil.process_iter(["name"]):
        try:
            name = proc.info["name"] or ""
            kind = "postgres" if name.startswith("postgres") else "rabbitmq" if name.startswith("beam") else None
            if kind is None:
                continue
            t = proc.cpu_times()
            spent[kind] += t.user + t.system
            parent = proc.parent()
            if kind == "postgres" and not (parent and (parent.name() or "").startswith("postgres")):
                spent[kind] += t.children_user + t.children_system  # the postmaster: reaped backends
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return spent


def run_child(name: str, rows: int, args: argparse.Namespace) -> dict[str, object]:
    argv = [sys.executable, __file__, "--child", name, "--rows", str(rows), "--admin", args.admin,
            "--rabbitmq", args.rabbitmq, "--timeout", str(args.timeout)]  # fmt: skip
    if args.workers:
        argv += ["--workers", str(args.workers)]
    servers_before = server_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout + 60)
    servers_after = server_cpu()
    if done.returncode != 0:
        return {"failed": (done.stderr.strip().splitlines() or ["?"])[-1]}
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    for kind, spent in servers_after.items():
        result[f"{kind}_cpu"] = round(spent - servers_before[kind], 2)
    return result


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", default=",".join(CONTENDERS))
    ap.add_argument("--admin", default=DEFAULT_ADMIN, help="URL of the server's postgres database")
    ap.add_argument("--rabbitmq", default=DEFAULT_RABBITMQ)
    ap.add_argument("--workers", type=int, help="tdtp copy --workers (default: CPU count)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--before", help="also run tdtp copy of this git revision (its tdtp package), same way")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0

    only = [c for c in CONTENDERS if c in args.only.split(",") and (c != "tdtp_copy_before" or args.before)]
    if args.before:
        tree = Path(tempfile.mkdtemp(prefix="tdtp-scale-before-"))
        archive = subprocess.run(
            ["git", "-C", str(BENCH.parent), "archive", args.before, "tdtp"], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        os.environ[BEFORE_TREE_ENV] = str(tree)  # the children inherit it
        atexit.register(shutil.rmtree, tree, True)
    src = ensure_db(args.admin, SOURCE_DB)
    tgt = ensure_db(args.admin, TARGET_DB)
    print(f"load average before: {load()} ({os.cpu_count()} CPUs)", flush=True)
    results: dict[int, dict[str, list[dict[str, object]]]] = {}
    for rows in args.rows:
        ensure_source(src, rows)
        expected = [str(v) for v in table_check(src, source_table(rows))]
        results[rows] = {name: [] for name in only}
        for _ in range(args.repeat):
            for name in only:
                reset_target(tgt)
                result = run_child(name, rows, args)
                if "check" in result and result["check"] != expected:
                    result = {"failed": f"target differs from the source: {result['check']} != {expected}"}
                results[rows][name].append(result)
                print(f"  {rows:,} {name}: {json.dumps(result)}", file=sys.stderr, flush=True)
        reset_target(tgt)
    print(f"load average after: {load()}")
    print(
        f"{'rows':>11}  {'contender':32} {'seconds':>8} {'vs pipe':>8} {'CPU-s/1M':>9} {'peak RSS MB':>12}"
        f" {'PG CPU-s':>9} {'MQ CPU-s':>9} {'floor s':>8}"
    )
    for rows, by_name in results.items():
        pipe = _median(by_name.get("pipe", []), "seconds")
        for name, runs in by_name.items():
            ok = [r for r in runs if "seconds" in r]
            if not ok:
                why = next((str(r.get("skipped") or r.get("failed")) for r in runs), "?")
                print(f"{rows:>11,}  {LABELS[name]:32} {why}")
                continue
            seconds = _median(ok, "seconds")
            assert seconds is not None
            cpu = _median(ok, "cpu") or 0.0
            rss = max(float(r["peak_rss_mb"]) for r in ok)
            ratio = f"{pipe / seconds:8.2f}" if pipe else f"{'-':>8}"
            pg = _median(ok, "postgres_cpu") or 0.0
            mq = _median(ok, "rabbitmq_cpu") or 0.0
            # No schedule of this much CPU on these cores ends sooner (servers share the cores).
            floor = (cpu + pg + mq) / (os.cpu_count() or 1)
            print(
                f"{rows:>11,}  {LABELS[name]:32} {seconds:8.2f} {ratio} {cpu / rows * 1e6:9.2f} {rss:12.1f}"
                f" {pg:9.2f} {mq:9.2f} {floor:8.2f}"
            )
    return 0


def _median(runs: list[dict[str, object]], key: str) -> float | None:
    values = [float(r[key]) for r in runs if key in r]  # type: ignore[arg-type]
    return statistics.median(values) if values else None


if __name__ == "__main__":
    sys.exit(main())
