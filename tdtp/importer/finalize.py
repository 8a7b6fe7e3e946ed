"""Finalize: decide whether an export may be published, then publish it in ONE transaction.

Whether an export may be published into its table is :mod:`tdtp.importer.readiness`'s
call (summary in, parts 1..N in the ledger, no dead letter, rows and checksum as the
summary says; or superseded, or abandoned).  Then, by
write mode: ``replace`` deletes the partition's rows (the summary's
``extra["partition_filter"]``; all rows when the export is the whole table) and
loads the export's rows; ``upsert`` inserts or updates by the key fields;
``append`` inserts.  The same transaction marks the parts published and the
export finalized and records which table it is now in (so a table dropped since is
noticed), so finalize is idempotent: a second call sees ``finalized``.  Two importers
of one export take turns on its publish lock: the second waits (``publish_wait``) and
then finds it published.

PostgreSQL publishes by the strategy chosen at the export's first part
(``_tdtp_exports.publish``): ``copy`` loads with COPY (:mod:`tdtp.importer.copy_publish`),
usually through a live publisher (:mod:`tdtp.importer.live`) that started while parts were arriving
(:func:`finish_live` is its last step and :func:`finalize_export` the same thing
done in one go); ``swap`` / ``attach`` find the rows already in a load table and
publish it by a catalog change (:mod:`tdtp.importer.swap_publish`).  SQLite moves its
staging table's rows with ``INSERT ... SELECT``.

Exports that can never be complete (a stream from a producer that sends no
summary, e.g. the Go tool) are published *partially* in upsert/append mode:
what is staged goes to the target and the export stays open for more.  That is
still exactly-once (each part is published once, the ledger says which) but not
atomic per partition, which is why replace mode refuses it.
"""

from __future__ import annotations

import time
from typing import Any

from tdtp.importer.bookkeeping import publish_lock
from tdtp.importer.copy_publish import PgPublish, StagedConverter
from tdtp.importer.dead_letters import add_dead_letter, settle_export_dead_letters
from tdtp.importer.errors import PublishError, first_line, is_db_error, is_transient_db_error
from tdtp.importer.evolve import evolve_target, record_applied
from tdtp.importer.ledger import (
    ExportRecord,
    forget_landing,
    load_export,
    mark_published,
    other_exports,
    pending_parts,
    set_state,
)
from tdtp.importer.outcome import (
    ABANDONED,
    BLOCKED,
    BUSY,
    COPY,
    ERROR,
    FINALIZED,
    IMPORTING,
    LOAD_TABLE_STRATEGIES,
    NO_SUMMARY,
    REPLACE,
    SUPERSEDED,
    UPSERT,
    FinalizeResult,
)
from tdtp.importer.readiness import assess, instant, newer_finalized
from tdtp.importer.swap_publish import drop_load_table, lock_load, publish_export, publish_partial
from tdtp.importer.target import EXPORTS, LEDGER, STAGE_PARTS, Target
from tdtp.importer.writemode import delete_replaced, on_conflict, partition_predicate, upsert_keys
from tdtp.packet import TdtpError
from tdtp.sinks.schema_change import SchemaChange

#: How long a second importer waits for another one publishing the same export (seconds).
PUBLISH_WAIT_SECONDS = 300.0


# ------------------------------------------------------------------ closing exports


def _drop_staged(target: Target, conn: Any, rec: ExportRecord) -> None:
    """An export that will never be published: its staged bodies, load table or stage table go."""
    if target.is_pg:
        target.execute(
            conn,
            f"DELETE FROM {target.book(STAGE_PARTS)} WHERE export_id = %s AND table_name = %s",
            (rec.export_id, rec.table_name),
        )
        drop_load_table(target, conn, rec)
    elif _sqlite_stage_exists(conn, rec.stage_table):
        conn.execute(f"DROP TABLE {target.book(rec.stage_table)}")


def _supersede(target: Target, conn: Any, rec: ExportRecord, newer: str) -> FinalizeResult:
    note = f"a newer export {newer} of the same partition is already published"
    _drop_staged(target, conn, rec)
    set_state(target, conn, rec, status=SUPERSEDED, note=note)
    return FinalizeResult(rec.export_id, SUPERSEDED, reason=note)


def _abandon(target: Target, conn: Any, rec: ExportRecord, why: str) -> FinalizeResult:
    """Give up an export that will never be complete; its ledger rows stay, so re-reads are duplicates."""
    _drop_staged(target, conn, rec)
    set_state(target, conn, rec, status=ABANDONED, note=why)
    return FinalizeResult(rec.export_id, ABANDONED, reason=why)


