"""Streaming vs batch export, measured beside a plain ``COPY ... TO STDOUT`` read.

Usage: ``.venv/bin/python bench/parts.py [--rows 100000 1000000] [--pg URL] [--compress zstd|none]``

For every table size it runs, each in a fresh process (so peak RSS is that mode's own):
  copy    - ``COPY (SELECT * FROM t) TO STDOUT`` read through libpq's PQgetCopyData and
            discarded: the anchor (the fastest plain read Python can do)
  psycopg - the same read through psycopg's Copy iterator, for reference
  stream  - ``tdtp`` streaming export of the same table to part files
  batch   - the same in batch mode (every part needs TotalParts, so nothing leaves early)
and prints first-part latency, total time, rows/s, MB/s, peak RSS and the ratios the
engine issue sets as targets.
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
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_tables import ensure_mixed_table  # noqa: E402  (bench/ is on sys.path)

DEFAULT_PG = os.environ.get("TDTP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def table_name(rows: int) -> str:
    return f"bench_parts_{rows}"


def ensure_table(pg: str, rows: int) -> None:
    ensure_mixed_table(pg, table_name(rows), rows)


def child(mode: str, pg: str, rows: int, compress: str) -> dict[str, object]:
    """Run one measurement in this (fresh) process and return its figures."""
    from tdtp.metrics import peak_rss_mb

    name = table_name(rows)
    if mode in ("copy", "psycopg"):
        from tdtp.sources.pg_copy import copy_out_chunks

        started = time.perf_counter()
        total = 0
        statement = f"COPY (SELECT * FROM {name}) TO STDOUT"
        with psycopg.connect(pg) as conn:
            if mode == "copy":  # libpq's PQgetCopyData in a loop: the fastest plain read from Python
                for chunk in copy_out_chunks(conn, statement):
                    total += len(chunk)
            else:  # psycopg's Copy iterator, one row per iteration
                with conn.cursor() as cur, cur.copy(statement) as copy:
                    for block in copy:
                        total += len(block)
        seconds = time.perf_counter() - started
        return {
            "mode": mode,
            "rows": rows,
            "seconds": seconds,
            "bytes": total,
            "first_part": None,
            "peak_rss_mb": peak_rss_mb(),
        }

    import tdtp.sources.postgres  # noqa: F401  (module import time is not export time)
    from tdtp.exporter import export_to_dir
    from tdtp.parts import PartOptions
    from tdtp.sources import open_source

    out = Path(tempfile.mkdtemp(prefix="tdtp-bench-"))
    try:
        started = time.perf_counter()
        with open_source(pg, table=name) as source:
            stats = export_to_dir(
                source,
                out,
                options=PartOptions(compress="" if compress == "none" else compress, batch=mode == "batch"),
            )
        seconds = time.perf_counter() - started
        first = (stats.first_part_seconds or 0.0) + (seconds - stats.seconds)
        return {
            "mode": mode,
            "rows": stats.rows,
            "seconds": seconds,
            "bytes": stats.bytes,
            "raw_bytes": stats.raw_bytes,
            "parts": stats.parts,
            "first_part": first,
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_child(mode: str, pg: str, rows: int, compress: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--pg", pg, "--rows", str(rows), "--compress", compress],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--pg", default=DEFAULT_PG)
    ap.add_argument("--compress", default="zstd", choices=("zstd", "none"))
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode; the median is reported")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.pg, args.rows[0], args.compress)))
        return 0

    results: dict[int, dict[str, dict[str, object]]] = {}
    for rows in args.rows:
        ensure_table(args.pg, rows)
        results[rows] = {}
        for mode in ("copy", "psycopg", "stream", "batch"):
            runs = sorted(
                (run_child(mode, args.pg, rows, args.compress) for _ in range(args.repeat)),
                key=lambda r: r["seconds"],
            )
            results[rows][mode] = runs[len(runs) // 2]

    print(
        f"TDTP export bench (compress={args.compress}, median of {args.repeat}, each run in a fresh process)"
    )
    print(
        f"{'rows':>9} {'mode':>6} {'first part':>11} {'total s':>8} {'rows/s':>11} {'MB/s':>7} "
        f"{'peak RSS MB':>11} {'parts':>6}"
    )
    for rows, modes in results.items():
        copy_bytes = modes["copy"]["bytes"]
        for mode, r in modes.items():
            seconds = float(r["seconds"])
            first = f"{r['first_part'] * 1000:.1f} ms" if r["first_part"] is not None else "-"
            # MB/s is of the table's COPY text size, so every mode is measured in the same bytes.
            print(
                f"{rows:>9} {mode:>6} {first:>11} {seconds:>8.3f} {rows / seconds:>11,.0f} "
                f"{copy_bytes / 1e6 / seconds:>7.1f} {r['peak_rss_mb']:>11.1f} {r.get('parts', '-'):>6}"
            )
    print()
    for rows, modes in results.items():
        s, b, c = modes["stream"], modes["batch"], modes["copy"]
        print(
            f"{rows:>9} rows: first part {b['first_part'] / s['first_part']:.1f}x sooner streaming than batch; "
            f"streaming export rate = {c['seconds'] / s['seconds'] * 100:.0f}% of the plain COPY read"
        )
    if len(results) >= 2:
        small, large = min(results), max(results)
        growth = results[large]["stream"]["peak_rss_mb"] - results[small]["stream"]["peak_rss_mb"]
        print(
            f"streaming peak RSS grows {growth:+.1f} MB from {small:,} to {large:,} rows "
            f"(batch: {results[large]['batch']['peak_rss_mb'] - results[small]['batch']['peak_rss_mb']:+.1f} MB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
