"""PostgreSQL copy publish: an export's rows go into the target by COPY inside ONE transaction.

This is the ``copy`` strategy (upsert, append, and replace where a swap is not
possible or not wanted; the ``swap`` / ``attach`` strategies are in
:mod:`tdtp.importer.swap_publish`).  Its staging half is in
:mod:`tdtp.importer.staging`: each part's *body* (the received bytes, zstd
inside) waits in ``tdtp._tdtp_stage_parts`` with its ledger row.

Rows reach the target once, in a single transaction that also marks the export
finalized: readers see the old partition until the commit and the whole new one
after it.  :class:`PgPublish` is that transaction's work; it is driven either at
the end (:func:`tdtp.importer.finalize.finalize_export`) or live, while parts
arrive (:class:`tdtp.importer.live.LivePublisher`), which feeds it the COPY text
the workers made.  Parts not fed live are read back from the stage and converted
again, in the run's worker pool when there is one.

Write modes: ``replace`` deletes the partition (or the whole table) first, then
COPYs into the target; ``append`` COPYs into the target; ``upsert`` COPYs each
part into a temporary table and merges it with ``INSERT ... ON CONFLICT``.  An
export whose schema differs from the table's changes the table first, in the same
transaction (:mod:`tdtp.importer.evolve`); columns it carries that the table leaves
out (``discard_columns``) go through the temporary table too.  The
transaction runs with ``TimeZone = UTC``: partition bounds and naive timestamps
that TDTP marks as UTC are read as UTC.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import psycopg

from tdtp.codec import decode_packet
from tdtp.importer.errors import PublishError, describe_pg_error
from tdtp.importer.evolve import evolve_target
from tdtp.importer.ledger import ExportRecord, mark_published, pending_parts
from tdtp.importer.outcome import REPLACE, UPSERT
from tdtp.importer.pg_copy import CopyRefused, copy_in
from tdtp.importer.target import STAGE_PARTS, Target
from tdtp.importer.writemode import delete_replaced, on_conflict, partition_predicate, upsert_keys
from tdtp.sinks.copy_text import lines_to_copy
from tdtp.sinks.schema_change import SchemaChange

_UPSERT_TEMP = "_tdtp_upsert"


@dataclass(frozen=True)
class StagedConverter:
    """Where staged parts are converted back to COPY text: the run's worker pool and the job it runs.

    The job is :func:`tdtp.importer.work.convert_staged_job` (it reuses each worker's
    connection); it is handed in from above so that publishing never imports the
    worker code.
    """

    executor: Executor
    job: Callable[[str, str, int], bytes | None]


class PgPublish:
    """An export's rows going into the target inside the caller's open transaction."""

    def __init__(
        self, target: Target, conn: Any, rec: ExportRecord, converter: StagedConverter | None = None
    ) -> None:
        self.target = target
        self.conn = conn
        self.rec = rec
        self.converter = converter
        self.columns = [name for name, _ in rec.columns]  # what the COPY text holds
        self.published: dict[int, int] = {}
        self.predicate: tuple[str, tuple] | None = None
        self._merge_sql = ""
        self._dest = target.table(rec.table_name)
        self.change: SchemaChange | None = None  # what prepare() made of the export's schema

    def prepare(self) -> None:
        """Take the export's schema change (:mod:`tdtp.importer.evolve`), delete what ``replace``
        replaces; set up the merge table for ``upsert`` or for columns the target leaves out."""
        self.conn.execute("SET LOCAL TimeZone = 'UTC'")
        table = self.target.table(self.rec.table_name)
        self.change = evolve_target(self.target, self.conn, self.rec)
        discarded = self.change.discarded_names
        if self.rec.mode == REPLACE:
            self.predicate = partition_predicate(self.target, self.rec.summary)
            delete_replaced(self.target, self.conn, table, self.predicate)
        if self.rec.mode == UPSERT or discarded:
            kept = [n for n in self.columns if n not in discarded]
            cols = ", ".join(self.target.ident(n) for n in kept)
            self.conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_UPSERT_TEMP} ON COMMIT DROP AS "
                f"SELECT {cols} FROM {table} WITH NO DATA"
            )
            for name in discarded:  # in the COPY text, not in the target: read as text, then left out
                self.conn.execute(f"ALTER TABLE {_UPSERT_TEMP} ADD COLUMN IF NOT EXISTS {self.target.ident(name)} text")
            self._merge_sql = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {_UPSERT_TEMP}"
            if self.rec.mode == UPSERT:
                self._merge_sql += " " + on_conflict(self.target, upsert_keys(self.target, self.conn, self.rec), kept)
            self._dest = _UPSERT_TEMP

    def add(self, part: int, rows: int, data: bytes | None) -> None:
        """Load one part's COPY text (``None`` for an empty part)."""
        if part in self.published:
            return
        loaded = 0
        if data:
            try:
                loaded = copy_in(self.conn, self._dest, self.columns, data)
                if self._merge_sql:
                    self.conn.execute(self._merge_sql)
                    self.conn.execute(f"TRUNCATE {_UPSERT_TEMP}")
            except CopyRefused as exc:
                raise PublishError(part, f"the target refused the part's rows: {exc.message}") from exc
            except psycopg.Error as exc:  # the upsert's merge
                raise PublishError(
                    part, f"the target refused the part's rows: {describe_pg_error(exc)}"
                ) from exc
        if loaded != rows:
            raise PublishError(part, f"COPY loaded {loaded} rows, the ledger says {rows}")
        self.published[part] = loaded

    def pending(self) -> list[tuple[int, int, bool]]:
        return pending_parts(self.target, self.conn, self.rec.export_id, self.rec.table_name)

    def publish_pending(self) -> int:
        """Load every unpublished ledger part not loaded yet; mark them all published; return rows moved.

        Parts not fed live (staged by an earlier run, by another importer, or all
        of them when publishing at the end) are read back and converted a few
        parts ahead, in the worker pool or on a helper thread with its own
        connection, so decoding overlaps the server's COPY work instead of
        alternating with it.
        """
        pending = self.pending()
        todo = [(p, r) for p, r, _ in pending if p not in self.published]
        if todo:
            for part, rows, data in _staged_copy_texts(self.target, self.rec.export_id, self.rec.table_name, todo, self.converter):
                self.add(part, rows, data)
        parts = [p for p, _, _ in pending]
        mark_published(self.target, self.conn, self.rec.export_id, self.rec.table_name, parts)
        return sum(self.published.get(p, 0) for p in parts)


