"""Peak RSS and throughput of ``tdtp export`` and ``tdtp import``, before and after the
writer's decoded-byte cap, side by side in one run.

Usage: ``.venv/bin/python bench/memory.py [--rows 100000 1000000] [--pg ADMIN_URL]
[--before cap|REV] [--repeat 1] [--drop]``

Why: a part's budget used to be in encoded bytes only, so a very compressible table
made parts of 64 MiB of rows in 1.9 MB, and every process that wrote or read them
paid for the 64 MiB.  This bench shows memory following the design (the part caps)
and not the data: the same figures at 100k and 1M rows, for ordinary rows and for
rows that compress ~1000x.

Tables, created on first use in the PostgreSQL database ``tdtp_bench_mem`` and kept
there between runs (``--drop`` drops the database at the end):
  ordinary - orders-like rows: ints, a timestamp, a numeric, short texts that repeat
             across rows (~80 bytes a row as row text)
  1000x    - an id and the same 1 KiB text in every row
Steps, each in a fresh ``tdtp`` process, for every row count, table and variant:
  export pg     - ``tdtp export`` from PostgreSQL to a directory (batch, the directory default)
  import pg     - ``tdtp import`` of those parts into PostgreSQL (2 worker processes)
  import sqlite - the same parts into a SQLite file, which is then the SQLite source
  export sqlite - ``tdtp export`` from that SQLite file to a directory
Variants: ``after`` is the code in this tree with its defaults (8 MiB of rows a part);
``before`` is this tree with ``--part-raw-bytes 67108864`` (the writer cap off: the
old 64 MiB ceiling), or with ``--before REV`` the ``tdtp`` of that git revision.
Peak RSS is ``ru_maxrss`` of ``wait4()`` on the ``tdtp`` process, which covers its
waited-for children (the importer's workers): the largest process of the step.
Throughput is rows over the process's wall time (interpreter start included); the CPU
seconds of the process tree are printed beside it, steadier on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_tables import db_url, ensure_db  # noqa: E402  (bench/ is on sys.path)

DEFAULT_PG = os.environ.get("TDTP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB = "tdtp_bench_mem"
UNCAPPED = 64 * 2**20  # the largest --part-raw-bytes: the old ceiling, the writer cap off
STEPS = ("export pg", "import pg", "import sqlite", "export sqlite")
KINDS = ("ordinary", "1000x")
# The targets: growth 100k -> 1M, export and import peak RSS, throughput vs before.
MAX_GROWTH_MB = 10.0
MAX_EXPORT_MB = 150.0
MAX_IMPORT_MB = 200.0
MIN_SPEED_RATIO = 0.90

_TABLE_SQL = {
    "ordinary": """
        SELECT g AS id,
               timestamptz '2026-01-01 00:00:00+00' + g * interval '2 seconds' AS created_at,
               (g * 7919) % 30000 + 1 AS customer_id,
               (g * 31) % 7 + 1 AS quantity,
               ((g * 2654435761) % 100000 / 100.0)::numeric(12, 2) AS amount,
               (ARRAY['new', 'paid', 'shipped', 'delivered', 'returned'])[(g % 5)::int + 1] AS status,
               CASE WHEN g % 10 = 0 THEN NULL ELSE 'order ' || g END AS note
        FROM generate_series(1::bigint, {rows}) AS g""",
    "1000x": """
        SELECT g AS id, repeat('0123456789abcdef', 64) AS body
        FROM generate_series(1::bigint, {rows}) AS g""",
}


@dataclass(slots=True)
class Run:
    """One ``tdtp`` process: wall seconds, CPU seconds (its whole tree, the database server's
    not included), peak RSS of its largest process, its JSON stats."""

    seconds: float
    cpu: float
    rss_mb: float
    stats: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class Variant:
    """How to start ``tdtp`` for one column of the table."""

    name: str
    command: list[str]
    env: dict[str, str]
    export_args: list[str]


def source_table(kind: str, rows: int) -> str:
    return f"mem_{'plain' if kind == 'ordinary' else 'rep'}_{rows}"


def ensure_source(pg: str, kind: str, rows: int) -> None:
    """Create the source table unless a complete one is already there."""
    name = source_table(kind, rows)
    with psycopg.connect(pg, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
        if found and conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == rows:
            return
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} AS {_TABLE_SQL[kind].format(rows=int(rows))}")
        conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
        conn.execute(f"VACUUM ANALYZE {name}")


def variants(before: str, work: Path) -> list[Variant]:
    """The before and after ways to run ``tdtp``; every run's cwd is ``work``, so ``-m``
    imports the tree on PYTHONPATH and not the current directory's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    after = Variant("after", [sys.executable, "-m", "tdtp.cli"], env, [])
    if before == "cap":
        return [Variant("before", after.command, env, ["--part-raw-bytes", str(UNCAPPED)]), after]
    tree = work / "before-tree"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", before, "tdtp"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return [Variant("before", after.command, {**os.environ, "PYTHONPATH": str(tree)}, []), after]


