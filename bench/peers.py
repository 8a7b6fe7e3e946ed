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
import importlib.util
import json
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_ADMIN = os.environ.get("TDTP_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_RABBITMQ = os.environ.get("TDTP_BENCH_RABBITMQ", "rabbitmq://guest:guest@127.0.0.1:5672")
SOURCE_DB = "tdtp_bench"
TARGET_DB = "tdtp_bench_target"
TARGET = "peers_dst"
DLT_DATASET = "peers_dlt"
COLUMNS = (
    "id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2) NOT NULL, "
    "note text NOT NULL, created_at timestamptz NOT NULL, flag boolean NOT NULL, "
    "score double precision NOT NULL, label text"
)
CHECK_SQL = "SELECT count(*), coalesce(sum(id), 0), count(label), coalesce(sum(amount), 0) FROM {}"

CONTENDERS = (
    "copy_psql",
    "copy_psycopg",
    "tdtp_spool_seq",
    "tdtp_spool_pipe",
    "tdtp_rabbitmq",
    "sling",
    "dlt",
)
LABELS = {
    "copy_psql": "COPY pipe: psql | psql",
    "copy_psycopg": "COPY pipe: psycopg",
    "tdtp_spool_seq": "tdtp spool, sequential",
    "tdtp_spool_pipe": "tdtp spool, pipelined",
    "tdtp_rabbitmq": "tdtp RabbitMQ stream, pipelined",
    "sling": "Sling",
    "dlt": "dlt",
}


class Skip(Exception):
    """The contender cannot run here (tool missing); the message says why."""


# ------------------------------------------------------------------------ small helpers


def db_url(admin: str, name: str) -> str:
    parts = urlsplit(admin)
    return urlunsplit(parts._replace(path="/" + name))


def ensure_db(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return db_url(admin, name)


def source_table(rows: int) -> str:
    return f"peers_src_{rows}"


def ensure_source(src: str, rows: int) -> None:
    """Create the source table unless it is there with ``rows`` rows (deterministic contents)."""
    name = source_table(rows)
    with psycopg.connect(src, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
        if found and conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == rows:
            return
        print(f"creating {name} in {SOURCE_DB} ...", file=sys.stderr, flush=True)
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} ({COLUMNS})")
        conn.execute(
            f"""INSERT INTO {name}
            SELECT g,
                   (g % 1000)::int,
                   ((g * 7919) % 1000000) / 100.0,
                   md5(g::text),
                   timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second',
                   g % 2 = 0,
                   g * 0.25::float8,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE 'item ' || (g % 97) END
            FROM generate_series(1::bigint, {int(rows)}::bigint) AS g"""
        )
        conn.execute(f"VACUUM ANALYZE {name}")


def table_check(url: str, table: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(CHECK_SQL.format(table)).fetchone()
    return tuple(Decimal(v) if isinstance(v, Decimal) else v for v in row)


def has_primary_key(url: str, table: str) -> bool:
    with psycopg.connect(url) as conn:
        return bool(
            conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p')",
                (table,),
            ).fetchone()[0]
        )


def copy_text_bytes(src: str, table: str) -> int:
    total = 0
    with psycopg.connect(src) as conn, conn.cursor() as cur, cur.copy(f"COPY {table} TO STDOUT") as copy:
        for data in copy:
            total += len(data)
    return total


def reset_target(tgt: str) -> None:
    """Drop whatever any contender left in the target database, then checkpoint."""
    with psycopg.connect(tgt, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
                (TARGET + "%",),
            ).fetchall()
        ]
        for name in names:
            conn.execute(f'DROP TABLE IF EXISTS public."{name}" CASCADE')
        for schema in ("tdtp", DLT_DATASET, DLT_DATASET + "_staging"):
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute("CHECKPOINT")  # every run starts without the previous run's dirty pages


ERROR_WORDS = re.compile(r"error|exception|failed|fatal|missing|denied|refused|not found|timed out", re.I)


def one_line(text: str | bytes | None, limit: int = 300) -> str:
    """The line of a tool's output that names the failure: the last one that sounds like an error."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    telling = [
        ln for ln in lines if ERROR_WORDS.search(ln) and not ln.upper().startswith(("WARNING", "WARN "))
    ]
    line = telling[-1] if telling else (lines[-1] if lines else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_proc(argv: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a process to its end; a failure raises with the last line of its output."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{Path(argv[0]).name} {argv[1] if len(argv) > 1 else ''}: timed out") from err
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(argv[0]).name} exit {done.returncode}: {one_line(done.stderr) or one_line(done.stdout)}"
        )
    return done.stdout


def stop(proc: subprocess.Popen[Any] | None) -> None:
    """End a child this benchmark started (by its own handle), if it is still running."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def tdtp_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tdtp.cli", *args]


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- contenders


