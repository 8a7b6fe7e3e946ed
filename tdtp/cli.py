"""The ``tdtp`` command: export, import, copy, inspect, tail, status, replay, reset.

Every failure the engine can name (bad input, bad configuration, a dead broker)
becomes one line on stderr and a non-zero exit, never a traceback; progress goes to
stderr too, so stdout carries only results (JSON lines for ``inspect`` and ``tail``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

# Shared with subcommands in modules of their own (tdtp/copy.py); re-exported for callers of tdtp.cli.
from tdtp.allocator import keep_freed_memory
from tdtp.cli_args import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_part_options,
    add_schema_option,
    add_source_options,
    columns_of,
    int_at_least,
    is_broker_url,
    refuse_reserved_table,
)
from tdtp.copy import add_copy_parser, cmd_copy
from tdtp.packet import TdtpError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "is_broker_url", "main", "refuse_reserved_table"]


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a table or query as TDTP parts to a directory or a broker",
        description=(
            "Export rows as TDTP parts. Stream mode (default for brokers) publishes each part as soon as "
            "it is full with TotalParts=0 and ends with a summary; batch mode (default for directories) "
            "writes TotalParts into every part. Use batch mode when the consumer is the Go TDTP tool: "
            "its reader needs TotalParts."
        ),
    )
    add_source_options(p)
    p.add_argument(
        "--to", required=True, help="output directory, or spool:///DIR/STREAM, rabbitmq://..., kafka://..."
    )
    p.add_argument(
        "--mode", choices=("batch", "stream"), help="default: batch for a directory, stream for a broker"
    )
    add_part_options(p)
    p.add_argument("--name", help="table name written into the parts (default: the source's)")
    p.add_argument("--export-id", help="export id (MessageID base); generated when absent")
    p.add_argument(
        "--overwrite", action="store_true", help="replace part files an earlier export left in the directory"
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import TDTP parts from files, a directory or a broker into a database")
    p.add_argument(
        "--from", dest="sources", required=True, nargs="+", help="directories, part files or one broker URL"
    )
    p.add_argument("--target", required=True, help="sqlite:///x.db or postgresql://...")
    p.add_argument("--table", help="target table (default: the parts' TableName)")
    p.add_argument("--mode", choices=("replace", "upsert", "append"), default="replace")
    p.add_argument(
        "--publish",
        choices=("auto", "swap", "copy"),
        default="auto",
        help="PostgreSQL replace: load in parallel and swap the table/partition in (auto: where safe), or copy",
    )
    p.add_argument("--workers", type=int_at_least(1), help="parallel workers (default: CPU count)")
    add_schema_option(p)
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-seq", type=int, help="replay from this sequence number (inclusive)")
    start.add_argument("--after-seq", type=int, help="replay after this sequence number")
    start.add_argument("--online", action="store_true", help="only parts published from now on")
    p.add_argument("--follow", action="store_true", help="keep importing live parts until interrupted")
    p.add_argument("--timeout", type=float, help="with --follow: stop after this many idle seconds")
    p.add_argument(
        "--reland",
        action="store_true",
        help="append/upsert: land again an export whose target table was dropped or emptied since it was "
        "published (replace mode does this by itself)",
    )
    p.add_argument(
        "--abandon-after",
        type=float,
        metavar="SECONDS",
        default=86400.0,
        help="give up an export without a summary once no part of it arrived for this long (default: a day)",
    )
    p.add_argument(
        "--publish-wait",
        type=float,
        metavar="SECONDS",
        default=300.0,
        help="wait this long for another import publishing the same export (default: 300)",
    )
    p.add_argument(
        "--require-hashes",
        action="store_true",
        help="refuse parts without TDTP v1.4 XXH3 hashes (they catch corruption, not a forger: XXH3 is not keyed)",
    )
    p.add_argument("--quiet", action="store_true")


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="print one JSON line per part file: header, schema, rows, compression, hashes"
    )
    p.add_argument("files", nargs="+")


def _add_tail(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tail", help="print part headers from a broker as they arrive")
    p.add_argument("url")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-seq", type=int, help="start with history from this sequence number")
    start.add_argument("--after-seq", type=int)
    p.add_argument("--timeout", type=float, help="stop after this many idle seconds")
    p.add_argument("--no-follow", action="store_true", help="stop once caught up")


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="import progress of one export in a target database")
    p.add_argument("export_id")
    p.add_argument("--target", required=True)
    p.add_argument("--table", help="the target table (needed when the export was imported into several)")


def _add_reset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reset", help="forget what landed of an export in a table so the next import lands it from scratch"
    )
    p.add_argument("export_id")
    p.add_argument("--target", required=True)
    p.add_argument("--table", help="the target table (needed when the export was imported into several)")
    p.add_argument("--force", action="store_true", help="also a published append/upsert export (its rows are gone)")


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="retry dead-lettered parts kept in a target database")
    p.add_argument("--target", required=True)
    p.add_argument("--export-id", help="only this export's dead letters")
    p.add_argument("--workers", type=int_at_least(1))
    add_schema_option(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdtp",
        description="Stream tables as TDTP parts through files or brokers and import them in parallel.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_export, _add_import, add_copy_parser, _add_inspect, _add_tail, _add_status, _add_replay, _add_reset):
        add(sub)
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    from tdtp.exporter import export_to_dir, export_to_log
    from tdtp.metrics import Progress, map_big_buffers
    from tdtp.parts import PartOptions
    from tdtp.sources import open_source

    map_big_buffers()  # a part's buffers are mapped whole, not left to fragment the heap
    to_broker = is_broker_url(args.to)
    mode = args.mode or ("stream" if to_broker else "batch")
    if to_broker and mode == "batch":
        raise TdtpError("batch mode needs a directory: a broker export is a stream", where="--mode")
    options = PartOptions(
        part_bytes=args.part_bytes,
        part_raw_bytes=args.part_raw_bytes,
        compress="" if args.compress == "none" else args.compress,
        level=args.level,
        hashes=args.hashes,
        batch=mode == "batch",
    )
    columns = columns_of(args)
    refuse_reserved_table(args.source, args.table, "--table")
    progress = Progress("export", quiet=args.quiet)
    with open_source(
        args.source, table=args.table, query=args.query, columns=columns, where=args.where
    ) as source:
        if not args.quiet:
            progress.set_total(source.estimated_rows())  # a bar with % and ETA when it is cheap to know
        if to_broker:
            from tdtp.brokers import open_broker

            with open_broker(args.to) as log:
                stats = export_to_log(
                    source, log, options=options, export_id=args.export_id, table=args.name, progress=progress
                )
        else:
            stats = export_to_dir(
                source,
                args.to,
                options=options,
                export_id=args.export_id,
                base_name=f"{args.name}.tdtp.xml" if args.name else None,
                table=args.name,
                overwrite=args.overwrite,
                progress=progress,
            )
    print(json.dumps(stats.as_dict(), default=str))
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from tdtp.importer import ImportOptions, ParallelImporter
    from tdtp.metrics import map_big_buffers

    map_big_buffers()  # part-sized buffers mapped whole, not left fragmenting the heap (workers inherit it)

    refuse_reserved_table(args.target, args.table, "--table")
    options = ImportOptions(
        mode=args.mode,
        table=args.table,
        progress=not args.quiet,
        publish=args.publish,
        reland=args.reland,
        abandon_after_seconds=args.abandon_after,
        publish_wait_seconds=args.publish_wait,
        require_hashes=args.require_hashes,
        schema=args.schema,
    )
    if args.workers:
        options.workers = args.workers
    importer = ParallelImporter(args.target, options)
    brokers = [s for s in args.sources if is_broker_url(s)]
    if brokers:
        if len(args.sources) != 1:
            raise TdtpError("give one broker URL, or only files and directories", where="--from")
        from tdtp.brokers import open_broker

        # Without --follow the stream must already exist: a typo should not import "nothing".
        with open_broker(brokers[0], create=args.follow or args.online) as log:
            try:
                stats = importer.import_log(
                    log,
                    from_seq=args.from_seq,
                    after_seq=args.after_seq,
                    online=args.online,
                    follow=args.follow,
                    timeout=args.timeout,
                )
            except KeyboardInterrupt:
                print("interrupted: stopped cleanly; rerun to continue", file=sys.stderr)
                return EXIT_FAILED
    else:
        if args.follow or args.online or args.from_seq is not None or args.after_seq is not None:
            raise TdtpError("--follow/--online/--from-seq/--after-seq need a broker URL", where="--from")
        paths = [Path(s) for s in args.sources]
        _check_part_files(paths)
        stats = importer.import_files(paths)
    if not args.quiet:
        print(stats.summary_line(), file=sys.stderr)
    print(json.dumps(stats.as_dict(), default=str))
    unfinished = {
        export_id: state
        for export_id, state in stats.exports.items()
        if not state.startswith(("finalized", "superseded", "abandoned"))
    }
    for export_id, state in unfinished.items():
        print(f"tdtp import: export {export_id} is not published: {state}", file=sys.stderr)
    # Parts that failed before their export could be named (e.g. not even well-formed XML).
    for error in [e for e in stats.errors if not any(e in state for state in unfinished.values())][:20]:
        print(f"tdtp import: {error}", file=sys.stderr)
    return EXIT_FAILED if stats.dead_letters or unfinished else EXIT_OK


def _check_part_files(paths: list[Path]) -> None:
    """Refuse, before anything is written, inputs that are not TDTP parts at all.

    A part whose header reads but whose rows are broken is the importer's business (it
    becomes a dead letter that can be replayed); a file without even a TDTP header has
    no export to belong to, so it would be a dead letter nobody can replay.
    """
    from tdtp.codec import peek_header
    from tdtp.packet import is_summary_body

    for path in paths:
        if path.is_dir():
            if not any(path.glob("*.xml")):
                raise TdtpError("no part files (*.xml) in this directory", where=str(path))
            continue
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
        if is_summary_body(head):
            continue
        header = peek_header(head, where=str(path))
        if not header.message_id:
            raise TdtpError("not a TDTP part: the header has no MessageID", where=str(path))


def inspect_file(path: Path) -> dict[str, object]:
    """Header, schema, row count, compression and hash status of one part file."""
    from tdtp.codec import decode_packet
    from tdtp.packet import Summary, is_summary_body

    data = path.read_bytes()
    if is_summary_body(data):
        return {"file": str(path), **json.loads(Summary.from_json(data).to_json()), "kind": "summary"}
    packet = decode_packet(data, where=str(path))
    h = packet.header
    return {
        "file": str(path),
        "kind": "data",
        "version": packet.version,
        "type": h.type,
        "table": h.table_name,
        "message_id": h.message_id,
        "export_id": h.batch_id,
        "part": h.part_number,
        "total_parts": h.total_parts,
        "records_in_part": h.records_in_part,
        "timestamp": h.timestamp,
        "rows": len(packet.rows),
        "compression": packet.compression or "none",
        "compact": packet.compact,
        "hashes": packet.hash_status,
        "bytes": len(data),
        "schema": [
            {
                k: v
                for k, v in (("name", f.name), ("type", f.type), ("key", f.key), ("subtype", f.subtype))
                if v
            }
            for f in packet.schema.fields
        ],
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.files:
        try:
            print(json.dumps(inspect_file(Path(name)), default=str), flush=True)
        except TdtpError as err:
            print(f"tdtp inspect: {err}", file=sys.stderr)
            failed += 1
        except BrokenPipeError:
            raise
        except OSError as err:
            print(f"tdtp inspect: {name}: {err.strerror}", file=sys.stderr)
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def cmd_tail(args: argparse.Namespace) -> int:
    from tdtp.brokers import CaughtUp, open_broker

    online = args.from_seq is None and args.after_seq is None
    with open_broker(args.url, create=False) as log:  # a typo must not create a stream and wait on it
        try:
            for item in log.read(
                from_seq=args.from_seq,
                after_seq=args.after_seq,
                online=online,
                follow=not args.no_follow,
                timeout=args.timeout,
            ):
                if isinstance(item, CaughtUp):
                    print(json.dumps({"caught_up": item.seq}), flush=True)
                    continue
                print(json.dumps({"seq": item.seq, "bytes": len(item.body), **item.headers}), flush=True)
        except KeyboardInterrupt:
            pass
    return EXIT_OK


def _existing_target(url: str) -> str:
    """status and replay read an import's bookkeeping: a SQLite target must already exist."""
    from tdtp.urls import parse_url

    parsed = parse_url(url)
    if parsed.scheme == "sqlite" and not Path(parsed.path).exists():
        raise TdtpError("no such database (nothing has been imported there)", where=parsed.redacted)
    return url