def run_tdtp(variant: Variant, args: list[str], work: Path) -> Run:
    """Run one ``tdtp`` command in a fresh process; its rusage comes from ``wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen([*variant.command, *args], stdout=out, stderr=err, env=variant.env, cwd=work)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(f"{variant.name}: tdtp {' '.join(args)} failed ({proc.returncode}): {tail}")
        lines = out.read().decode().strip().splitlines()
    stats = json.loads(lines[-1]) if lines else {}
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stats)


def steps(variant: Variant, pg: str, kind: str, rows: int, work: Path) -> dict[str, Run]:
    """The four steps of one variant on one table, in order (each feeds the next)."""
    tag = f"{variant.name}_{kind}_{rows}"
    parts, parts_sqlite, db = work / f"parts_{tag}", work / f"parts_sqlite_{tag}", work / f"{tag}.db"
    target = f"mem_in_{tag}".replace("1000x", "rep")
    common = ["--compress", "zstd", "--overwrite", "--quiet", *variant.export_args]
    runs: dict[str, Run] = {}
    try:
        runs["export pg"] = run_tdtp(
            variant, ["export", "--source", pg, "--table", source_table(kind, rows), "--to", str(parts),
                      "--name", "src", *common], work)  # fmt: skip
        runs["import pg"] = run_tdtp(
            variant, ["import", "--from", str(parts), "--target", pg, "--table", target, "--quiet"], work
        )
        runs["import sqlite"] = run_tdtp(
            variant, ["import", "--from", str(parts), "--target", f"sqlite:///{db}", "--table", "src", "--quiet"], work
        )
        runs["export sqlite"] = run_tdtp(
            variant, ["export", "--source", f"sqlite:///{db}", "--table", "src", "--to", str(parts_sqlite), *common],
            work,
        )  # fmt: skip
    finally:
        shutil.rmtree(parts, ignore_errors=True)
        shutil.rmtree(parts_sqlite, ignore_errors=True)
        db.unlink(missing_ok=True)
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{target}"')
    if kind == "1000x":  # the SQLite file held the rows the export read: check nothing was lost
        assert runs["export sqlite"].stats.get("rows") == rows, runs["export sqlite"].stats
    return runs


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]


Results = dict[tuple[str, int, str, str], Run]  # (kind, rows, step, variant) -> Run


def report(results: Results, kinds: list[str], rows_list: list[int], before_desc: str, repeat: int) -> None:
    print(
        f"Memory bench (median of {repeat}; each step a fresh tdtp process; RSS = peak of its largest process, MB)\n"
        f"before: {before_desc}; after: this tree's defaults (8 MiB of rows a part)\n"
    )
    head = (
        "| table | rows | step | parts before / after | MiB of rows a part, after | peak RSS before | "
        "peak RSS after | target | rows/s before | rows/s after | after / before | CPU s before / after |"
    )
    print(head)
    print("|" + "---|" * head.count(" | ") + "---|")
    for kind in kinds:
        for rows in rows_list:
            for step in STEPS:
                b, a = results[(kind, rows, step, "before")], results[(kind, rows, step, "after")]
                limit = MAX_EXPORT_MB if step.startswith("export") else MAX_IMPORT_MB
                parts = "-"
                per_part = "-"
                if step.startswith("export"):
                    parts = f"{b.stats.get('parts')} / {a.stats.get('parts')}"
                    raw = float(a.stats.get("raw_bytes") or 0)
                    per_part = f"{raw / max(int(a.stats.get('parts') or 1), 1) / 2**20:.1f}"
                speed_b, speed_a = rows / b.seconds, rows / a.seconds
                print(
                    f"| {kind} | {rows:,} | {step} | {parts} | {per_part} | {b.rss_mb:.1f} | {a.rss_mb:.1f} | "
                    f"<= {limit:.0f} {'ok' if a.rss_mb <= limit else 'MISS'} | {speed_b:,.0f} | {speed_a:,.0f} | "
                    f"{speed_a / speed_b:.2f} {'ok' if speed_a / speed_b >= MIN_SPEED_RATIO else 'MISS'} | "
                    f"{b.cpu:.2f} / {a.cpu:.2f} |"
                )
    if len(rows_list) < 2:
        return
    small, large = min(rows_list), max(rows_list)
    print(f"\nGrowth of peak RSS from {small:,} to {large:,} rows (target: under {MAX_GROWTH_MB:.0f} MB, after)")
    print("| table | step | before | after |")
    print("|---|---|---|---|")
    for kind in kinds:
        for step in STEPS:
            grow = {v: results[(kind, large, step, v)].rss_mb - results[(kind, small, step, v)].rss_mb
                    for v in ("before", "after")}  # fmt: skip
            verdict = "ok" if grow["after"] < MAX_GROWTH_MB else "MISS"
            print(f"| {kind} | {step} | {grow['before']:+.1f} MB | {grow['after']:+.1f} MB {verdict} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--pg", default=DEFAULT_PG, help="admin URL; the bench database is created beside it")
    ap.add_argument("--before", default="cap", help="'cap' (this tree, writer cap off) or a git revision")
    ap.add_argument("--repeat", type=int, default=1, help="runs per step and variant; the median is reported")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--drop", action="store_true", help=f"drop the database {BENCH_DB} at the end")
    args = ap.parse_args()

    pg = ensure_db(args.pg, BENCH_DB)
    work = Path(tempfile.mkdtemp(prefix="tdtp-bench-mem-"))
    results: Results = {}
    try:
        pair = variants(args.before, work)
        for kind in args.kinds:
            for rows in args.rows:
                ensure_source(pg, kind, rows)
                per: dict[tuple[str, str], list[Run]] = {}
                for _ in range(args.repeat):
                    for variant in pair:  # before and after alternate, so drift hits both alike
                        for step, run in steps(variant, pg, kind, rows, work).items():
                            per.setdefault((step, variant.name), []).append(run)
                            print(f"{kind} {rows} {variant.name:>6} {step:<13} {run.seconds:7.2f} s "
                                  f"{run.cpu:7.2f} CPU s {run.rss_mb:7.1f} MB", file=sys.stderr, flush=True)  # fmt: skip
                for (step, name), runs in per.items():
                    results[(kind, rows, step, name)] = median_run(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.drop:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}"')
    before_desc = (
        f"this tree with --part-raw-bytes {UNCAPPED} (the writer cap off)"
        if args.before == "cap"
        else f"tdtp of git revision {args.before}"
    )
    report(results, args.kinds, sorted(args.rows), before_desc, args.repeat)
    print(f"\nsource and target database: {db_url(args.pg, BENCH_DB)} ({'dropped' if args.drop else 'kept'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