def convert_staged(conn: Any, target: Target, export_id: str, table: str, part: int) -> bytes | None:
    """A staged part's rows as COPY text, read back from the stage (binary fetch: no hex round trip)."""
    row = conn.execute(
        f"SELECT body FROM {target.book(STAGE_PARTS)} WHERE export_id = %s AND table_name = %s AND part_number = %s",
        (export_id, table, part),
        binary=True,
    ).fetchone()
    if row is None:
        raise PublishError(part, "the part is in the ledger but its staged body is missing")
    packet = decode_packet(bytes(row[0]), where=f"staged part {part} of {export_id}")
    return lines_to_copy(packet.schema, packet.rows).encode() if packet.rows else None


def _converted_by_pool(
    converter: StagedConverter, export_id: str, table: str, todo: list[tuple[int, int]], window: int
) -> Iterator[tuple[int, int, bytes | None]]:
    futures: deque[tuple[int, int, Future]] = deque()
    pending = iter(todo)
    submit = converter.executor.submit
    try:
        for part, rows in pending:
            futures.append((part, rows, submit(converter.job, export_id, table, part)))
            if len(futures) >= window:
                break
        while futures:
            part, rows, future = futures.popleft()
            data = future.result()
            nxt = next(pending, None)
            if nxt is not None:
                futures.append((nxt[0], nxt[1], submit(converter.job, export_id, table, nxt[0])))
            yield part, rows, data
    finally:
        for _, _, future in futures:
            future.cancel()


def _staged_copy_texts(
    target: Target,
    export_id: str,
    table: str,
    todo: list[tuple[int, int]],
    converter: StagedConverter | None = None,
    ahead: int = 3,
) -> Iterator[tuple[int, int, bytes | None]]:
    """Yield ``(part, rows, copy_text)`` for staged parts in order.

    With the run's worker pool the conversions run in worker processes, a window
    ahead; without one (a ``finalize()`` call on its own) on one helper thread,
    which shares the GIL with the thread feeding COPY and so overlaps less.
    """
    if converter is not None:
        yield from _converted_by_pool(converter, export_id, table, todo, ahead * 2)
        return
    out: queue.Queue[tuple] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def produce() -> None:
        try:
            with target.connect() as conn:
                for part, rows in todo:
                    if stop.is_set():
                        return
                    out.put(("ok", part, rows, convert_staged(conn, target, export_id, table, part)))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the consuming thread
            out.put(("error", exc))

    helper = threading.Thread(target=produce, name=f"tdtp-convert-{export_id}", daemon=True)
    helper.start()
    try:
        for _ in todo:
            item = out.get()
            if item[0] == "error":
                raise item[1]
            yield item[1], item[2], item[3]
    finally:
        stop.set()
        while helper.is_alive():  # let a producer blocked on a full queue finish
            with contextlib.suppress(queue.Empty):
                out.get(timeout=0.05)
        helper.join()
