"""Where a ``tdtp copy``'s CPU goes, and what the engine's CPU measures buy.

Usage::

    .venv/bin/python bench/copy_cpu.py [--rows 1000000] [--repeat 3] [--rabbitmq URL] [--admin URL]

On ``bench/peers.py``'s table of ``--rows`` rows (database ``tdtp_bench``, created if
missing), medians of ``--repeat``, each line measured side by side in one run:

  copy       ``tdtp copy`` through a fresh RabbitMQ stream into ``tdtp_bench_target``:
             CPU seconds of each of its processes (the export, the lander, each worker),
             polled from /proc every 20 ms, and the wall time
  server     the PostgreSQL backend's CPU for the export's ``COPY (SELECT <TDTP text
             forms>) TO STDOUT`` against a plain ``COPY (SELECT *)``
  read       ``tdtp.sources.pg_copy.copy_out_chunks``: client CPU and socket waits with
             the receive low-water mark it sets (64 KiB) and without it (1 byte)
  parts      ``tdtp.parts.build_parts`` over the table's COPY blocks: CPU, parts and runs
             encoded twice, with runs sized for 95% of the budget and for all of it
  allocator  ``tdtp export`` to a spool in a child process: user and kernel CPU and peak
             RSS with ``tdtp.allocator.keep_freed_memory`` and without it

The ``--child`` modes run one measurement in a fresh interpreter (so its CPU and RSS
are its own).  On a shared machine compare lines of one run only.
"""

from __future__ import annotations

import argparse
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
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]
sys.path.insert(0, str(BENCH.parent))

from bench_tables import ensure_db  # noqa: E402
from peers_common import DEFAULT_ADMIN, DEFAULT_RABBITMQ, SOURCE_DB, TARGET_DB  # noqa: E402
from peers_db import ensure_source, source_table  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> tuple[str, float] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    return comm, (int(fields[11]) + int(fields[12])) / TICK


def _family(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                out += _family(int(child))
    except OSError:
        pass
    return out


def bench_copy(src: str, tgt: str, table: str, rabbitmq: str) -> dict[str, float]:
    """Per-process CPU of one ``tdtp copy`` (the last reading of each process)."""
    stream = f"cpu_{uuid.uuid4().hex[:8]}"
    target_table = f"cpu_{uuid.uuid4().hex[:8]}"
    cmd = [
        sys.executable, "-m", "tdtp.cli", "copy", "--source", src, "--table", table,
        "--via", f"{rabbitmq}/{stream}?queue_type=stream", "--target", tgt, "--target-table", target_table,
        "--quiet",
    ]  # fmt: skip
    seen: dict[int, tuple[str, float]] = {}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            for pid in _family(proc.pid):
                got = _cpu_of(pid)
                if got is not None:
                    seen[pid] = got
            time.sleep(0.02)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"tdtp copy failed ({proc.returncode})")
    finally:
        _drop(tgt, target_table, rabbitmq, stream)
    pids = sorted(seen)
    workers = [seen[p][1] for p in pids[2:]]  # the copy, its lander, then the lander's workers
    return {
        "wall": wall,
        "export": seen[pids[0]][1],
        "lander": seen[pids[1]][1] if len(pids) > 1 else 0.0,
        "workers": sum(workers),
        "per_worker": max(workers, default=0.0),
        "client": sum(cpu for _comm, cpu in seen.values()),
    }


