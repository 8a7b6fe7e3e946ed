"""What ``bench/peers.py --child`` runs in its own process: the tdtp importer following a broker,
and the dlt pipeline."""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from peers_common import DLT_DATASET, TARGET
from peers_contenders import dlt_backend


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
