"""``tdtp copy``: export and import pipelined in one command, one JSON result.

The export runs in this process; a lander process (:mod:`tdtp.landing`, the same
``tdtp.importer.one_export`` lander Dagster's copy runs use) gets ready while the
source opens and lands the export's parts from the broker as they are published,
from the first part to the summary, and publishes the export in the target.  The
broker is the buffer between the two: the export never waits for the import, and
when the landing fails every part is still in the broker for a ``tdtp import`` to
finish (the ledger skips what landed).

``--via`` defaults to a spool in a temporary directory, removed when the copy
succeeds or when the export itself failed (no summary: nothing could finish from
it).  When the export completed but the import did not, the spool is kept and the
error line says the ``tdtp import`` that finishes the copy; a second ``tdtp copy``
also ends with the target equal to the source (a new export; replace mode
replaces, and an unpublished export lands nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from tdtp.cli_args import (
    EXIT_FAILED,
    EXIT_OK,
    add_part_options,
    add_schema_option,
    add_source_options,
    columns_of,
    int_at_least,
    is_broker_url,
    refuse_reserved_table,
)
from tdtp.packet import TdtpError

#: Stream name of the temporary spool.
_TEMP_STREAM = "copy"
#: How long the export waits for its lander to be reading before it publishes anyway
#: (a lander that is late only lands from the broker's backlog).
_READY_WAIT_SECONDS = 10.0


def add_copy_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "copy",
        help="copy a table or query into a database: export and import pipelined",
        description=(
            "Export rows as TDTP parts into a broker and import them into the target while the export runs; "
            "ends when the export is published in the target and prints one JSON object with both sides' "
            "figures. Exit codes as tdtp import: 0 published, 1 not published (the reason on stderr)."
        ),
    )
    add_source_options(p)
    p.add_argument(
        "--via",
        help="broker the parts travel through: spool:///DIR/STREAM, rabbitmq://..., kafka://... "
        "(default: a temporary spool, removed afterwards)",
    )
    p.add_argument("--target", required=True, help="sqlite:///x.db or postgresql://...")
    p.add_argument("--target-table", help="target table (default: the source table's name, or --name)")
    p.add_argument("--mode", choices=("replace", "upsert", "append"), default="replace")
    p.add_argument("--workers", type=int_at_least(1), help="import workers (default: CPU count)")
    add_schema_option(p)
    p.add_argument(
        "--require-hashes", action="store_true", help="write v1.4 hashes and refuse parts without them"
    )
    add_part_options(p)
    p.add_argument("--name", help="table name written into the parts (default: the source's)")
    p.add_argument("--export-id", help="export id (MessageID base); generated when absent")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _check(args: argparse.Namespace) -> None:
    """Everything that can be refused before a connection opens."""
    from tdtp.importer import ImportOptions
    from tdtp.urls import POSTGRESQL, SQLITE, parse_url

    if parse_url(args.target).scheme not in (POSTGRESQL, SQLITE):
        raise TdtpError("a copy lands in sqlite:// or postgresql://", where="--target")
    if args.via is not None and not is_broker_url(args.via):
        raise TdtpError("give a broker URL: spool:///DIR/STREAM, rabbitmq://..., kafka://...", where="--via")
    refuse_reserved_table(args.target, args.target_table, "--target-table")
    ImportOptions(mode=args.mode, table=args.target_table, schema=args.schema).validate()


def _preload(*urls: str) -> None:
    """Import the drivers both sides use before the lander forks: once, not in each process."""
    import importlib

    from tdtp.brokers import SCHEMES
    from tdtp.urls import POSTGRESQL, scheme_of

    for url in urls:
        scheme = scheme_of(url)
        if scheme == POSTGRESQL:
            importlib.import_module("psycopg")
        elif scheme in SCHEMES:
            importlib.import_module(SCHEMES[scheme].partition(":")[0])


def _await_lander(lander: Any) -> None:
    """Before the first part is published: wait until the lander reads.

    Publishing to a reader already there lets the import start with the first part.
    A lander that could not even start reading (the target refused a connection, say)
    stops the export here, with nothing published: nothing would land.
    """
    if not lander.wait_ready(_READY_WAIT_SECONDS) and lander.failed_early:
        why = " ".join(str(lander.finish().error).removeprefix("TdtpError: ").split())
        raise TdtpError(f"the import cannot start: {why}", where="--target")


def cmd_copy(args: argparse.Namespace) -> int:
    from tdtp.brokers import open_broker, redact_url
    from tdtp.codec import export_message_id
    from tdtp.exporter import export_to_log
    from tdtp.landing import LanderProcess
    from tdtp.metrics import Progress, map_big_buffers
    from tdtp.parts import PartOptions
    from tdtp.sources import open_source

    started = time.perf_counter()
    _check(args)
    map_big_buffers()  # as tdtp export: part buffers mapped whole (docs: README, memory)
    options = PartOptions(
        part_bytes=args.part_bytes,
        part_raw_bytes=args.part_raw_bytes,
        compress="" if args.compress == "none" else args.compress,
        level=args.level,
        hashes=args.hashes or args.require_hashes,
    )
    export_id = args.export_id or export_message_id("REF")
    temp_dir = None if args.via else tempfile.mkdtemp(prefix="tdtp-copy-")
    via = args.via or f"spool:///{temp_dir}/{_TEMP_STREAM}"
    lander = LanderProcess(
        {
            "target_url": args.target,
            "broker_url": via,
            "table": args.target_table,
            "mode": args.mode,
            "workers": args.workers or os.cpu_count() or 1,
            "export_id": export_id,
            "require_hashes": args.require_hashes,
            "schema": args.schema,
        },
        die_with_parent=True,  # no thread runs here: a killed copy takes its landing with it
        fork=True,  # nor any connection yet: a fork has this process's modules (tdtp/landing.py)
    )
    _preload(args.source, args.target, via)
    lander.start()  # connects while the source opens
    exported = False
    try:
        with (
            open_source(
                args.source, table=args.table, query=args.query, columns=columns_of(args), where=args.where
            ) as source,
            open_broker(via) as log,
        ):
            # Every part of this export comes after the stream's end as it is now: the lander
            # reads from there (stepping over other writers' messages).  The source is read
            # while it gets ready; the first part waits for it.
            lander.begin(log.seq_floor())
            progress = Progress("copy", quiet=args.quiet)
            if not args.quiet:
                progress.set_total(source.estimated_rows())
            export = export_to_log(
                source,
                log,
                options=options,
                export_id=export_id,
                table=args.name,
                progress=progress,
                before_first_publish=lambda: _await_lander(lander),
            )
        exported = True
        landing = lander.finish()
    except BaseException:
        lander.abandon()  # the source, the broker or the export failed: stop the landing too
        raise
    finally:
        if temp_dir is not None and not exported:
            shutil.rmtree(temp_dir, ignore_errors=True)
    published = landing.error is None and landing.state == "finalized" and not landing.stats.dead_letters
    if temp_dir is not None and published:
        shutil.rmtree(temp_dir, ignore_errors=True)
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "export_id": export_id,
        "state": landing.state or "not landed",
        "rows": export.rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(export.rows / seconds, 1) if seconds > 0 else 0.0,
        "via": "temporary spool" if temp_dir is not None and published else redact_url(via),
        "export": export.as_dict(),
        "import": landing.stats.as_dict(),
    }
    if landing.error is not None:
        result["error"] = landing.error
    if not args.quiet:
        print(
            f"copy: {export.rows:,} rows in {export.parts} parts, {landing.state or 'not landed'} "
            f"in {seconds:.2f} s ({result['rows_per_second']:,.0f} rows/s)",
            file=sys.stderr,
        )
    print(json.dumps(result, default=str))
    if published:
        return EXIT_OK
    _explain(args, landing, via, export_id)
    return EXIT_FAILED


def _explain(args: argparse.Namespace, landing: Any, via: str, export_id: str) -> None:
    """Why the copy is not published, and the command that finishes it from the broker."""
    from tdtp.brokers import redact_url

    why = landing.error or landing.stats.exports.get(export_id) or landing.state or "not landed"
    print(f"tdtp copy: export {export_id} is not published: {why}", file=sys.stderr)
    for error in landing.stats.errors[:20]:
        print(f"tdtp copy: {error}", file=sys.stderr)
    table = f" --table {args.target_table}" if args.target_table else ""
    print(
        f"tdtp copy: its parts are kept in {redact_url(via)}; once the cause is fixed, finish with: "
        f"tdtp import --from {redact_url(via)} --target {redact_url(args.target)}{table} --mode {args.mode}"
        f"{'' if args.schema == 'evolve' else ' --schema ' + args.schema}"
        " (or run tdtp copy again)",
        file=sys.stderr,
    )