def cmd_status(args: argparse.Namespace) -> int:
    from tdtp.importer import export_status

    status = export_status(_existing_target(args.target), args.export_id, args.table)
    doc = status.as_dict()
    print(json.dumps(doc, default=str))
    if doc.get("state") == "unknown":
        print(f"tdtp status: export {args.export_id} is unknown to this target", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from tdtp.importer import ImportOptions, ParallelImporter

    options = ImportOptions(schema=args.schema)
    if args.workers:
        options.workers = args.workers
    stats = ParallelImporter(_existing_target(args.target), options).replay_dead_letters(args.export_id)
    print(json.dumps(stats.as_dict(), default=str))
    return EXIT_FAILED if stats.dead_letters else EXIT_OK


def cmd_reset(args: argparse.Namespace) -> int:
    from tdtp.importer import ImportOptions, ParallelImporter

    with ParallelImporter(_existing_target(args.target), ImportOptions(workers=1, table=args.table)) as imp:
        settled = imp.reset(args.export_id, force=args.force)
        status = imp.status(args.export_id)
    print(json.dumps({"export_id": args.export_id, "table": status.table, "dead_letters_settled": settled}))
    return EXIT_OK


COMMANDS = {
    "export": cmd_export,
    "import": cmd_import,
    "copy": cmd_copy,
    "inspect": cmd_inspect,
    "tail": cmd_tail,
    "status": cmd_status,
    "replay": cmd_replay,
    "reset": cmd_reset,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # a command moves data and exits: see tdtp/allocator.py
    # pika logs every reconnect attempt with a traceback; our BrokerError says it in one line.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        return COMMANDS[args.command](args)
    except TdtpError as err:
        print(f"tdtp {args.command}: {err}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"tdtp {args.command}: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"tdtp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