@dataclass
class Ctx:
    src: str
    tgt: str
    rows: int
    table: str
    rabbitmq: str
    workers: int | None
    timeout: float
    tmp: Path
    dlt_backend: str
    copy_bytes: int = 0
    expected: tuple[Any, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)


def bench_copy_psql(ctx: Ctx) -> str:
    """Two psql processes, the first one's COPY text piped into the second's ``\\copy FROM``."""
    if shutil.which("psql") is None:
        raise Skip("psql not on PATH")
    base = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    out_cmd = base + ["-d", ctx.src, "-c", f"\\copy (SELECT * FROM {ctx.table}) TO STDOUT"]
    in_cmd = base + [
        "-d", ctx.tgt,
        "-c", f"CREATE TABLE {TARGET} ({COLUMNS})",
        "-c", f"\\copy {TARGET} FROM pstdin",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as err_out, tempfile.TemporaryFile() as err_in:
        reader = subprocess.Popen(out_cmd, stdout=subprocess.PIPE, stderr=err_out)
        writer = None
        try:
            writer = subprocess.Popen(in_cmd, stdin=reader.stdout, stdout=subprocess.DEVNULL, stderr=err_in)
            assert reader.stdout is not None
            reader.stdout.close()  # the writer holds the pipe now; the reader sees SIGPIPE if it dies
            writer.wait(ctx.timeout)
            reader.wait(ctx.timeout)
        finally:
            stop(writer)
            stop(reader)
        for proc, err in ((writer, err_in), (reader, err_out)):  # the writer's error is the cause
            if proc is not None and proc.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"psql exit {proc.returncode}: {one_line(err.read())}")
    return TARGET


def bench_copy_psycopg(ctx: Ctx) -> str:
    """COPY OUT on one connection (a reader thread joins rows into ~1 MB chunks), COPY IN on another."""
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
    halt = threading.Event()

    def put(item: bytes | BaseException | None) -> bool:
        """Hand an item to the writer; False once the writer has given up."""
        while not halt.is_set():
            with contextlib.suppress(queue.Full):
                chunks.put(item, timeout=0.2)
                return True
        return False

    def reader() -> None:
        try:
            with (
                psycopg.connect(ctx.src) as conn,
                conn.cursor() as cur,
                cur.copy(f"COPY {ctx.table} TO STDOUT") as copy,
            ):
                batch: list[Any] = []
                size = 0
                for data in copy:
                    batch.append(data)
                    size += len(data)
                    if size >= 1 << 20:
                        if not put(b"".join(batch)):
                            return
                        batch, size = [], 0
                if batch:
                    put(b"".join(batch))
            put(None)
        except BaseException as err:  # handed to the writer, which raises it
            put(err)

    thread = threading.Thread(target=reader, name="copy-out", daemon=True)
    thread.start()
    try:
        with psycopg.connect(ctx.tgt) as conn:
            conn.execute(f"CREATE TABLE {TARGET} ({COLUMNS})")
            with conn.cursor() as cur, cur.copy(f"COPY {TARGET} FROM STDIN") as copy:
                while True:
                    item = chunks.get(timeout=ctx.timeout)
                    if item is None:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    copy.write(item)
    finally:
        halt.set()  # a reader still running stops at its next chunk
        thread.join(10)
    return TARGET


def _spool_url(ctx: Ctx) -> tuple[str, Path]:
    directory = Path(tempfile.mkdtemp(prefix="spool-", dir=ctx.tmp))
    return f"spool:///{directory}/peers", directory  # spool:////abs/DIR/STREAM


