"""One part, start to finish: verify, decode, stage with its ledger row, retry what is transient.

This is the code that runs in worker processes (or threads).  A job carries the
raw part bytes, so the receiving process never parses XML: it stays a thin loop
of receive, dispatch, acknowledge.  On PostgreSQL the worker also writes, with
its own connection (COPY runs in as many server backends as there are workers).
SQLite allows one writer, so there workers only decode and the main process
writes (see :mod:`tdtp.importer.engine`).

Errors that retrying cannot fix (a malformed or corrupted part, a value the
target refuses, a missing column) fail at once; errors of the moment (lost
connection, lock timeout, deadlock, a busy SQLite file) are retried with
exponential backoff before the part is dead-lettered.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tdtp.codec import decode_packet, part_checksum
from tdtp.importer.copy_publish import convert_staged
from tdtp.importer.errors import TargetUnavailable, error_text, is_retryable
from tdtp.importer.outcome import ABANDONED, AUTO, COPY, DUPLICATE, FAILED, IMPORTED
from tdtp.importer.staging import StagedExport, in_ledger, signature_text, stage_export, write_part
from tdtp.importer.target import Target
from tdtp.packet import IntegrityError, RowText, Schema, TdtpError, line_chunks, text_chunks
from tdtp.sinks.copy_text import lines_to_copy, text_to_copy
from tdtp.sinks.ddl import refuse_reserved
from tdtp.sinks.sqlite import StoredChunks, stored_chunks


@dataclass
class WorkerConfig:
    """Everything a worker needs, sent once per worker process."""

    target: Target
    table: str | None
    mode: str | None  # None: keep each export's recorded mode (replays)
    retries: int
    backoff_seconds: float
    create_table: bool
    lock_timeout: float
    write: bool  # False: decode only (SQLite: the main process writes)
    nice: int = 0  # worker processes' niceness (see ImportOptions.worker_nice)
    publish: str = AUTO  # see ImportOptions.publish
    swap_indexes: str = "after"
    require_hashes: bool = False  # see ImportOptions.require_hashes
    schema: str = "evolve"  # see ImportOptions.schema
    landed_by: str = ""  # the ledger's landed_by (options.worker_name() of the importing process)


@dataclass
class PartJob:
    """A part to import, as received: bytes plus what the message headers claimed."""

    body: bytes
    source: str
    export_hint: str = ""
    part_hint: int = 0
    rows_hint: int | None = None
    partition: str = ""
    producer: str | None = None  # "foreign" when a message came without our headers
    resolution: str = IMPORTED  # what a dead letter of this part is marked when it lands
    dead_letter_id: int | None = None  # set when the job replays a dead letter
    whole_table: bool = False  # from our own producer's log with no partition header: a whole-table export
    body_hash: str = ""  # XXH3-64 of the body, hex (the receiving process computed it)
    table: str = ""  # the target table when it is not the part's TableName (a dead letter's replay)


@dataclass
class DecodedPart:
    export_id: str
    part_number: int
    total_parts: int
    table: str
    schema: Schema
    lines: Sequence[str]  # a RowText for compressed parts: split a chunk at a time
    rows: int
    checksum: int
    values: StoredChunks | None = None
    copy: bytes | None = None  # PostgreSQL copy strategy: the rows as COPY text, for the live publisher
    timestamp: str = ""  # the header's Timestamp: when the producer made the part


@dataclass
class PartOutcome:
    """What happened to one job; sent back to the receiving process."""

    status: str
    source: str
    export_id: str = ""
    part_number: int = 0
    total_parts: int = 0
    table: str = ""
    rows: int = 0
    nbytes: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str = ""
    peak_rss_mb: float = 0.0
    strategy: str = ""  # how the export publishes: "copy", "swap", "attach" ("" before it is known)
    decoded: DecodedPart | None = field(default=None, repr=False)
    copy: bytes | None = field(default=None, repr=False)


def decode_part(
    job: PartJob, *, table_override: str | None, want_values: bool, require_hashes: bool = False
) -> DecodedPart:
    """Parse and verify a part: hashes (codec), RecordsInPart (codec), and the sender's headers.

    ``want_values`` decodes the values SQLite stores (marshalled chunks: cheap to
    send to the writing process).  PostgreSQL keeps the row lines:
    the writer converts them to COPY text (:meth:`PartWriter.write`), still in the
    worker, so a value the conversion refuses dead-letters this part.  Rows stay
    bytes (``lazy_rows``) and are split a chunk at a time: a part's memory is its
    row text, not a string per line (bench/memory.py).
    """
    packet = decode_packet(job.body, where=job.source, require_hashes=require_hashes, lazy_rows=True)
    h = packet.header
    export_id = h.batch_id
    where = f"{job.source}: part {h.part_number}" if h.part_number else job.source
    if job.export_hint and job.export_hint != export_id:
        raise IntegrityError(
            f"message header says export {job.export_hint!r}, the part says {export_id!r}", where=where
        )
    number = h.part_number or 1  # a lone packet without PartNumber is part 1 of 1
    total = h.total_parts or (1 if not h.part_number else 0)
    if job.part_hint and job.part_hint != number:
        raise IntegrityError(f"message header says part {job.part_hint}, the part says {number}", where=where)
    if job.rows_hint is not None and job.rows_hint != len(packet.rows):
        raise IntegrityError(
            f"message header says {job.rows_hint} rows, the part holds {len(packet.rows)}", where=where
        )
    table = table_override or job.table or h.table_name
    if not table:
        raise TdtpError("the part names no table (TableName) and no target table was given", where=where)
    values = None
    if want_values:
        try:
            values = stored_chunks(packet)
        except TdtpError as exc:
            raise exc.at(job.source) from None
    return DecodedPart(
        export_id=export_id,
        part_number=number,
        total_parts=total,
        table=table,
        schema=packet.schema,
        lines=packet.rows,
        rows=len(packet.rows),
        checksum=part_checksum(packet.rows) if packet.rows else 0,
        values=values,
        timestamp=h.timestamp or "",
    )


class PartWriter:
    """Stages decoded parts through one connection; remembers which exports it has prepared."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.target = config.target
        self._conn: Any = None
        self._staged: dict[str, StagedExport] = {}
        self.strategy = ""  # of the export last written

    @property
    def conn(self) -> Any:
        if self._conn is None:
            try:
                self._conn = self.target.connect(lock_timeout=self.config.lock_timeout)
            except TdtpError as exc:
                raise TargetUnavailable(exc.message) from exc
            if self.target.is_pg:
                # Rows go into load tables here: read naive timestamps as UTC, as the publisher does.
                self._conn.execute("SET TimeZone = 'UTC'")
        return self._conn

    def reset(self) -> None:
        """Drop the connection after an error; the next attempt reconnects."""
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken: closing is best effort
                self._conn.close()
        self._conn = None
        self._staged.clear()

    def close(self) -> None:
        self.reset()

    def write(self, part: DecodedPart, job: PartJob) -> str:
        self.strategy = ""
        # A packet never names the importer's own bookkeeping (its TableName is input, like its rows).
        refuse_reserved(part.table, self.target.dialect, where=f"{job.source}: part {part.part_number}")
        staged = self._staged.get(part.export_id)
        if staged is None or staged.table != part.table:
            staged = stage_export(
                self.target,
                self.conn,
                export_id=part.export_id,
                table=part.table,
                schema=part.schema,
                partition=job.partition,
                mode=self.config.mode,
                total_parts=part.total_parts,
                producer=job.producer,
                create_table=self.config.create_table,
                publish=self.config.publish,
                swap_indexes=self.config.swap_indexes,
                whole_hint=job.whole_table,
                produced_at=part.timestamp,
                schema_policy=self.config.schema,
            )
            self._staged[part.export_id] = staged
        elif [list(p) for p in part.schema.signature()] != staged.signature:
            raise IntegrityError(
                f"fields {signature_text(part.schema.signature())} differ from the export's first part "
                f"{signature_text(staged.signature)}",
                where=f"{job.source}: part {part.part_number}",
            )
        self.strategy = staged.strategy
        if staged.closed:
            landed = in_ledger(
                self.target, self.conn, staged, part=part.part_number, rows=part.rows, checksum=part.checksum,
                source=job.source,
            )  # fmt: skip
            if landed or staged.state == ABANDONED:  # a late part of a given-up export is skipped
                return DUPLICATE
            raise IntegrityError(
                f"export {part.export_id} is already published without this part",
                where=f"{job.source}: part {part.part_number}",
            )
        copy: bytes | Iterator[bytes] | None = None
        if self.target.is_pg and staged.loads_rows:
            copy = copy_chunks(part, job.source)  # converted while the server loads the previous chunk
        elif self.target.is_pg:
            if part.copy is None and part.lines:  # a value COPY would refuse dead-letters the part now
                part.copy = b"".join(copy_chunks(part, job.source))
            copy = part.copy
        done = write_part(
            self.target,
            self.conn,
            staged,
            part=part.part_number,
            rows=part.rows,
            schema=part.schema,
            body=job.body,
            values=part.values,
            checksum=part.checksum,
            partition=job.partition,
            resolution=job.resolution,
            copy=copy,
            body_hash=job.body_hash,
            source=job.source,
            landed_by=self.config.landed_by,
        )
        return IMPORTED if done else DUPLICATE


