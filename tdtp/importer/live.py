"""The live publisher: an export's publish transaction, open while its parts still arrive.

PostgreSQL, copy strategy (:mod:`tdtp.importer.copy_publish`).  As soon as an
export's first part is staged, a thread with its own connection opens the publish
transaction, deletes what a replace replaces, and COPYs each part's rows as the
worker that staged it hands over its COPY text.  Publishing thus overlaps decoding
and even the export itself: the import ends one part after the export does.  If
the run ends before the export is complete, the transaction rolls back and the
staged bodies wait for the next run, which starts over from them.

The publisher holds a transaction-scoped advisory lock per export instead of a row
lock, so workers keep updating the export's bookkeeping row meanwhile, and a second
importer of the same export knows to leave publishing to the first.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import psycopg

from tdtp.importer.bookkeeping import publish_lock
from tdtp.importer.copy_publish import PgPublish, StagedConverter
from tdtp.importer.errors import PublishError, describe_pg_error
from tdtp.importer.evolve import stored_change
from tdtp.importer.finalize import finish_live
from tdtp.importer.ledger import load_export
from tdtp.importer.outcome import CLOSED_STATES, ERROR, LOAD_TABLE_STRATEGIES, FinalizeResult
from tdtp.importer.target import Target
from tdtp.packet import TdtpError

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
        table: str,
        *,
        lock_timeout: float,
        queue_parts: int,
        converter: StagedConverter | None = None,
        abandon_after: float | None = None,
    ) -> None:
        self.converter = converter
        self.target = target
        self.export_id = export_id
        self.table = table
        self.abandon_after = abandon_after
        self.lock_timeout = lock_timeout
        self._queue: queue.Queue[tuple] = queue.Queue(maxsize=max(1, queue_parts))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tdtp-publish-{export_id}", daemon=True)
        self.live = False
        self.reason = ""  # why it did not go live
        self.failure: PublishError | None = None
        self.result: FinalizeResult | None = None
        self.predicate: tuple[str, tuple] | None = None
        self.mode = ""

    def start(self) -> bool:
        self._thread.start()
        self._ready.wait()
        return self.live

    def feed(self, part: int, rows: int, data: bytes | None) -> None:
        if self._thread.is_alive():
            self._queue.put(("part", part, rows, data))

    def finish(self, *, allow_partial: bool = False) -> FinalizeResult | None:
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
                    self.result = finish_live(self.target, conn, self, pub, allow_partial=item[1])
                    return
                else:
                    conn.rollback()
                    return
        except Exception as exc:  # noqa: BLE001 - reported through result; the thread must not die silently
            conn.rollback()
            self.result = FinalizeResult(self.export_id, ERROR, reason=str(exc))
        finally:
            self._ready.set()
            conn.close()
            # Unblock a receiver waiting on a full queue of a thread that has ended.
            while not self._queue.empty():
                self._queue.get_nowait()

    def _begin(self, conn: Any) -> PgPublish | None:
        if not publish_lock(self.target, conn, self.export_id, self.table, wait_seconds=0):
            self.reason = "another import is publishing this export"
            conn.rollback()
            return None
        rec = load_export(self.target, conn, self.export_id, self.table)
        if rec is None or rec.status in CLOSED_STATES or not rec.columns:
            self.reason = "nothing to publish"
            conn.rollback()
            return None
        change = stored_change(rec)
        if change is not None and change.needs_ddl:
            # ALTER TABLE would lock readers out for as long as the parts keep arriving.
            self.reason = f"the export changes the table's columns ({change.describe()}): published at the end"
            conn.rollback()
            return None
        if rec.publish in LOAD_TABLE_STRATEGIES:
            self.reason = f"published by {rec.publish}: the workers load its rows in place"
            conn.rollback()
            return None
        pub = PgPublish(self.target, conn, rec, self.converter)
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
