"""Import settings shared by the CLI, the Dagster import asset and the benchmarks."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tdtp.importer.outcome import AUTO, COPY, MODES, REPLACE, SWAP
from tdtp.packet import TdtpError
from tdtp.sinks.schema_change import EVOLVE, POLICIES

EXECUTORS = ("process", "thread")
PUBLISH = (AUTO, SWAP, COPY)
INDEX_BUILDS = ("after", "before")


@dataclass
class ImportOptions:
    """How an import runs.

    ``workers`` defaults to the CPU count because decoding is CPU-bound; on
    PostgreSQL every worker also has its own connection, so COPY work spreads
    over server backends too.  ``queue_parts`` (default ``workers``: a part per worker) bounds
    the parts received but not yet committed, and ``memory_limit_mb`` pauses
    receiving while the parts in flight would need more than that (their bodies
    times the expansion measured on finished parts).  ``executor`` is
    ``"process"`` (default: the GIL would serialize decoding in threads) or
    ``"thread"`` (cheaper to start; fine for a few small parts).

    ``live_publish`` (PostgreSQL): open an export's publish transaction while its
    parts arrive, so publishing overlaps decoding and the export itself.  A run
    that ends before its export is complete rolls that work back (the staged
    parts stay); turn it off for runs that land only a slice of a big export.
    ``worker_nice`` lowers worker processes' CPU priority, leaving the publisher
    (and the exporter on the same machine) ahead of them.

    ``publish`` (PostgreSQL, replace mode; see :mod:`tdtp.importer.swap_plan`):
    ``"auto"`` (default) lets the workers COPY an export's rows in parallel into a
    load table and publishes it by a metadata swap (whole table: rename; a
    partition of a partitioned table: ATTACH) when that is safe for the target,
    else by copy; ``"swap"`` insists (an export whose target rules the swap out is
    refused with the reason); ``"copy"`` always stages part bodies and publishes
    with one COPY (the live publisher).  The choice is made at an export's first
    part and kept for that export.  ``swap_indexes``: build the load table's
    indexes ``"after"`` the rows are in (at publish; default) or ``"before"``.

    ``publish_wait_seconds``: a second import of an export another one is publishing
    waits this long for it, then finds it published.  ``abandon_after_seconds``: an
    export without a summary (its producer died) is given up once no part of it
    arrived for this long (None: only when a newer export of its partition is
    published).  ``reland``: land again, in append/upsert mode, an export whose target
    table was dropped or emptied since it was published (replace mode does it anyway).
    ``require_hashes``: refuse (dead-letter) any part without TDTP v1.4 XXH3 hashes.
    XXH3 is not keyed: hashes catch corruption on the way, not a forger.
    ``schema``: what an export whose schema differs from its table's does (see
    :mod:`tdtp.sinks.schema_change`): ``"evolve"`` (default: add columns, widen types
    losslessly), ``"freeze"`` (refuse any difference) or ``"discard_columns"`` (leave
    out the columns the table lacks; never change the table).
    """

    workers: int = os.cpu_count() or 1
    mode: str = REPLACE
    table: str | None = None
    retries: int = 3
    backoff_seconds: float = 0.2
    queue_parts: int | None = None
    memory_limit_mb: float = 1024
    create_table: bool = True
    executor: str = "process"
    lock_timeout_seconds: float = 30.0
    progress: bool = False
    worker_nice: int = 0
    live_publish: bool = True
    publish: str = AUTO
    swap_indexes: str = "after"
    publish_wait_seconds: float = 300.0
    abandon_after_seconds: float | None = 86400.0
    reland: bool = False
    require_hashes: bool = False
    schema: str = EVOLVE

    def resolved_queue_parts(self) -> int:
        return self.queue_parts if self.queue_parts and self.queue_parts > 0 else self.resolved_workers()

    def resolved_workers(self) -> int:
        return max(1, int(self.workers or 1))

    def validate(self) -> None:
        """One clear error for a bad setting, before any connection is opened."""
        if self.mode not in MODES:
            raise TdtpError(f"unknown write mode {self.mode!r}; use one of {', '.join(MODES)}", where="mode")
        if self.executor not in EXECUTORS:
            raise TdtpError(f"unknown executor {self.executor!r}; use process or thread", where="executor")
        if self.retries < 0:
            raise TdtpError("retries must be >= 0", where="retries")
        if self.backoff_seconds < 0:
            raise TdtpError("backoff_seconds must be >= 0", where="backoff_seconds")
        if self.publish not in PUBLISH:
            raise TdtpError(
                f"unknown publish strategy {self.publish!r}; use auto, swap or copy", where="publish"
            )
        if self.publish == SWAP and self.mode != REPLACE:
            raise TdtpError(
                f"publish='swap' replaces a table or partition; {self.mode} mode publishes by copy",
                where="publish",
            )
        if self.swap_indexes not in INDEX_BUILDS:
            raise TdtpError(
                f"unknown swap_indexes {self.swap_indexes!r}; use after or before", where="swap_indexes"
            )
        if self.publish_wait_seconds < 0:
            raise TdtpError("publish_wait_seconds must be >= 0", where="publish_wait_seconds")
        if self.abandon_after_seconds is not None and self.abandon_after_seconds < 0:
            raise TdtpError("abandon_after_seconds must be >= 0", where="abandon_after_seconds")
        if self.schema not in POLICIES:
            raise TdtpError(
                f"unknown schema policy {self.schema!r}; use one of {', '.join(POLICIES)}", where="schema"
            )
        if self.memory_limit_mb <= 0:
            raise TdtpError("memory_limit_mb must be > 0", where="memory_limit_mb")