def _export_cmd(ctx: Ctx, url: str) -> list[str]:
    return tdtp_cmd("export", "--source", ctx.src, "--table", ctx.table, "--to", url, "--quiet")


def bench_tdtp_spool_seq(ctx: Ctx) -> str:
    url, directory = _spool_url(ctx)
    try:
        run_proc(_export_cmd(ctx, url), timeout=ctx.timeout, env=python_env())
        workers = ["--workers", str(ctx.workers)] if ctx.workers else []
        out = run_proc(
            tdtp_cmd(
                "import", "--from", url, "--target", ctx.tgt, "--table", TARGET, "--from-seq", "0", "--quiet",
                *workers,
            ),
            timeout=ctx.timeout,
            env=python_env(),
        )  # fmt: skip
        stats = json.loads(out.strip().splitlines()[-1])
        if not stats.get("finalized"):
            raise RuntimeError(f"import ended without publishing: exports {stats.get('exports')}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return TARGET


def _pipelined(ctx: Ctx, url: str) -> None:
    """The importer child follows ``url`` from seq 0 while ``tdtp export`` publishes into it."""
    importer_cmd = [
        sys.executable, str(Path(__file__).resolve()), "--child", "import",
        "--broker", url, "--target", ctx.tgt, "--idle", str(min(ctx.timeout, 120.0)),
    ] + (["--workers", str(ctx.workers)] if ctx.workers else [])  # fmt: skip
    importer = exporter = None
    with tempfile.TemporaryFile() as err_imp, tempfile.TemporaryFile() as err_exp:
        try:
            importer = subprocess.Popen(
                importer_cmd, stdout=subprocess.PIPE, stderr=err_imp, env=python_env(), cwd=ROOT
            )
            exporter = subprocess.Popen(
                _export_cmd(ctx, url),
                stdout=subprocess.DEVNULL,
                stderr=err_exp,
                env=python_env(),
                cwd=ROOT,
            )
            if exporter.wait(ctx.timeout) != 0:
                err_exp.seek(0)
                raise RuntimeError(f"tdtp export exit {exporter.returncode}: {one_line(err_exp.read())}")
            out, _ = importer.communicate(timeout=ctx.timeout)
            if importer.returncode != 0:
                err_imp.seek(0)
                raise RuntimeError(f"importer exit {importer.returncode}: {one_line(err_imp.read())}")
        finally:
            stop(exporter)
            stop(importer)
    stats = json.loads(out.decode().strip().splitlines()[-1])
    if not stats.get("finalized"):
        raise RuntimeError(f"import ended without publishing: exports {stats.get('exports')}")


def bench_tdtp_spool_pipe(ctx: Ctx) -> str:
    url, directory = _spool_url(ctx)
    try:
        _pipelined(ctx, url)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return TARGET


def bench_tdtp_rabbitmq(ctx: Ctx) -> str:
    from tdtp.brokers import open_broker

    base = ctx.rabbitmq.rstrip("/")
    url = f"{base}/peers-{uuid.uuid4().hex[:10]}?queue_type=stream"
    try:
        _pipelined(ctx, url)
    finally:
        try:
            with open_broker(url) as log:
                log.delete()  # the stream and its dead-letter queue
        except Exception as err:  # clean-up failure is reported, not fatal
            print(
                f"  warning: could not delete {url.partition('@')[2]}: {one_line(str(err))}", file=sys.stderr
            )
    return TARGET


def find_sling() -> str:
    """The Sling Go binary: $SLING_BINARY, PyPI's platform package, or a binary (not a wrapper) on PATH.

    The ``sling`` Python wrapper is not run: from 1.4.11 on it downloads the binary from
    GitHub on first use, and 1.4.10.post2 (the pinned one) only adds a Python start.
    """
    given = os.environ.get("SLING_BINARY")
    if given and os.access(given, os.X_OK):
        return given
    for module in ("sling_linux_amd64", "sling_linux_arm64", "sling_mac_arm64", "sling_mac_amd64"):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            for path in sorted((Path(folder) / "bin").glob("sling-*")):
                if os.access(path, os.X_OK) and path.suffix not in (".md", ".txt"):
                    return str(path)
    found = shutil.which("sling")
    if found:
        with open(found, "rb") as fh:
            if fh.read(2) != b"#!":
                return found
    raise Skip("no Sling binary: install the bench extra (sling==1.4.10.post2 brings sling-linux-amd64)")


def sling_version(binary: str, home: Path) -> str:
    env = dict(os.environ, SLING_HOME_DIR=str(home))
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=60, env=env
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return one_line(out).replace("Version:", "").strip() or "?"


def _sling_url(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "sslmode=disable"


def bench_sling(ctx: Ctx) -> str:
    binary = find_sling()
    home = Path(tempfile.mkdtemp(prefix="sling-", dir=ctx.tmp))
    env = dict(os.environ)
    env.update(
        PG_SRC=_sling_url(ctx.src),
        PG_TGT=_sling_url(ctx.tgt),
        SLING_HOME_DIR=str(home),
        SLING_TEMP_DIR=str(home),
    )
    try:
        run_proc(
            [
                binary, "run", "--src-conn", "PG_SRC", "--src-stream", f"public.{ctx.table}",
                "--tgt-conn", "PG_TGT", "--tgt-object", f"public.{TARGET}", "--mode", "full-refresh",
            ],
            timeout=ctx.timeout,
            env=env,
        )  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return TARGET


def dlt_backend(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if importlib.util.find_spec("connectorx") and importlib.util.find_spec("pyarrow"):
        return "connectorx"  # dlt's docs: "typically the fastest"
    if importlib.util.find_spec("pyarrow"):
        return "pyarrow"
    return "sqlalchemy"


def bench_dlt(ctx: Ctx) -> str:
    if importlib.util.find_spec("dlt") is None:
        raise Skip("dlt not installed: install the bench extra")
    work = Path(tempfile.mkdtemp(prefix="dlt-", dir=ctx.tmp))
    try:
        out = run_proc(
            [
                sys.executable, str(Path(__file__).resolve()), "--child", "dlt", "--source", ctx.src,
                "--target", ctx.tgt, "--table", ctx.table, "--dlt-backend", ctx.dlt_backend,
                "--workdir", str(work),
            ],
            timeout=ctx.timeout,
            env=python_env(),
        )  # fmt: skip
        inner = json.loads(out.strip().splitlines()[-1])
        ctx.notes.setdefault("note:dlt", "")
        ctx.notes["note:dlt"] += f" {inner['seconds']:.2f}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return f"{DLT_DATASET}.{TARGET}"


BENCHES: dict[str, Callable[[Ctx], str]] = {
    "copy_psql": bench_copy_psql,
    "copy_psycopg": bench_copy_psycopg,
    "tdtp_spool_seq": bench_tdtp_spool_seq,
    "tdtp_spool_pipe": bench_tdtp_spool_pipe,
    "tdtp_rabbitmq": bench_tdtp_rabbitmq,
    "sling": bench_sling,
    "dlt": bench_dlt,
}


# ------------------------------------------------------------------------------ children


def child_import(args: argparse.Namespace) -> dict[str, Any]:
    from tdtp.brokers import UntilSummary, open_broker
    from tdtp.importer import ImportOptions, ParallelImporter

    options = ImportOptions(mode="replace", table=TARGET)
    if args.workers:
        options.workers = args.workers
    with ParallelImporter(args.target, options) as importer, open_broker(args.broker) as log:
        stats = importer.import_log(UntilSummary(log), from_seq=0, follow=True, timeout=args.idle)
    return stats.as_dict()


def child_dlt(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DLT_DATA_DIR", os.path.join(args.workdir, "data"))
    # dlt's performance guide: uncompressed intermediate files save the gzip/gunzip round trip
    os.environ.setdefault("DATA_WRITER__DISABLE_COMPRESSION", "true")
    import dlt
    from dlt.sources.sql_database import sql_table

    backend = dlt_backend(args.dlt_backend)
    started = time.perf_counter()
    resource = sql_table(
        credentials=args.source,
        table=args.table,
        schema="public",
        backend=backend,
        chunk_size=100_000,
        reflection_level="full_with_precision",
    )
    target = urlsplit(args.target)
    if not target.password:  # dlt insists on a password; a trust/peer-authenticated server ignores it
        user = target.username or "postgres"
        host = target.netloc.rpartition("@")[2]
        args.target = urlunsplit(target._replace(netloc=f"{user}:unused@{host}"))
    pipeline = dlt.pipeline(
        pipeline_name=f"peers_{uuid.uuid4().hex[:8]}",
        pipelines_dir=os.path.join(args.workdir, "pipelines"),
        destination=dlt.destinations.postgres(credentials=args.target),
        dataset_name=DLT_DATASET,
    )
    # arrow batches -> csv files -> COPY: dlt's documented fast path into postgres
    info = pipeline.run(resource, table_name=TARGET, write_disposition="replace", loader_file_format="csv")
    info.raise_on_failed_jobs()
    return {"backend": backend, "seconds": round(time.perf_counter() - started, 3), "dlt": dlt.__version__}


def run_child(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="peers.py --child")
    p.add_argument("--child", choices=("import", "dlt"), required=True)
    p.add_argument("--broker")
    p.add_argument("--source")
    p.add_argument("--target", required=True)
    p.add_argument("--table")
    p.add_argument("--workers", type=int)
    p.add_argument("--idle", type=float, default=120.0)
    p.add_argument("--dlt-backend", default="auto")
    p.add_argument("--workdir")
    args = p.parse_args(argv)
    result = child_import(args) if args.child == "import" else child_dlt(args)
    print(json.dumps(result, default=str), flush=True)
    return 0


# ------------------------------------------------------------------------------- report


def fmt_ratio(seconds: float | None, ref: float | None) -> str:
    if seconds is None or not ref:
        return "-"
    return f"{seconds / ref:.2f}x"


def report(ctx: Ctx, order: list[str], times: dict[str, list[float]], failed: dict[str, str]) -> None:
    med = {k: statistics.median(v) for k, v in times.items() if v}
    pipes = [med[k] for k in ("copy_psql", "copy_psycopg") if k in med]
    anchor = min(pipes) if pipes else None
    anchor_name = next((k for k in ("copy_psql", "copy_psycopg") if k in med and med[k] == anchor), None)
    sling, dlt = med.get("sling"), med.get("dlt")
    mb = f"{ctx.copy_bytes / 1e6:.1f}"
    print()
    print(
        f"end-to-end copy of {ctx.rows:,} rows ({mb} MB as COPY text), PostgreSQL -> PostgreSQL; "
        f"median of {max((len(v) for v in times.values()), default=0)} run(s); "
        f"ratios = seconds / reference seconds (anchor: {LABELS.get(anchor_name or '', '-')})"
    )
    head = ("contender", "seconds", "runs", "rows/s", "MB/s", "x copy", "x sling", "x dlt", "pk")
    rows: list[tuple[str, ...]] = []
    for key in order:
        label = LABELS[key]
        if key in med:
            s = med[key]
            rows.append(
                (
                    label,
                    f"{s:.2f}",
                    " ".join(f"{t:.2f}" for t in times[key]),
                    f"{ctx.rows / s:,.0f}",
                    f"{ctx.copy_bytes / 1e6 / s:.1f}",
                    fmt_ratio(s, anchor),
                    fmt_ratio(s, sling),
                    fmt_ratio(s, dlt),
                    ctx.notes.get(f"pk:{key}", "?"),
                )
            )
    widths = [
        max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(len(head))
    ]
    line = "  ".join(h.ljust(widths[i]) if i in (0, 2) else h.rjust(widths[i]) for i, h in enumerate(head))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(widths[i]) if i in (0, 2) else c.rjust(widths[i]) for i, c in enumerate(r)))
    for key in order:
        if key in failed:
            print(f"{LABELS[key]}: {failed[key]}")
    for key, note in sorted(ctx.notes.items()):
        if key.startswith("note:"):
            print(f"{LABELS[key[5:]]}: seconds inside its process, Python and imports excluded:{note}")


# --------------------------------------------------------------------------------- main


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