def _abandon_overtaken(target: Target, conn: Any, rec: ExportRecord) -> None:
    """After ``rec`` is published: exports of the same partition without a summary, made before it, end."""
    mine = instant(rec.summary.started_at if rec.summary is not None else None)
    if mine is None or rec.mode != REPLACE:  # only a replace puts the whole partition in place
        return
    for other in other_exports(target, conn, rec, status=IMPORTING):
        made = instant(other.produced_at)
        if other.mode == REPLACE and other.summary is None and not other.total_parts and made is not None \
                and made < mine:  # fmt: skip
            _abandon(target, conn, other, f"no summary, and a newer export {rec.export_id} of the same "
                     "table and partition is published")  # fmt: skip


def _published(
    target: Target,
    conn: Any,
    rec: ExportRecord,
    moved: int,
    partial: bool,
    *,
    strategy: str = "",
    note: str | None = None,
    change: SchemaChange | None = None,
) -> FinalizeResult:
    strategy = strategy or (rec.publish or COPY if target.is_pg else "")
    record_applied(target, conn, rec, change)
    note = rec.publish_note if note is None else note
    if partial:
        set_state(target, conn, rec, status=IMPORTING, note=NO_SUMMARY, add_rows=moved)
        return FinalizeResult(
            rec.export_id,
            NO_SUMMARY,
            rows_published=moved,
            reason=f"no summary: published {moved:,} rows; the export stays open for more parts",
            strategy=strategy,
            strategy_note=note,
        )
    set_state(target, conn, rec, status=FINALIZED, note="", add_rows=moved, finalized=True)
    _abandon_overtaken(target, conn, rec)
    if target.is_pg and (strategy != rec.publish or note != rec.publish_note):
        target.execute(
            conn,
            f"UPDATE {target.book(EXPORTS)} SET publish_note = %s WHERE export_id = %s AND table_name = %s",
            (f"published by {strategy}" + (f": {note}" if note else ""), rec.export_id, rec.table_name),
        )
    return FinalizeResult(
        rec.export_id, FINALIZED, finalized=True, rows_published=moved, strategy=strategy, strategy_note=note
    )


# ---------------------------------------------------------------------------- finalize


def finalize_export(
    target: Target,
    conn: Any,
    export_id: str,
    table: str,
    *,
    allow_partial: bool = False,
    retries: int = 3,
    backoff_seconds: float = 0.2,
    converter: StagedConverter | None = None,
    publish_wait: float = PUBLISH_WAIT_SECONDS,
    abandon_after: float | None = None,
) -> FinalizeResult:
    """Publish ``export_id`` into ``table`` if it is ready; otherwise say exactly what it is waiting for.

    ``allow_partial``: an export with no summary and no TotalParts in upsert/append
    mode publishes what is staged so far (see the module docstring).  A failure
    of the moment (lock timeout, lost connection) is retried with backoff.
    ``publish_wait``: how long to wait for another importer publishing the same
    export; ``abandon_after``: give up an export without a summary once no part of
    it arrived for this long (None: only when a newer export is published).
    """
    started = time.perf_counter()
    delay = backoff_seconds
    for attempt in range(retries + 1):
        try:
            result = _finalize_once(
                target, conn, export_id, table, allow_partial, converter, publish_wait, abandon_after
            )
            break
        except Exception as exc:
            if attempt >= retries or not is_transient_db_error(exc):
                result = _error(target, conn, export_id, table, exc)
                break
            time.sleep(delay)
            delay *= 2
    result.seconds = time.perf_counter() - started
    return result


def _finalize_once(
    target: Target,
    conn: Any,
    export_id: str,
    table: str,
    allow_partial: bool,
    converter: StagedConverter | None,
    publish_wait: float,
    abandon_after: float | None,
) -> FinalizeResult:
    try:
        with target.transaction(conn):
            if not publish_lock(target, conn, export_id, table, wait_seconds=publish_wait):
                return FinalizeResult(
                    export_id, BUSY,
                    reason=f"another import kept publishing this export for more than {publish_wait:g} s",
                )  # fmt: skip
            verdict = assess(
                target, conn, export_id, table, allow_partial=allow_partial, abandon_after=abandon_after
            )
            if verdict.result is not None:
                return verdict.result
            rec = verdict.rec
            assert rec is not None
            if verdict.abandon:
                return _abandon(target, conn, rec, verdict.abandon)
            if verdict.newer is not None:
                return _supersede(target, conn, rec, verdict.newer)
            if target.is_pg and rec.publish in LOAD_TABLE_STRATEGIES:
                return _publish_swap(target, conn, rec, verdict.partial)
            if target.is_pg:
                pub = PgPublish(target, conn, rec, converter)
                pub.prepare()
                return _published(target, conn, rec, pub.publish_pending(), verdict.partial, change=pub.change)
            moved, change = _publish_sqlite(target, conn, rec, complete=not verdict.partial)
            return _published(target, conn, rec, moved, verdict.partial, change=change)
    except PublishError as exc:
        return dead_letter_staged(target, conn, export_id, table, exc)


