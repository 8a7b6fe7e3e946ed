"""What every ``tdtp`` subcommand shares: exit codes, argument types, URL and table checks.

Apart from ``tdtp/cli.py`` so that subcommands living in modules of their own
(``tdtp/copy.py``) use the same definitions without importing the command itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def is_broker_url(text: str) -> bool:
    """Anything shaped ``scheme://...`` is a URL, never a directory: an unknown scheme gets
    the broker layer's "unknown scheme" error instead of a folder named ``nats:``."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").isalnum()


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in ``low..high``, else a usage error naming the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum of {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is above the maximum of {high}")
        return value

    return parse


def refuse_reserved_table(url: str, table: str | None, option: str) -> None:
    """``--table`` may not name the importer's bookkeeping (``tdtp.sinks.ddl.refuse_reserved``)."""
    from tdtp.sinks.ddl import refuse_reserved
    from tdtp.urls import parse_url

    scheme = parse_url(url).scheme
    if table is not None and scheme in ("postgresql", "sqlite"):
        refuse_reserved(table, scheme, where=option)


def add_part_options(p: argparse.ArgumentParser) -> None:
    """How parts are cut and encoded: the same options for ``export`` and ``copy``."""
    p.add_argument(
        "--part-bytes",
        type=int_at_least(4096),
        default=1_900_000,
        help="part budget in encoded bytes (default 1900000, at least 4096)",
    )
    p.add_argument(
        "--part-raw-bytes",
        type=int_at_least(4096, 64 * 2**20),
        default=8 * 2**20,
        help="part budget in decoded row bytes, whatever the compression (default 8388608, 4096..67108864)",
    )
    p.add_argument("--compress", choices=("zstd", "none"), default="zstd")
    p.add_argument(
        "--level", type=int, default=1, choices=range(1, 23), metavar="1..22", help="zstd level (default 1)"
    )
    p.add_argument("--hashes", action="store_true", help="write TDTP v1.4 XXH3 integrity hashes")


def add_source_options(p: argparse.ArgumentParser) -> None:
    """Which rows: the same options for ``export`` and ``copy``."""
    p.add_argument(
        "--source", required=True, help="sqlite:///x.db, postgresql://user@host:port/db, csv:///x.csv, ..."
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--table", help="table to export (schema.table allowed)")
    what.add_argument("--query", help="SQL query to export")
    p.add_argument("--columns", help="comma-separated column list")
    p.add_argument("--where", help="SQL condition added to the table read")


def columns_of(args: argparse.Namespace) -> list[str] | None:
    """``--columns a, b`` as a list (None: every column)."""
    return [c.strip() for c in args.columns.split(",")] if args.columns else None


def add_schema_option(p: argparse.ArgumentParser) -> None:
    """What an import does with an export whose columns differ from the table's (import, copy)."""
    p.add_argument(
        "--schema",
        choices=("evolve", "freeze", "discard_columns"),
        default="evolve",
        help="an export whose columns differ from the table's: evolve (add columns, widen types losslessly), "
        "freeze (refuse any difference) or discard_columns (leave out columns the table lacks)",
    )
