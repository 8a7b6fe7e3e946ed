"""The contenders of ``bench/peers.py``: each copies the source table into the target database
and returns the table it landed in; ``BENCHES`` maps contender keys to them."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from peers_common import COLUMNS, DLT_DATASET, PEERS_SCRIPT, ROOT, TARGET, Ctx, Skip
from peers_procs import one_line, python_env, run_proc, stop, tdtp_cmd


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
        sys.executable, str(PEERS_SCRIPT), "--child", "import",
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
                sys.executable, str(PEERS_SCRIPT), "--child", "dlt", "--source", ctx.src,
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