def _publish_swap(target: Target, conn: Any, rec: ExportRecord, partial: bool) -> FinalizeResult:
    """Swap/attach export: its rows are in the load table; publish that (see tdtp.importer.swap_publish)."""
    lock_load(target, conn, rec)  # no part lands in it while it is published
    pending = pending_parts(target, conn, rec.export_id, rec.table_name)
    rows = sum(r for _, r, _ in pending)
    if partial:  # no summary, mode switched to upsert/append: move what is there, keep loading
        out = publish_partial(target, conn, rec)
    else:
        out = publish_export(target, conn, rec, rows, lambda: newer_finalized(target, conn, rec))
    if out.superseded_by is not None:
        return _supersede(target, conn, rec, out.superseded_by)
    mark_published(target, conn, rec.export_id, rec.table_name, [p for p, _, _ in pending])
    note = "; ".join(x for x in (rec.publish_note, out.note) if x)
    return _published(target, conn, rec, out.rows, partial, strategy=out.how, note=note)


def finish_live(target: Target, conn: Any, live: Any, pub: Any, *, allow_partial: bool) -> FinalizeResult:
    """Last step of a live publisher (its own connection, its transaction still open).

    ``live`` is the :class:`tdtp.importer.live.LivePublisher` (its export, table, mode,
    predicate and failure); ``pub`` the :class:`PgPublish` its transaction has been feeding.
    """
    started = time.perf_counter()
    try:
        if live.failure is not None:
            raise live.failure
        verdict = assess(
            target, conn, live.export_id, live.table, allow_partial=allow_partial, abandon_after=live.abandon_after
        )
        if verdict.result is not None:
            conn.rollback()
            result = verdict.result
        elif verdict.abandon or verdict.newer is not None:
            conn.rollback()
            rec = verdict.rec
            result = _abandon(target, conn, rec, verdict.abandon) if verdict.abandon else _supersede(
                target, conn, rec, verdict.newer
            )
            conn.commit()
        elif verdict.rec.mode != live.mode or (
            live.mode == REPLACE and partition_predicate(target, verdict.rec.summary) != live.predicate
        ):
            # The summary named another partition than the live transaction assumed: start over.
            conn.rollback()
            result = finalize_export(
                target,
                _autocommit(target, conn),
                live.export_id,
                live.table,
                allow_partial=allow_partial,
                converter=live.converter,
                abandon_after=live.abandon_after,
            )
        else:
            result = _published(
                target, conn, verdict.rec, pub.publish_pending(), verdict.partial, change=pub.change
            )
            conn.commit()
    except PublishError as exc:
        conn.rollback()
        result = dead_letter_staged(target, _autocommit(target, conn), live.export_id, live.table, exc)
    except Exception as exc:
        conn.rollback()
        result = _error(target, _autocommit(target, conn), live.export_id, live.table, exc)
    result.seconds = time.perf_counter() - started
    return result


def _autocommit(target: Target, conn: Any) -> Any:
    """The live publisher's connection, switched to autocommit for the follow-up transactions."""
    if target.is_pg and not conn.autocommit:
        conn.rollback()
        conn.autocommit = True
    return conn


