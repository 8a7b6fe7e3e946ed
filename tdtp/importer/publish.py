"""PostgreSQL copy publish: one transaction COPYs an export's rows into the target, while parts arrive.

This is the ``copy`` strategy (upsert, append, and replace where a swap is not
possible or not wanted); the ``swap`` / ``attach`` strategies of replace mode are
in :mod:`tdtp.importer.swap`.

Rows reach the target once, by COPY, in a single transaction that also marks the
export finalized: readers see the old partition until the commit and the whole
new one after it.  That transaction can open as soon as the first part is staged
(a *live* publisher, a thread with its own connection): each part's COPY text,
made by the worker that staged it, is loaded while the next parts are still
being decoded or even exported, so the import ends one part after the export.
If the run ends before the export is complete, the transaction rolls back and
the staged bodies wait for the next run, which starts over from them.

A publisher holds a transaction-scoped advisory lock per export instead of a row
lock, so workers keep updating the export's bookkeeping row meanwhile, and a
second importer of the same export knows to leave publishing to the first.

Write modes: ``replace`` deletes the partition (or the whole table) first, then
COPYs into the target; ``append`` COPYs into the target; ``upsert`` COPYs each
part into a temporary table and merges it with ``INSERT ... ON CONFLICT``.  The
publish transaction runs with ``TimeZone = UTC``: partition bounds and naive
timestamps that TDTP marks as UTC are read as UTC.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from concurrent.futures import Executor, Future
from typing import Any

import psycopg

from tdtp.codec import decode_packet
from tdtp.importer.ledger import ExportRecord, mark_published, pending_parts
from tdtp.importer.target import STAGE_PARTS, Target
from tdtp.importer.writemode import delete_replaced, on_conflict, upsert_keys
from tdtp.packet import TdtpError
from tdtp.sinks.copy_text import lines_to_copy

_UPSERT_TEMP = "_tdtp_upsert"


class PublishError(TdtpError):
    """The target refused a part's rows while publishing (bad value, constraint, key conflict)."""

    def __init__(self, part: int, message: str, *, where: str = "") -> None:
        super().__init__(message, where=where or f"part {part}")
        self.part = part

    def at(self, where: str) -> PublishError:
        return PublishError(self.part, self.message, where=f"{where}: {self.where}")


def predicate_sql(target: Target, rec: ExportRecord) -> tuple[str, tuple] | None:
    from tdtp.importer.finalize import partition_predicate

    return partition_predicate(target, rec.summary)


def describe_pg_error(exc: psycopg.Error) -> str:
    """The server's message plus its context (the COPY line and column of a bad value)."""
    diag = exc.diag
    text = diag.message_primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if diag.message_detail:
        text += f" ({diag.message_detail.strip()})"
    if diag.context:
        text += f" [{diag.context.strip().splitlines()[0]}]"
    return text


