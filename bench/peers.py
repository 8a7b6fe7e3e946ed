"""End-to-end table copy PostgreSQL -> PostgreSQL: tdtp beside its peers, same table, same run.

Usage::

    .venv/bin/python bench/peers.py [--rows 1000000] [--repeat 3] [--only copy,tdtp,sling,dlt]

One deterministic mixed-type source table of ``--rows`` rows (bigint id primary key, int,
numeric(12,2), text, timestamptz, boolean, double precision and a text column that is NULL
in every 10th row) lives in the database ``tdtp_bench`` (created if missing, the table is
kept for the next run). Every contender copies it into a fresh table of the database
``tdtp_bench_target``; a run is timed on the wall clock from its first process start until
its processes have exited with the rows committed, then the target is checked against the
source (row count, sum(id), count(label), sum(amount)). Contenders (``--only`` takes keys
or key prefixes, comma separated):

  copy_psql        ``psql \\copy (SELECT ...) TO STDOUT | psql \\copy ... FROM STDIN``: the anchor
  copy_psycopg     the same pipe in Python: psycopg COPY OUT chunks -> COPY IN on another connection
  tdtp_spool_seq   ``tdtp export --to spool://...`` and then ``tdtp import --from-seq 0``
  tdtp_spool_pipe  the importer (Python API, another process) follows the spool while ``tdtp export`` writes
  tdtp_rabbitmq    the same through a RabbitMQ stream queue (deleted afterwards)
  sling            ``sling run ... --mode full-refresh`` (the Sling binary from PyPI's platform package)
  dlt              a dlt pipeline: ``sql_table`` source (arrow backend) -> postgres destination (csv/COPY)

The copy pipes and tdtp create the target with its primary key (tdtp writes the schema's
key as PRIMARY KEY), Sling and dlt create theirs without one: the table's ``pk`` column
says which. The faster of the two pipes is the anchor of the ``x copy`` column; ratios are
seconds divided by the reference's seconds (above 1: slower). MB/s is measured on the
table's COPY text size. Medians of ``--repeat`` rounds; contenders take turns each round.

Sling and dlt come from the ``bench`` extra (``pip install -e '.[bench]'``); a contender
whose tool is missing is skipped with the reason. Environment: ``TDTP_BENCH_PG_ADMIN``
(a URL of the server's ``postgres`` database), ``TDTP_BENCH_RABBITMQ`` (broker base URL).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from bench_tables import ensure_db
from peers_children import run_child
from peers_common import CONTENDERS, DEFAULT_ADMIN, DEFAULT_RABBITMQ, ROOT, SOURCE_DB, TARGET_DB, Ctx, Skip
from peers_contenders import BENCHES, dlt_backend, find_sling, sling_version
from peers_db import copy_text_bytes, ensure_source, has_primary_key, reset_target, source_table, table_check
from peers_procs import one_line
from peers_report import report

sys.path.insert(0, str(ROOT))


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def selected(only: str | None) -> list[str]:
    if not only:
        return list(CONTENDERS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if not any(k == w or k.startswith(w) for k in CONTENDERS)]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    return [k for k in CONTENDERS if any(k == w or k.startswith(w) for w in wanted)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        return run_child(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", help=f"comma list of contenders or prefixes: {', '.join(CONTENDERS)}")
    p.add_argument("--pg-admin", default=DEFAULT_ADMIN, help="URL of the server's postgres database")
    p.add_argument("--rabbitmq", default=DEFAULT_RABBITMQ, help="RabbitMQ base URL (no stream name)")
    p.add_argument("--workers", type=int, help="tdtp importer workers (default: its own, the CPU count)")
    p.add_argument("--dlt-backend", default="auto", choices=("auto", "connectorx", "pyarrow", "sqlalchemy"))
    p.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take")
    p.add_argument("--drop-source", action="store_true", help="drop the source table at the end")
    args = p.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        raise SystemExit("--rows and --repeat must be >= 1")
    order = selected(args.only)

    src = ensure_db(args.pg_admin, SOURCE_DB)
    tgt = ensure_db(args.pg_admin, TARGET_DB)
    ensure_source(src, args.rows)
    table = source_table(args.rows)

    with tempfile.TemporaryDirectory(prefix="tdtp-peers-") as tmp:
        ctx = Ctx(
            src=src,
            tgt=tgt,
            rows=args.rows,
            table=table,
            rabbitmq=args.rabbitmq,
            workers=args.workers,
            timeout=args.timeout,
            tmp=Path(tmp),
            dlt_backend=dlt_backend(args.dlt_backend),
        )
        ctx.expected = table_check(src, table)
        size = copy_text_bytes(src, table)
        ctx.copy_bytes = size
        with psycopg.connect(src) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]
        tools = [f"PostgreSQL {server}", f"psycopg {psycopg.__version__}", f"{os.cpu_count()} CPUs"]
        if "sling" in order:
            with contextlib.suppress(Skip):
                tools.append(f"sling {sling_version(find_sling(), ctx.tmp)}")
        if "dlt" in order and version_of("dlt"):
            backend_pkg = {"connectorx": "connectorx", "pyarrow": "pyarrow"}.get(ctx.dlt_backend)
            extra = f" {version_of(backend_pkg)}" if backend_pkg else ""
            tools.append(f"dlt {version_of('dlt')} (backend {ctx.dlt_backend}{extra}, csv loader)")
        print("; ".join(tools), file=sys.stderr, flush=True)

        times: dict[str, list[float]] = {k: [] for k in order}
        failed: dict[str, str] = {}
        try:
            for round_no in range(1, args.repeat + 1):
                for key in order:
                    if key in failed:
                        continue
                    try:
                        reset_target(tgt)
                        started = time.perf_counter()
                        landed = BENCHES[key](ctx)
                        seconds = time.perf_counter() - started
                        got = table_check(tgt, landed)
                        if got != ctx.expected:
                            raise RuntimeError(
                                f"target check failed: (count, sum id, count label, sum amount) = {got}, "
                                f"source {ctx.expected}"
                            )
                        ctx.notes[f"pk:{key}"] = "yes" if has_primary_key(tgt, landed) else "no"
                        times[key].append(seconds)
                        print(f"[{round_no}/{args.repeat}] {key}: {seconds:.2f} s, rows ok", file=sys.stderr)
                    except Skip as why:
                        failed[key] = f"skipped: {why}"
                        print(f"[{round_no}/{args.repeat}] {key}: skipped: {why}", file=sys.stderr)
                    except Exception as err:  # one line per failure, the others go on
                        reason = one_line(f"{type(err).__name__}: {err}")
                        failed[key] = f"failed: {reason}"
                        print(f"[{round_no}/{args.repeat}] {key}: failed: {reason}", file=sys.stderr)
                    sys.stderr.flush()
        except KeyboardInterrupt:
            print("interrupted: reporting what was measured", file=sys.stderr)
        finally:
            with contextlib.suppress(Exception):
                reset_target(tgt)
            if args.drop_source:
                with contextlib.suppress(Exception), psycopg.connect(src, autocommit=True) as conn:
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
        report(ctx, order, times, failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