def _drop(tgt: str, table: str, rabbitmq: str, stream: str) -> None:
    import psycopg

    from tdtp.brokers import open_broker

    with psycopg.connect(tgt, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    with open_broker(f"{rabbitmq}/{stream}?queue_type=stream") as log:
        log.delete()


def bench_server(src: str, table: str) -> dict[str, float]:
    """Backend CPU of the export's COPY statement and of a plain one."""
    import psycopg

    from tdtp.sources import open_source
    from tdtp.sources.pg_copy import copy_out_chunks

    with open_source(src, table=table) as source:
        tdtp_copy = source.copy_sql()
    plain = f"COPY (SELECT * FROM {table}) TO STDOUT WITH (FORMAT text, DELIMITER '|')"
    out = {}
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        for name, statement in (("tdtp_forms", tdtp_copy), ("plain", plain)):
            before = _cpu_of(pid)[1]  # type: ignore[index]
            for _chunk in copy_out_chunks(conn, statement):
                pass
            out[name] = _cpu_of(pid)[1] - before  # type: ignore[index]
    return out


def child_read(src: str, table: str, low_water: int) -> dict[str, float]:
    import select

    import psycopg

    import tdtp.sources.pg_copy as pg_copy

    waits = 0
    real_poll = select.poll

    class CountingPoll:
        def __init__(self) -> None:
            self._poll = real_poll()

        def register(self, *args: object) -> None:
            self._poll.register(*args)

        def poll(self, *args: object) -> list[tuple[int, int]]:
            nonlocal waits
            waits += 1
            return self._poll.poll(*args)

    pg_copy.select.poll = CountingPoll  # type: ignore[assignment]
    pg_copy._LOW_WATER_BYTES = low_water
    with psycopg.connect(src) as conn:
        started = time.process_time()
        for _chunk in pg_copy.copy_out_chunks(conn, f"COPY (SELECT * FROM {table}) TO STDOUT"):
            pass
        return {"cpu": time.process_time() - started, "waits": waits}


def child_parts(src: str, table: str, aim: float) -> dict[str, float]:
    import tdtp.parts as parts
    from tdtp.sources import open_source

    halved = 0
    real_halves = parts._halves

    def counting(run: object) -> object:
        nonlocal halved
        halved += 1
        return real_halves(run)  # type: ignore[arg-type]

    parts._halves = counting  # type: ignore[assignment]
    parts._SIZER_AIM = aim
    with open_source(src, table=table) as source:
        blocks = list(source.blocks())
        schema = source.schema
    started = time.process_time()
    made = [p for p in parts.build_parts(schema, blocks=iter(blocks), table="t", checked=True) if isinstance(p, parts.Part)]
    return {"cpu": time.process_time() - started, "parts": len(made), "encoded_twice": halved}


def child_allocator(src: str, table: str, keep: bool) -> dict[str, float]:
    import tdtp.allocator
    import tdtp.cli

    if not keep:
        tdtp.cli.keep_freed_memory = lambda: True  # type: ignore[assignment]
    spool = tempfile.mkdtemp(prefix="tdtp-bench-")
    try:
        with open(os.devnull, "w") as devnull:
            saved, sys.stdout = sys.stdout, devnull
            try:
                code = tdtp.cli.main(["export", "--source", src, "--table", table, "--to", f"spool:///{spool}/s", "--quiet"])
            finally:
                sys.stdout = saved
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"code": code, "user": usage.ru_utime, "sys": usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def _in_child(mode: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, *args], capture_output=True, text=True, check=True, timeout=600
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--admin", default=DEFAULT_ADMIN)
    ap.add_argument("--rabbitmq", default=DEFAULT_RABBITMQ)
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        mode, src, table, value = args.child
        fn = {"read": child_read, "parts": child_parts, "allocator": child_allocator}[mode]
        arg: object = {"read": int, "parts": float, "allocator": lambda v: v == "1"}[mode](value)
        print(json.dumps(fn(src, table, arg)))  # type: ignore[operator]
        return

    src = ensure_db(args.admin, SOURCE_DB)
    tgt = ensure_db(args.admin, TARGET_DB)
    ensure_source(src, args.rows)
    table = source_table(args.rows)
    per_m = 1_000_000 / args.rows
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.rows:,} rows; "
          f"median of {args.repeat}; CPU-s are per 1M rows")  # fmt: skip

    copy = _median([bench_copy(src, tgt, table, args.rabbitmq) for _ in range(args.repeat)])
    print(f"copy       wall {copy['wall']:.2f} s; client {copy['client'] * per_m:.2f} CPU-s: export "
          f"{copy['export'] * per_m:.2f}, lander {copy['lander'] * per_m:.2f}, workers {copy['workers'] * per_m:.2f} "
          f"(the busiest {copy['per_worker'] * per_m:.2f})")  # fmt: skip
    server = _median([bench_server(src, table) for _ in range(args.repeat)])
    print(f"server     COPY TO in TDTP text forms {server['tdtp_forms'] * per_m:.2f} CPU-s, "
          f"plain SELECT * {server['plain'] * per_m:.2f}")  # fmt: skip
    for low_water, label in ((64 * 1024, "64 KiB mark"), (1, "no mark   ")):
        r = _median([_in_child("read", src, table, str(low_water)) for _ in range(args.repeat)])
        print(f"read       {label}: {r['cpu'] * per_m:.3f} CPU-s, {r['waits'] * per_m:,.0f} waits")
    for aim in (0.95, 1.0):
        r = _median([_in_child("parts", src, table, str(aim)) for _ in range(args.repeat)])
        print(f"parts      runs sized for {aim:.0%} of the budget: {r['cpu'] * per_m:.3f} CPU-s, "
              f"{r['parts']:.0f} parts, {r['encoded_twice']:.0f} runs encoded twice")  # fmt: skip
    for keep, label in ((True, "with keep_freed_memory"), (False, "without it           ")):
        r = _median([_in_child("allocator", src, table, "1" if keep else "0") for _ in range(args.repeat)])
        print(f"allocator  tdtp export {label}: user {r['user'] * per_m:.2f}, kernel {r['sys'] * per_m:.2f} "
              f"CPU-s, peak RSS {r['rss_mb']:.1f} MB")  # fmt: skip
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