class PgPublish:
    """An export's rows going into the target inside the caller's open transaction."""

    def __init__(
        self, target: Target, conn: Any, rec: ExportRecord, executor: Executor | None = None
    ) -> None:
        self.target = target
        self.conn = conn
        self.rec = rec
        self.executor = executor
        self.columns = [name for name, _ in rec.columns]
        self.published: dict[int, int] = {}
        self.predicate: tuple[str, tuple] | None = None
        self._merge_sql = ""
        cols = ", ".join(target.ident(n) for n in self.columns)
        dest = _UPSERT_TEMP if rec.mode == "upsert" else target.table(rec.table_name)
        self._copy_sql = f"COPY {dest} ({cols}) FROM STDIN WITH (FORMAT text, DELIMITER '|')"
        self._cols = cols

    def prepare(self) -> None:
        """Delete what ``replace`` replaces; set up the merge table for ``upsert``."""
        self.conn.execute("SET LOCAL TimeZone = 'UTC'")
        table = self.target.table(self.rec.table_name)
        if self.rec.mode == "replace":
            self.predicate = predicate_sql(self.target, self.rec)
            delete_replaced(self.target, self.conn, table, self.predicate)
        elif self.rec.mode == "upsert":
            keys = upsert_keys(self.target, self.conn, self.rec)
            self.conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_UPSERT_TEMP} ON COMMIT DROP AS "
                f"SELECT {self._cols} FROM {table} WITH NO DATA"
            )
            self._merge_sql = (
                f"INSERT INTO {table} ({self._cols}) SELECT {self._cols} FROM {_UPSERT_TEMP} "
                + on_conflict(self.target, keys, list(self.columns))
            )

    def add(self, part: int, rows: int, data: bytes | None) -> None:
        """Load one part's COPY text (``None`` for an empty part)."""
        if part in self.published:
            return
        loaded = 0
        if data:
            try:
                with self.conn.cursor() as cur:
                    with cur.copy(self._copy_sql) as copy:
                        copy.write(data)
                    loaded = cur.rowcount
                    if self._merge_sql:
                        cur.execute(self._merge_sql)
                        cur.execute(f"TRUNCATE {_UPSERT_TEMP}")
            except psycopg.Error as exc:
                raise PublishError(
                    part, f"the target refused the part's rows: {describe_pg_error(exc)}"
                ) from exc
        if loaded != rows:
            raise PublishError(part, f"COPY loaded {loaded} rows, the ledger says {rows}")
        self.published[part] = loaded

    def pending(self) -> list[tuple[int, int, bool]]:
        return pending_parts(self.target, self.conn, self.rec.export_id)

    def publish_pending(self) -> int:
        """Load every unpublished ledger part not loaded yet; mark them all published; return rows moved.

        Parts not fed live (staged by an earlier run, by another importer, or all
        of them when publishing at the end) are read back and converted on a
        helper thread with its own connection, a few parts ahead, so decoding
        overlaps the server's COPY work instead of alternating with it.
        """
        pending = self.pending()
        todo = [(p, r) for p, r, _ in pending if p not in self.published]
        if todo:
            for part, rows, data in _staged_copy_texts(self.target, self.rec.export_id, todo, self.executor):
                self.add(part, rows, data)
        parts = [p for p, _, _ in pending]
        mark_published(self.target, self.conn, self.rec.export_id, parts)
        return sum(self.published.get(p, 0) for p in parts)


def convert_staged(conn: Any, target: Target, export_id: str, part: int) -> bytes | None:
    """A staged part's rows as COPY text, read back from the stage (binary fetch: no hex round trip)."""
    row = conn.execute(
        f"SELECT body FROM {target.book(STAGE_PARTS)} WHERE export_id = %s AND part_number = %s",
        (export_id, part),
        binary=True,
    ).fetchone()
    if row is None:
        raise PublishError(part, "the part is in the ledger but its staged body is missing")
    packet = decode_packet(bytes(row[0]), where=f"staged part {part} of {export_id}")
    return lines_to_copy(packet.schema, packet.rows).encode() if packet.rows else None


def _converted_by_pool(executor: Executor, export_id: str, todo: list[tuple[int, int]], window: int) -> Any:
    from tdtp.importer.work import convert_staged_job

    futures: deque[tuple[int, int, Future]] = deque()
    pending = iter(todo)
    try:
        for part, rows in pending:
            futures.append((part, rows, executor.submit(convert_staged_job, export_id, part)))
            if len(futures) >= window:
                break
        while futures:
            part, rows, future = futures.popleft()
            data = future.result()
            nxt = next(pending, None)
            if nxt is not None:
                futures.append((nxt[0], nxt[1], executor.submit(convert_staged_job, export_id, nxt[0])))
            yield part, rows, data
    finally:
        for _, _, future in futures:
            future.cancel()


def _staged_copy_texts(
    target: Target,
    export_id: str,
    todo: list[tuple[int, int]],
    executor: Executor | None = None,
    ahead: int = 3,
) -> Any:
    """Yield ``(part, rows, copy_text)`` for staged parts in order.

    With the run's worker pool the conversions run in worker processes, a window
    ahead; without one (a ``finalize()`` call on its own) on one helper thread,
    which shares the GIL with the thread feeding COPY and so overlaps less.
    """
    if executor is not None:
        yield from _converted_by_pool(executor, export_id, todo, ahead * 2)
        return
    out: queue.Queue[tuple] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def produce() -> None:
        try:
            with target.connect() as conn:
                for part, rows in todo:
                    if stop.is_set():
                        return
                    out.put(("ok", part, rows, convert_staged(conn, target, export_id, part)))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the consuming thread
            out.put(("error", exc))

    helper = threading.Thread(target=produce, name=f"tdtp-restage-{export_id}", daemon=True)
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


_FINISH = "finish"
_ABORT = "abort"


