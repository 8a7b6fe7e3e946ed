"""One import call's dispatcher: receive parts, keep workers busy within bounds, acknowledge, finalize.

The receiving loop runs on a thread of its own (a broker's reader and its acks
must stay on one thread); dispatching, collecting and finalizing run on the
calling thread.  It never parses a part: broker headers (or a 64 kB header peek
for files and foreign messages) route it; known duplicates are skipped before any
work; everything else goes to the worker pool (:mod:`tdtp.importer.work`) as raw
bytes.  At most ``queue_parts`` parts are in flight, and receiving pauses while
the parts in flight would need more than ``memory_limit_mb``.  A message is
acknowledged only after its part is committed, skipped as a duplicate, or kept as
a dead letter, so a killed import loses nothing: the rerun skips what the ledger
has.

An export is finalized the moment it is complete (summary in, parts 1..N in the
ledger) and again checked when the log is caught up and when the run ends.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import xxhash

from tdtp.brokers.base import CaughtUp, PartLog
from tdtp.codec import peek_header
from tdtp.importer.copy_publish import StagedConverter
from tdtp.importer.dead_letters import add_dead_letter, settle_dead_letter
from tdtp.importer.finalize import finalize_export
from tdtp.importer.inputs import Incoming
from tdtp.importer.ledger import record_summary
from tdtp.importer.live import LivePublisher
from tdtp.importer.options import ImportOptions
from tdtp.importer.outcome import (
    CLOSED_STATES,
    COPY,
    DUPLICATE,
    FAILED,
    IMPORTED,
    NO_SUMMARY,
    REPLACE,
    FinalizeResult,
)
from tdtp.importer.stats import ImportStats
from tdtp.importer.target import Target, stage_name
from tdtp.importer.tracking import ExportState, ExportTracker
from tdtp.importer.work import (
    PartJob,
    PartOutcome,
    PartWriter,
    WorkerConfig,
    convert_staged_job,
    init_worker,
    work,
    write_with_retries,
)
from tdtp.metrics import Progress, peak_rss_mb
from tdtp.packet import PacketFormatError, Summary, TdtpError
from tdtp.sinks.ddl import refuse_reserved

MIB = 2**20
# Memory a part in flight needs, as a multiple of its body: decompressed rows,
# their Python strings and the COPY text.  Measured on zstd parts of the bench
# table (about 7x compression) and rounded up.
DEFAULT_EXPANSION = 12.0
# Each live publisher holds a connection and an open transaction; more exports at
# once than this are published when complete instead.
MAX_LIVE_PUBLISHERS = 4
# Items the receiving thread reads ahead of dispatch.  One overlaps reading with
# dispatching; more only holds more parts' bytes (``queue_parts`` bounds the pool).
RECEIVE_AHEAD = 1


@dataclass
class _Flight:
    item: Incoming
    nbytes: int
    started: float
    body_hash: str = ""


def _receive_into(
    items: Iterable[Incoming | CaughtUp],
    events: queue.Queue,
    room: threading.Semaphore,
    stop: threading.Event,
) -> None:
    """The receiving thread: items into ``events`` in order, at most ``room`` ahead of dispatch.

    Room is taken before the next item is read, not after: a part read while waiting
    for room is one more part's bytes held for nothing (bench/memory.py).
    """
    try:
        it = iter(items)
        while True:
            while not room.acquire(timeout=0.2):
                if stop.is_set():
                    return
            if stop.is_set():
                return
            item = next(it, None)
            if item is None:
                return
            if isinstance(item, CaughtUp):
                room.release()
                events.put(("caught_up", item))
                continue
            events.put(("item", item))
            del item
    except BaseException as exc:  # noqa: BLE001 - handed to the dispatching thread, which raises it
        events.put(("error", exc))
    finally:
        events.put(("end", None))


class ImportRun:
    """One import call: a worker pool, the in-flight set, per-export state and the stats."""

    def __init__(
        self,
        target: Target,
        options: ImportOptions,
        conn: Any,
        *,
        log: PartLog | None = None,
        replay: bool = False,
    ) -> None:
        self.replay = replay
        self.opts = options
        self.target = target
        self.conn = conn
        self.log = log
        self.exports = ExportTracker(target, conn, options, replay=replay)
        self.inflight: dict[Future[PartOutcome], _Flight] = {}
        self.inflight_bytes = 0
        self.workers = self.opts.resolved_workers()
        self.stats = ImportStats(
            target=self.target.redacted, workers=self.workers, executor=self.opts.executor
        )
        self.config = WorkerConfig(
            target=self.target,
            table=self.opts.table,
            mode=None if replay else self.opts.mode,
            retries=self.opts.retries,
            backoff_seconds=self.opts.backoff_seconds,
            create_table=self.opts.create_table,
            lock_timeout=self.opts.lock_timeout_seconds,
            write=self.target.is_pg,
            nice=self.opts.worker_nice,
            publish=self.opts.publish,
            swap_indexes=self.opts.swap_indexes,
            require_hashes=self.opts.require_hashes,
            schema=self.opts.schema,
        )
        # SQLite has one writer: workers decode, this process writes.
        self.local_writer = None if self.target.is_pg else PartWriter(self.config)
        # PostgreSQL: exports being published while their parts arrive (see tdtp.importer.live).
        self.publishers: dict[tuple[str, str], LivePublisher] = {}
        self.progress = Progress("import", quiet=not self.opts.progress)
        self.started = 0.0

    # --------------------------------------------------------------------- run
    def run(self, items: Iterable[Incoming | CaughtUp], *, files: bool) -> ImportStats:
        """Receive on a thread of its own; dispatch, collect and finalize on this one.

        Receiving runs ahead by ``RECEIVE_AHEAD`` item, so a broker reader waiting
        for the next message never delays acknowledging or publishing what the
        workers have finished, and a part is read while the previous one is dispatched.
        """
        self.files = files
        self.started = time.perf_counter()
        pool = self._pool()
        self.pool = pool
        self.converter = StagedConverter(pool, convert_staged_job)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        room = threading.Semaphore(RECEIVE_AHEAD)
        stop = threading.Event()
        receiver = threading.Thread(
            target=_receive_into, args=(items, self.events, room, stop), name="tdtp-receive", daemon=True
        )
        receiver.start()
        try:
            while True:
                kind, payload = self.events.get()
                if kind == "item":
                    self._receive(pool, payload)
                    del payload
                    room.release()  # after the part is in the pool: not one more part waiting beside it
                elif kind == "caught_up":
                    self.stats.last_seq = payload.seq - 1 if payload.seq else self.stats.last_seq
                    self._drain(pool)
                    self._settle()
                elif kind == "error":
                    raise payload
                elif kind == "end":
                    break
                self._collect(block=False)
            self._drain(pool)
            self._settle()
        finally:
            stop.set()
            receiver.join(1.0)
            if receiver.is_alive() and self.log is not None:
                self.log.close()  # a broker reader blocked waiting for messages: stop it
                receiver.join()
            for live in self.publishers.values():
                live.abort()  # incomplete exports: their staged parts wait for the next run
            self.publishers.clear()
            pool.shutdown(wait=True, cancel_futures=True)
            if self.local_writer is not None:
                self.local_writer.close()
        self.stats.seconds = time.perf_counter() - self.started
        self.stats.peak_rss_mb = max(self.stats.peak_rss_mb, peak_rss_mb())
        self.progress.update(self.stats.total_rows, self.stats.parts_imported, force=True)
        return self.stats

    def _pool(self) -> Executor:
        if self.opts.executor == "thread":
            return ThreadPoolExecutor(self.workers, initializer=init_worker, initargs=(self.config, False))
        methods = multiprocessing.get_all_start_methods()
        # fork: workers start in milliseconds and inherit the imported modules.
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        return ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=init_worker, initargs=(self.config, True)
        )

    # ----------------------------------------------------------------- receive
    def _receive(self, pool: Executor, item: Incoming) -> None:
        if item.message is not None:
            self.stats.last_seq = item.message.seq
        if item.kind == "summary":
            self._on_summary(item)
            return
        if self.stats.first_read_at is None:
            self.stats.first_read_at = time.time()
        export_id, part, table = item.export_hint, item.part_hint, self.opts.table or item.table_hint
        if not export_id or not part or not table:
            try:
                header = peek_header(item.body, where=item.source)
                export_id, part = export_id or header.batch_id, part or header.part_number or 1
                table = table or header.table_name
                # Routing facts from the part itself: a dead letter then still names its export.
                item.export_hint, item.part_hint, item.table_hint = export_id, part, table
            except TdtpError:
                pass  # the worker will name what is wrong with it
        body_hash = xxhash.xxh3_64_hexdigest(item.body)
        if export_id and table:
            st = self._state(export_id, table)
            st.foreign = st.foreign or item.foreign
            if st.refused:
                self.stats.exports[export_id] = st.refused
                self._ack(item)
                return
            if part and item.dead_letter_id is None and st.is_duplicate(part, body_hash):
                self.stats.duplicates += 1
                self._ack(item)
                return
        self._wait_for_room(len(item.body))
        job = PartJob(
            body=item.body,
            source=item.source,
            export_hint=item.export_hint,
            part_hint=item.part_hint,
            rows_hint=item.rows_hint,
            partition=item.partition,
            producer="foreign" if item.foreign else None,
            resolution="replayed" if item.dead_letter_id is not None else IMPORTED,
            dead_letter_id=item.dead_letter_id,
            whole_table=item.message is not None and not item.foreign and not item.partition,
            body_hash=body_hash,
            table=item.table_hint if item.dead_letter_id is not None else "",
        )
        try:
            future = pool.submit(work, job)
        except BrokenProcessPool as exc:
            raise TdtpError(
                "an import worker process died; rerun to continue (the ledger skips what is in)"
            ) from exc
        future.add_done_callback(lambda _f: self.events.put(("wake", None)))
        self.inflight[future] = _Flight(item, len(item.body), time.perf_counter(), body_hash)
        self.inflight_bytes += len(item.body)
        self.stats.max_in_flight = max(self.stats.max_in_flight, len(self.inflight))

    def _wait_for_room(self, nbytes: int) -> None:
        """Backpressure: a bounded number of parts, and a memory budget, in flight."""
        budget = self.opts.memory_limit_mb * MIB
        paused = False
        while self.inflight:
            need = (self.inflight_bytes + nbytes) * DEFAULT_EXPANSION
            if len(self.inflight) >= self.opts.resolved_queue_parts():
                self._collect(block=True)
            elif need > budget:
                paused = True
                self._collect(block=True)
            else:
                break
        if paused:
            self.stats.memory_pauses += 1

    def _drain(self, pool: Executor) -> None:
        while self.inflight:
            self._collect(block=True)

    def _collect(self, *, block: bool) -> None:
        if not self.inflight:
            return
        done, _ = wait(list(self.inflight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            flight = self.inflight.pop(future)
            self.inflight_bytes -= flight.nbytes
            try:
                outcome = future.result()
            except BrokenProcessPool as exc:
                raise TdtpError(
                    "an import worker process died; rerun to continue (the ledger skips what is in)"
                ) from exc
            self._on_outcome(flight, outcome)

    # ---------------------------------------------------------------- outcomes
    def _on_outcome(self, flight: _Flight, outcome: PartOutcome) -> None:
        item = flight.item
        if outcome.status == IMPORTED and outcome.decoded is not None and self.local_writer is not None:
            job = PartJob(
                body=b"",
                source=item.source,
                partition=item.partition,
                producer="foreign" if item.foreign else None,
                resolution="replayed" if item.dead_letter_id is not None else IMPORTED,
                body_hash=flight.body_hash,
            )
            write_started = time.perf_counter()
            write_with_retries(
                self.local_writer,
                outcome.decoded,
                job,
                outcome,
                retries=self.opts.retries,
                backoff=self.opts.backoff_seconds,
            )
            outcome.seconds += time.perf_counter() - write_started
            outcome.decoded = None
        self.stats.retries += max(0, outcome.attempts - 1)
        self.stats.worker_peak_rss_mb = max(self.stats.worker_peak_rss_mb, outcome.peak_rss_mb)
        if outcome.status == FAILED:
            self._dead_letter(item, outcome)
            self._ack(item)
            return
        st = self._state(outcome.export_id, outcome.table)
        if outcome.status == DUPLICATE:
            st.parts.setdefault(outcome.part_number, flight.body_hash)
        else:
            st.parts[outcome.part_number] = flight.body_hash
        if outcome.total_parts and not st.total:
            st.total = outcome.total_parts
        if outcome.status == DUPLICATE:
            self.stats.duplicates += 1
            if item.dead_letter_id is not None:
                settle_dead_letter(self.target, self.conn, item.dead_letter_id, "duplicate")
        else:
            self.stats.add_part(
                outcome.rows,
                outcome.nbytes,
                outcome.seconds,
                time.perf_counter() - self.started,
                export_id=outcome.export_id,
                submitted=flight.started - self.started,
            )
            self.progress.update(self.stats.total_rows, self.stats.parts_imported)
            self._publish_live(st, item, outcome)
        self._ack(item)
        if outcome.status == IMPORTED and st.complete() and not st.closed:
            self._finalize(st)

    def _dead_letter(self, item: Incoming, outcome: PartOutcome) -> None:
        """Keep the failed part in the target; if even that fails, stop without acknowledging."""
        export_id = outcome.export_id or item.export_hint
        try:
            add_dead_letter(
                self.target,
                self.conn,
                export_id=export_id,
                part=outcome.part_number or item.part_hint,
                table=outcome.table or self.opts.table or item.table_hint,
                reason=outcome.error,
                body=item.body,
                source=item.source,
            )
        except Exception as exc:
            raise TdtpError(
                f"cannot keep a dead letter in the target ({type(exc).__name__}: {exc}); "
                f"stopped so that the part is not lost: {outcome.error}"
            ) from exc
        self.stats.dead_letters += 1
        self.stats.errors.append(outcome.error)
        table = outcome.table or self.opts.table or item.table_hint
        st = self._state(export_id, table) if export_id and table else None
        if st is not None and st.closed:  # published already: this copy was refused, nothing blocked
            self.stats.exports[export_id] = st.closed_as or "finalized (earlier)"
        elif export_id:
            self.stats.exports[export_id] = f"blocked: dead letter ({outcome.error})"

    def _on_summary(self, item: Incoming) -> None:
        try:
            summary = Summary.from_json(item.body)
        except PacketFormatError as exc:
            self._dead_letter(
                item, PartOutcome(status=FAILED, source=item.source, error=f"{item.source}: {exc}")
            )
            self._ack(item)
            return
        table = self.opts.table or summary.table
        try:
            refuse_reserved(table, self.target.dialect, where=item.source)
        except TdtpError as exc:
            self._dead_letter(item, PartOutcome(status=FAILED, source=item.source, error=str(exc)))
            self._ack(item)
            return
        with self.target.transaction(self.conn):
            record_summary(
                self.target,
                self.conn,
                summary,
                table=table,
                mode=None if self.replay else self.opts.mode,
                stage=stage_name(summary.export_id, table),
            )
        self.stats.summaries += 1
        st = self._state(summary.export_id, table)
        st.total = summary.total_parts
        st.summary = True
        self._ack(item)
        if st.complete() and not st.closed:
            self._finalize(st)

    def _ack(self, item: Incoming) -> None:
        if self.log is not None and item.message is not None:
            self.log.ack(item.message)

    # ---------------------------------------------------------------- exports
    def _state(self, export_id: str, table: str) -> ExportState:
        return self.exports.get(export_id, table)

    def _publish_live(self, st: ExportState, item: Incoming, outcome: PartOutcome) -> None:
        """PostgreSQL: hand a staged part's COPY text to its export's live publisher (start one if allowed)."""
        if not self.target.is_pg or not self.opts.live_publish or self.replay or st.closed or st.no_live:
            return
        if outcome.strategy != COPY:  # swap/attach: the worker loaded the rows in place already
            return
        live = self.publishers.get((st.export_id, st.table))
        if live is None:
            if not self._may_go_live(st, item) or len(self.publishers) >= MAX_LIVE_PUBLISHERS:
                return
            live = LivePublisher(
                self.target,
                st.export_id,
                st.table,
                lock_timeout=self.opts.lock_timeout_seconds,
                queue_parts=self.opts.resolved_queue_parts(),
                converter=self.converter,
                abandon_after=self.opts.abandon_after_seconds,
            )
            if not live.start():
                st.no_live = True
                return
            self.publishers[(st.export_id, st.table)] = live
        live.feed(outcome.part_number, outcome.rows, outcome.copy)
        if live.failure is not None:  # the target refused a part: stop loading, say so now
            self._finalize(st)

    def _may_go_live(self, st: ExportState, item: Incoming) -> bool:
        """Replace mode must know what it replaces before deleting: the summary's filter, a whole-table
        stream of ours (empty partition header), or a batch export (TotalParts: the whole table)."""
        if self.opts.mode != REPLACE:
            return True
        return (
            st.summary
            or bool(st.total)
            or (item.message is not None and not item.foreign and not item.partition)
        )

    def _finalize(self, st: ExportState, *, allow_partial: bool = False) -> FinalizeResult:
        started = time.perf_counter()
        try:
            return self._finalize_now(st, allow_partial=allow_partial)
        finally:
            self.stats.finalize_seconds += time.perf_counter() - started

    def _finalize_now(self, st: ExportState, *, allow_partial: bool) -> FinalizeResult:
        live = self.publishers.pop((st.export_id, st.table), None)
        result = live.finish(allow_partial=allow_partial) if live is not None else None
        if live is not None and (result is None or not result.finalized):
            st.no_live = True
        if result is None:  # no live publisher, or its thread ended early
            result = finalize_export(
                self.target,
                self.conn,
                st.export_id,
                st.table,
                allow_partial=allow_partial,
                converter=self.converter,
                publish_wait=self.opts.publish_wait_seconds,
                abandon_after=self.opts.abandon_after_seconds,
            )
        if result.dead_lettered_part is not None:
            st.parts.pop(result.dead_lettered_part, None)
            self.stats.dead_letters += 1
            self.stats.errors.append(result.reason)
        if result.finalized or result.state in CLOSED_STATES:
            st.closed = True
        if result.finalized and not result.already and st.export_id not in self.stats.finalized:
            self.stats.finalized.append(st.export_id)
        if result.strategy and not result.already:
            self.stats.publish[st.export_id] = result.publish_text
        if result.state == NO_SUMMARY and st.export_id not in self.stats.no_summary:
            self.stats.no_summary.append(st.export_id)
        self.stats.exports[st.export_id] = result.describe()
        return result

    def _settle(self) -> None:
        """After catching up / at the end: publish what is complete, report what is not.

        An incomplete export's live publisher keeps going (more parts may come);
        the end of the run rolls it back.
        """
        for st in self.exports:
            if st.refused:
                self.stats.exports[st.export_id] = st.refused
                continue
            if st.closed:
                if st.export_id not in self.stats.exports:
                    self.stats.exports[st.export_id] = st.closed_as or "finalized (earlier)"
                continue
            # No summary will come for a foreign stream, nor for stream files without one.
            no_summary = not st.summary and not st.total and (st.foreign or self.files)
            if (st.export_id, st.table) in self.publishers and not no_summary and not st.complete():
                self.stats.exports[st.export_id] = f"{st.waiting_for()}; publishing meanwhile"
                continue
            self._finalize(st, allow_partial=no_summary)