COPY_CHUNK_ROWS = 4096


def copy_chunks(part: DecodedPart, source: str) -> Iterator[bytes]:
    """A part's rows as COPY text in chunks, so converting overlaps the server's COPY work.

    With the whole part converted first, a worker alternates between converting
    (the server idle) and waiting for COPY (the worker idle); in chunks the server
    parses and inserts one chunk while the worker converts the next.
    """
    if isinstance(part.lines, RowText):
        for start, text, count in text_chunks(part.lines, COPY_CHUNK_ROWS):
            where = f"{source}: part {part.part_number} (from row {start + 1})"
            yield text_to_copy(part.schema, text, count, where=where).encode()
        return
    for start, lines in line_chunks(part.lines, COPY_CHUNK_ROWS):
        where = f"{source}: part {part.part_number} (from row {start + 1})"
        yield lines_to_copy(part.schema, lines, where=where).encode()


def write_with_retries(
    writer: PartWriter, part: DecodedPart, job: PartJob, outcome: PartOutcome, *, retries: int, backoff: float
) -> PartOutcome:
    """Write a decoded part, retrying transient failures with exponential backoff."""
    delay = backoff
    while True:
        outcome.attempts += 1
        try:
            outcome.status = writer.write(part, job)
            outcome.error = ""
            return outcome
        except Exception as exc:  # noqa: BLE001 - classified below; nothing escapes a worker
            writer.reset()
            outcome.status = FAILED
            outcome.error = error_text(exc, f"{job.source}: part {part.part_number} of {part.export_id}")
            if not is_retryable(exc) or outcome.attempts > retries:
                return outcome
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def run_job(job: PartJob, config: WorkerConfig, writer: PartWriter | None) -> PartOutcome:
    """Decode (no retry: the bytes will not change) then write (with retries) one part."""
    started = time.perf_counter()
    outcome = PartOutcome(status=FAILED, source=job.source, nbytes=len(job.body))
    try:
        part = decode_part(
            job,
            table_override=config.table,
            want_values=not config.target.is_pg,
            require_hashes=config.require_hashes,
        )
    except Exception as exc:  # noqa: BLE001 - a bad part must not take the worker down
        outcome.attempts = 1
        outcome.error = error_text(exc, job.source)
        outcome.export_id = job.export_hint
        outcome.part_number = job.part_hint
        outcome.seconds = time.perf_counter() - started
        return outcome
    outcome.export_id = part.export_id
    outcome.part_number = part.part_number
    outcome.total_parts = part.total_parts
    outcome.table = part.table
    outcome.rows = part.rows
    if not config.target.is_pg:
        part.lines = []  # not needed any more: the values carry the rows
    if config.write and writer is not None:
        # PostgreSQL converts the lines to COPY text while writing (see PartWriter.write).
        write_with_retries(writer, part, job, outcome, retries=config.retries, backoff=config.backoff_seconds)
        part.lines = []
        outcome.strategy = writer.strategy
        if outcome.status == IMPORTED and writer.strategy == COPY:
            outcome.copy = part.copy  # for the live publisher; swap/attach rows are in place already
    else:
        outcome.status = IMPORTED
        outcome.decoded = part
    outcome.seconds = time.perf_counter() - started
    return outcome