def dead_letter_staged(target: Target, conn: Any, export_id: str, table: str, exc: Any) -> FinalizeResult:
    """The target refused a staged part while publishing: turn that part into a dead letter.

    Its ledger row and staged body go (so a good copy or a replay can land it
    again) and the export stays blocked until then, like a part that failed to
    decode.  The publish itself was rolled back: nothing of the export is visible.
    """
    reason = f"publishing export {export_id}: {exc}"
    part = getattr(exc, "part", -1)
    if part is None or part < 1 or not target.is_pg:
        _note_error(target, conn, export_id, table, reason)
        return FinalizeResult(export_id, ERROR, reason=reason)
    key = "WHERE export_id = %s AND table_name = %s AND part_number = %s"
    with target.transaction(conn):
        row = target.execute(
            conn, f"SELECT body FROM {target.book(STAGE_PARTS)} {key}", (export_id, table, part)
        ).fetchone()
        if row is not None:
            target.execute(conn, f"DELETE FROM {target.book(STAGE_PARTS)} {key}", (export_id, table, part))
            target.execute(conn, f"DELETE FROM {target.book(LEDGER)} {key}", (export_id, table, part))
    if row is not None:
        add_dead_letter(
            target,
            conn,
            export_id=export_id,
            part=part,
            table=table,
            reason=reason,
            body=bytes(row[0]),
            source="publish",
        )
    _note_error(target, conn, export_id, table, reason)
    return FinalizeResult(
        export_id, BLOCKED, reason=reason, dead_lettered_part=part if row is not None else None
    )


def _error(target: Target, conn: Any, export_id: str, table: str, exc: BaseException) -> FinalizeResult:
    if isinstance(exc, TdtpError):
        reason = str(exc)
    elif is_db_error(exc):
        reason = f"publish failed: {first_line(exc)}"
    else:
        raise exc
    _note_error(target, conn, export_id, table, reason)
    return FinalizeResult(export_id, ERROR, reason=reason)


def _note_error(target: Target, conn: Any, export_id: str, table: str, reason: str) -> None:
    try:
        with target.transaction(conn):
            rec = load_export(target, conn, export_id, table)
            if rec is not None:
                set_state(target, conn, rec, note=f"{ERROR}: {reason}")
    except Exception as exc:  # the note is a courtesy; the result already carries the reason
        if not is_db_error(exc):
            raise


def reset_export(target: Target, conn: Any, export_id: str, table: str, *, force: bool = False) -> int:
    """Forget what landed of an export in ``table`` (see :meth:`ParallelImporter.reset`)."""
    with target.transaction(conn):
        rec = load_export(target, conn, export_id, table)
        if rec is not None and rec.status == FINALIZED and rec.mode != REPLACE and not force:
            raise TdtpError(
                f"export {export_id} is published into {table!r} in {rec.mode} mode: importing it again "
                "after a reset would add its rows twice; give --force if its rows are gone",
                where=export_id,
            )
        if rec is not None:
            _drop_staged(target, conn, rec)
            forget_landing(target, conn, export_id, table)
            set_state(target, conn, rec, note="reset: its parts land again at the next import")
        return settle_export_dead_letters(target, conn, export_id, table, "reset")


# ------------------------------------------------------------------------------ SQLite


def _sqlite_stage_exists(conn: Any, stage: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (stage,)).fetchone()
        is not None
    )


def _publish_sqlite(
    target: Target, conn: Any, rec: ExportRecord, *, complete: bool
) -> tuple[int, SchemaChange]:
    """Move the staged rows into the target (inside the caller's transaction); return the row count
    and the schema change it took."""
    pending = pending_parts(target, conn, rec.export_id, rec.table_name)
    expected = sum(r for _, r, _ in pending)
    stage = target.book(rec.stage_table)
    staged = (
        conn.execute(f"SELECT count(*) FROM {stage}").fetchone()[0]
        if _sqlite_stage_exists(conn, rec.stage_table)
        else 0
    )
    if staged != expected:
        raise TdtpError(f"staging holds {staged} rows, the ledger's unpublished parts {expected}")
    table = target.table(rec.table_name)
    change = evolve_target(target, conn, rec)  # the table changes first, if it must
    discarded = change.discarded_names
    if rec.mode == REPLACE:
        delete_replaced(target, conn, table, partition_predicate(target, rec.summary))
    if staged:
        kept = [n for n, _ in rec.columns if n not in discarded]
        cols = ", ".join(target.ident(n) for n in kept)
        sql = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}"
        if rec.mode == UPSERT:
            keys = upsert_keys(target, conn, rec)
            # WHERE true: SQLite's parser needs it before an upsert clause after a SELECT
            sql += " WHERE true " + on_conflict(target, keys, kept)
        conn.execute(sql)
    mark_published(target, conn, rec.export_id, rec.table_name, [p for p, _, _ in pending])
    if complete:
        conn.execute(f"DROP TABLE IF EXISTS {stage}")
    elif staged:
        conn.execute(f"DELETE FROM {stage}")
    return staged, change