class LivePublisher:
    """A thread running one export's publish transaction while its parts are still arriving.

    ``feed`` hands it a part's COPY text (blocking when it lags behind: that is
    backpressure on receiving); ``finish`` runs the final checks and commits;
    ``abort`` rolls back.  The receiving thread only ever talks to it through
    its queue.
    """

    def __init__(
        self,
        target: Target,
        export_id: str,
        *,
        lock_timeout: float,
        queue_parts: int,
        executor: Executor | None = None,
    ) -> None:
        self.executor = executor
        self.target = target
        self.export_id = export_id
        self.lock_timeout = lock_timeout
        self._queue: queue.Queue[tuple] = queue.Queue(maxsize=max(1, queue_parts))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tdtp-publish-{export_id}", daemon=True)
        self.live = False
        self.reason = ""  # why it did not go live
        self.failure: PublishError | None = None
        self.result: Any = None
        self.predicate: tuple[str, tuple] | None = None
        self.mode = ""

    def start(self) -> bool:
        self._thread.start()
        self._ready.wait()
        return self.live

    def feed(self, part: int, rows: int, data: bytes | None) -> None:
        if self._thread.is_alive():
            self._queue.put(("part", part, rows, data))

    def finish(self, *, allow_partial: bool = False) -> Any:
        """Final checks and commit (or a partial publish); returns a FinalizeResult."""
        if self._thread.is_alive():
            self._queue.put((_FINISH, allow_partial))
            self._thread.join()
        return self.result

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put((_ABORT,))
            self._thread.join()

    # ------------------------------------------------------------- the thread
    def _run(self) -> None:
        from tdtp.importer import finalize

        try:
            conn = self.target.connect(lock_timeout=self.lock_timeout, autocommit=False)
        except TdtpError as exc:
            self.reason = exc.message
            self._ready.set()
            return
        try:
            pub = self._begin(conn)
            self._ready.set()
            if pub is None:
                return
            # Parts staged before this publisher started (earlier runs) are loaded at
            # finish, not now: if this run ends before the export is complete, the
            # rollback then throws away only the parts that arrived in this run.
            while True:
                item = self._queue.get()
                kind = item[0]
                if kind == "part":
                    self._guard(pub, lambda i=item: pub.add(i[1], i[2], i[3]))
                elif kind == _FINISH:
                    self.result = finalize.finish_live(self.target, conn, self, pub, allow_partial=item[1])
                    return
                else:
                    conn.rollback()
                    return
        except Exception as exc:  # noqa: BLE001 - reported through result; the thread must not die silently
            conn.rollback()
            self.result = finalize.FinalizeResult(self.export_id, finalize.ERROR, reason=str(exc))
        finally:
            self._ready.set()
            conn.close()
            # Unblock a receiver waiting on a full queue of a thread that has ended.
            while not self._queue.empty():
                self._queue.get_nowait()

    def _begin(self, conn: Any) -> PgPublish | None:
        from tdtp.importer.finalize import FINALIZED, SUPERSEDED
        from tdtp.importer.ledger import load_export, try_publish_lock

        if not try_publish_lock(self.target, conn, self.export_id):
            self.reason = "another import is publishing this export"
            conn.rollback()
            return None
        rec = load_export(self.target, conn, self.export_id)
        if rec is None or rec.status in (FINALIZED, SUPERSEDED) or not rec.columns:
            self.reason = "nothing to publish"
            conn.rollback()
            return None
        if rec.publish in ("swap", "attach"):
            self.reason = f"published by {rec.publish}: the workers load its rows in place"
            conn.rollback()
            return None
        pub = PgPublish(self.target, conn, rec, self.executor)
        try:
            # Deleting a partition another export is replacing right now would wait for that
            # export's whole import: give up quickly and publish this one at the end instead.
            conn.execute("SET LOCAL lock_timeout = '2s'")
            pub.prepare()
            conn.execute(f"SET LOCAL lock_timeout = '{int(self.lock_timeout * 1000)}ms'")
        except (TdtpError, psycopg.Error) as exc:
            self.reason = str(exc)
            conn.rollback()
            return None
        self.predicate = pub.predicate
        self.mode = rec.mode
        self.live = True
        return pub

    def _guard(self, pub: PgPublish, action: Any) -> None:
        """Run a load; after the first refusal keep draining the queue but load nothing more."""
        if self.failure is not None:
            return
        try:
            action()
        except PublishError as exc:
            self.failure = exc
        except psycopg.Error as exc:
            self.failure = PublishError(-1, describe_pg_error(exc))