# ---------------------------------------------------------------- per-worker state

_local = threading.local()


def init_worker(config: WorkerConfig, in_process: bool) -> None:
    """Pool initializer: one writer (one connection) per worker process or thread."""
    if in_process:
        _die_with_parent()
        if config.nice:
            with contextlib.suppress(OSError):
                os.nice(config.nice)
    _local.config = config
    _local.writer = PartWriter(config) if config.write else None


def convert_staged_job(export_id: str, table: str, part: int) -> bytes | None:
    """Pool entry point for publishing at the end: a staged part read back as COPY text.

    Handed to the publisher as :class:`tdtp.importer.copy_publish.StagedConverter`'s job.
    """
    writer: PartWriter | None = getattr(_local, "writer", None)
    if writer is None:
        writer = _local.writer = PartWriter(_local.config)
    return convert_staged(writer.conn, _local.config.target, export_id, table, part)


def work(job: PartJob) -> PartOutcome:
    """Entry point the pool calls for each job."""
    outcome = run_job(job, _local.config, _local.writer)
    outcome.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return outcome


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the importer dies, so no orphan keeps a transaction open.

    An orphan's transaction would only roll back (the ledger keeps imports
    exactly-once either way), but it would hold a connection and locks meanwhile.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):  # not Linux: orphans end when their pipe closes
        pass
