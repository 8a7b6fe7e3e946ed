"""Finalize: decide whether an export may be published, then publish it in ONE transaction.

An export is ready once the summary (or a batch part's TotalParts) says how many
parts there are, parts 1..TotalParts are all in the ledger, no dead letter is
open, and the ledger's row count and checksum equal the summary's.  Then, by
write mode: ``replace`` deletes the partition's rows (the summary's
``extra["partition_filter"]``; all rows when the export is the whole table) and
loads the export's rows; ``upsert`` inserts or updates by the key fields;
``append`` inserts.  The same transaction marks the parts published and the
export finalized, so finalize is idempotent: a second call sees ``finalized``.

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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tdtp.importer.copy_publish import PgPublish, StagedConverter
from tdtp.importer.errors import PublishError, first_line, is_db_error, is_transient_db_error
from tdtp.importer.ledger import (
    ExportRecord,
    add_dead_letter,
    checksum_sum,
    ledger_parts,
    load_export,
    mark_published,
    now_sql,
    open_dead_letters,
    pending_parts,
    try_publish_lock,
)
from tdtp.importer.outcome import (
    APPEND,
    BLOCKED,
    BUSY,
    COPY,
    ERROR,
    FINALIZED,
    IMPORTING,
    LOAD_TABLE_STRATEGIES,
    MISMATCH,
    NO_SUMMARY,
    REPLACE,
    SUPERSEDED,
    UNKNOWN,
    UPSERT,
    WAITING,
    FinalizeResult,
    ranges,
)
from tdtp.importer.swap_publish import drop_load_table, lock_load, publish_export, publish_partial
from tdtp.importer.target import EXPORTS, LEDGER, STAGE_PARTS, Target
from tdtp.importer.writemode import delete_replaced, on_conflict, partition_predicate, upsert_keys
from tdtp.packet import Summary, TdtpError

# --------------------------------------------------------------------------- readiness


@dataclass
class _Verdict:
    result: FinalizeResult | None = None  # set: not publishable now, and why
    rec: ExportRecord | None = None
    partial: bool = False
    newer: str | None = None  # a newer export of the same partition is already published


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _newer_finalized(target: Target, conn: Any, rec: ExportRecord) -> str | None:
    """Id of an already published export of the same table and partition that started later."""
    if rec.summary is None or not rec.summary.started_at:
        return None
    rows = target.execute(
        conn,
        f'SELECT export_id, summary FROM {target.book(EXPORTS)} WHERE table_name = %s AND "partition" = %s '
        "AND status = 'finalized' AND export_id <> %s AND summary IS NOT NULL",
        (rec.table_name, rec.partition, rec.export_id),
    ).fetchall()
    mine = _instant(rec.summary.started_at)
    for other_id, text in rows:
        theirs = _instant(Summary.from_json(text).started_at)
        if mine is not None and theirs is not None and theirs > mine:
            return other_id
    return None


def _assess(target: Target, conn: Any, export_id: str, allow_partial: bool) -> _Verdict:
    rec = load_export(target, conn, export_id)
    if rec is None:
        return _Verdict(
            FinalizeResult(export_id, UNKNOWN, reason="no part or summary of this export is in the target")
        )
    if rec.status == FINALIZED:
        return _Verdict(FinalizeResult(export_id, FINALIZED, finalized=True, already=True))
    if rec.status == SUPERSEDED:
        return _Verdict(FinalizeResult(export_id, SUPERSEDED, reason=rec.note))
    dead = open_dead_letters(target, conn, export_id)
    if dead:
        parts = ranges(sorted({d.part_number for d in dead}))
        return _blocked(
            target, conn, rec, BLOCKED,
            f"{len(dead)} dead letter(s) (part {parts}: {dead[0].reason}); replay them or import good copies",
        )  # fmt: skip
    parts = ledger_parts(target, conn, export_id)
    present = {p for p, _, _ in parts}
    rows = sum(r for _, r, _ in parts)
    total = rec.total_parts
    if not total:
        if rec.summary is None and allow_partial and rec.mode in (UPSERT, APPEND):
            return _Verdict(rec=rec, partial=True)
        if rec.summary is None and allow_partial:
            return _blocked(
                target, conn, rec, NO_SUMMARY,
                f"no summary and no TotalParts: {len(parts)} parts staged, but replace mode needs to know the "
                "export is complete; import it with mode upsert or append",
            )  # fmt: skip
        return _Verdict(
            FinalizeResult(export_id, WAITING, reason=f"waiting for the summary ({len(parts)} parts in)")
        )
    beyond = sorted(p for p in present if p > total or p < 1)
    if beyond:
        return _blocked(target, conn, rec, MISMATCH, f"parts {ranges(beyond)} are outside 1..{total}")
    missing = sorted(set(range(1, total + 1)) - present)
    if missing:
        return _Verdict(
            FinalizeResult(
                export_id,
                WAITING,
                reason=f"waiting for part(s) {ranges(missing)} of {total} ({len(parts)} in)",
            )
        )
    if rec.summary is not None:
        if rows != rec.total_rows:
            return _blocked(
                target,
                conn,
                rec,
                MISMATCH,
                f"the ledger holds {rows:,} rows, the summary says {rec.total_rows:,}",
            )
        have = checksum_sum(parts)
        if have != rec.checksum:
            return _blocked(
                target,
                conn,
                rec,
                MISMATCH,
                f"ledger checksum {have} differs from the summary's {rec.checksum}",
            )
    if rec.mode == REPLACE:
        if rec.partition and partition_predicate(target, rec.summary) is None:
            return _blocked(
                target, conn, rec, BLOCKED,
                f"replace of partition {rec.partition!r} needs partition_filter in the summary; "
                "without it the whole table would be replaced",
            )  # fmt: skip
        newer = _newer_finalized(target, conn, rec)
        if newer is not None:
            return _Verdict(rec=rec, newer=newer)
    return _Verdict(rec=rec)


def _blocked(target: Target, conn: Any, rec: ExportRecord, state: str, reason: str) -> _Verdict:
    _set_note(target, conn, rec.export_id, f"{state}: {reason}")
    return _Verdict(FinalizeResult(rec.export_id, state, reason=reason))


def _set_note(target: Target, conn: Any, export_id: str, note: str) -> None:
    target.execute(
        conn,
        f"UPDATE {target.book(EXPORTS)} SET note = %s, updated_at = {now_sql(target)} WHERE export_id = %s",
        (note, export_id),
    )


def _mark(target: Target, conn: Any, export_id: str, status: str, moved: int, note: str) -> None:
    finalized = f", finalized_at = {now_sql(target)}" if status == FINALIZED else ""
    target.execute(
        conn,
        f"UPDATE {target.book(EXPORTS)} SET status = %s, note = %s, published_rows = published_rows + %s, "
        f"updated_at = {now_sql(target)}{finalized} WHERE export_id = %s",
        (status, note, moved, export_id),
    )


def _supersede(target: Target, conn: Any, rec: ExportRecord, newer: str) -> FinalizeResult:
    note = f"a newer export {newer} of the same partition is already published"
    if target.is_pg:
        target.execute(conn, f"DELETE FROM {target.book(STAGE_PARTS)} WHERE export_id = %s", (rec.export_id,))
        drop_load_table(target, conn, rec)
    elif _sqlite_stage_exists(conn, rec.stage_table):
        conn.execute(f"DROP TABLE {target.book(rec.stage_table)}")
    _mark(target, conn, rec.export_id, SUPERSEDED, 0, note)
    return FinalizeResult(rec.export_id, SUPERSEDED, reason=note)


def _published(
    target: Target,
    conn: Any,
    rec: ExportRecord,
    moved: int,
    partial: bool,
    *,
    strategy: str = "",
    note: str | None = None,
) -> FinalizeResult:
    strategy = strategy or (rec.publish or COPY if target.is_pg else "")
    note = rec.publish_note if note is None else note
    if partial:
        _mark(target, conn, rec.export_id, IMPORTING, moved, NO_SUMMARY)
        return FinalizeResult(
            rec.export_id,
            NO_SUMMARY,
            rows_published=moved,
            reason=f"no summary: published {moved:,} rows; the export stays open for more parts",
            strategy=strategy,
            strategy_note=note,
        )
    _mark(target, conn, rec.export_id, FINALIZED, moved, "")
    if target.is_pg and (strategy != rec.publish or note != rec.publish_note):
        target.execute(
            conn,
            f"UPDATE {target.book(EXPORTS)} SET publish_note = %s WHERE export_id = %s",
            (f"published by {strategy}" + (f": {note}" if note else ""), rec.export_id),
        )
    return FinalizeResult(
        rec.export_id, FINALIZED, finalized=True, rows_published=moved, strategy=strategy, strategy_note=note
    )


# ---------------------------------------------------------------------------- finalize


def finalize_export(
    target: Target,
    conn: Any,
    export_id: str,
    *,
    allow_partial: bool = False,
    retries: int = 3,
    backoff_seconds: float = 0.2,
    converter: StagedConverter | None = None,
) -> FinalizeResult:
    """Publish ``export_id`` if it is ready; otherwise say exactly what it is waiting for.

    ``allow_partial``: an export with no summary and no TotalParts in upsert/append
    mode publishes what is staged so far (see the module docstring).  A failure
    of the moment (lock timeout, lost connection) is retried with backoff.
    """
    started = time.perf_counter()
    delay = backoff_seconds
    for attempt in range(retries + 1):
        try:
            result = _finalize_once(target, conn, export_id, allow_partial, converter)
            break
        except Exception as exc:
            if attempt >= retries or not is_transient_db_error(exc):
                result = _error(target, conn, export_id, exc)
                break
            time.sleep(delay)
            delay *= 2
    result.seconds = time.perf_counter() - started
    return result


def _finalize_once(
    target: Target, conn: Any, export_id: str, allow_partial: bool, converter: StagedConverter | None = None
) -> FinalizeResult:
    try:
        with target.transaction(conn):
            if not try_publish_lock(target, conn, export_id):
                result = FinalizeResult(
                    export_id, BUSY, reason="another import is publishing this export now"
                )
            else:
                verdict = _assess(target, conn, export_id, allow_partial)
                if verdict.result is not None:
                    result = verdict.result
                elif verdict.newer is not None:
                    result = _supersede(target, conn, verdict.rec, verdict.newer)
                elif target.is_pg and verdict.rec.publish in LOAD_TABLE_STRATEGIES:
                    result = _publish_swap(target, conn, verdict.rec, verdict.partial)
                elif target.is_pg:
                    pub = PgPublish(target, conn, verdict.rec, converter)
                    pub.prepare()
                    result = _published(target, conn, verdict.rec, pub.publish_pending(), verdict.partial)
                else:
                    moved = _publish_sqlite(target, conn, verdict.rec, complete=not verdict.partial)
                    result = _published(target, conn, verdict.rec, moved, verdict.partial)
    except PublishError as exc:
        result = dead_letter_staged(target, conn, export_id, exc)
    return result


def _publish_swap(target: Target, conn: Any, rec: ExportRecord, partial: bool) -> FinalizeResult:
    """Swap/attach export: its rows are in the load table; publish that (see tdtp.importer.swap)."""
    lock_load(target, conn, rec)  # no part lands in it while it is published
    pending = pending_parts(target, conn, rec.export_id)
    rows = sum(r for _, r, _ in pending)
    if partial:  # no summary, mode switched to upsert/append: move what is there, keep loading
        out = publish_partial(target, conn, rec)
    else:
        out = publish_export(target, conn, rec, rows, lambda: _newer_finalized(target, conn, rec))
    if out.superseded_by is not None:
        return _supersede(target, conn, rec, out.superseded_by)
    mark_published(target, conn, rec.export_id, [p for p, _, _ in pending])
    note = "; ".join(x for x in (rec.publish_note, out.note) if x)
    return _published(target, conn, rec, out.rows, partial, strategy=out.how, note=note)


def finish_live(target: Target, conn: Any, live: Any, pub: Any, *, allow_partial: bool) -> FinalizeResult:
    """Last step of a live publisher (its own connection, its transaction still open)."""
    started = time.perf_counter()
    try:
        if live.failure is not None:
            raise live.failure
        verdict = _assess(target, conn, live.export_id, allow_partial)
        if verdict.result is not None:
            conn.rollback()
            result = verdict.result
        elif verdict.newer is not None:
            conn.rollback()
            result = _supersede(target, conn, verdict.rec, verdict.newer)
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
                allow_partial=allow_partial,
                converter=live.converter,
            )
        else:
            result = _published(target, conn, verdict.rec, pub.publish_pending(), verdict.partial)
            conn.commit()
    except PublishError as exc:
        conn.rollback()
        result = dead_letter_staged(target, _autocommit(target, conn), live.export_id, exc)
    except Exception as exc:
        conn.rollback()
        result = _error(target, _autocommit(target, conn), live.export_id, exc)
    result.seconds = time.perf_counter() - started
    return result


def _autocommit(target: Target, conn: Any) -> Any:
    """The live publisher's connection, switched to autocommit for the follow-up transactions."""
    if target.is_pg and not conn.autocommit:
        conn.rollback()
        conn.autocommit = True
    return conn


def dead_letter_staged(target: Target, conn: Any, export_id: str, exc: Any) -> FinalizeResult:
    """The target refused a staged part while publishing: turn that part into a dead letter.

    Its ledger row and staged body go (so a good copy or a replay can land it
    again) and the export stays blocked until then, like a part that failed to
    decode.  The publish itself was rolled back: nothing of the export is visible.
    """
    reason = f"publishing export {export_id}: {exc}"
    part = getattr(exc, "part", -1)
    if part is None or part < 1 or not target.is_pg:
        _note_error(target, conn, export_id, reason)
        return FinalizeResult(export_id, ERROR, reason=reason)
    with target.transaction(conn):
        row = target.execute(
            conn,
            f"SELECT body FROM {target.book(STAGE_PARTS)} WHERE export_id = %s AND part_number = %s",
            (export_id, part),
        ).fetchone()
        rec = load_export(target, conn, export_id)
        if row is not None:
            target.execute(
                conn,
                f"DELETE FROM {target.book(STAGE_PARTS)} WHERE export_id = %s AND part_number = %s",
                (export_id, part),
            )
            target.execute(
                conn,
                f"DELETE FROM {target.book(LEDGER)} WHERE export_id = %s AND part_number = %s",
                (export_id, part),
            )
    if row is not None:
        add_dead_letter(
            target,
            conn,
            export_id=export_id,
            part=part,
            table=rec.table_name if rec else "",
            reason=reason,
            body=bytes(row[0]),
            source="publish",
        )
    _note_error(target, conn, export_id, reason)
    return FinalizeResult(
        export_id, BLOCKED, reason=reason, dead_lettered_part=part if row is not None else None
    )


def _error(target: Target, conn: Any, export_id: str, exc: BaseException) -> FinalizeResult:
    if isinstance(exc, TdtpError):
        reason = str(exc)
    elif is_db_error(exc):
        reason = f"publish failed: {first_line(exc)}"
    else:
        raise exc
    _note_error(target, conn, export_id, reason)
    return FinalizeResult(export_id, ERROR, reason=reason)


def _note_error(target: Target, conn: Any, export_id: str, reason: str) -> None:
    try:
        with target.transaction(conn):
            _set_note(target, conn, export_id, f"{ERROR}: {reason}")
    except Exception as exc:  # the note is a courtesy; the result already carries the reason
        if not is_db_error(exc):
            raise


# ------------------------------------------------------------------------------ SQLite


def _sqlite_stage_exists(conn: Any, stage: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (stage,)).fetchone()
        is not None
    )


def _publish_sqlite(target: Target, conn: Any, rec: ExportRecord, *, complete: bool) -> int:
    """Move the staged rows into the target (inside the caller's transaction); return the row count."""
    pending = pending_parts(target, conn, rec.export_id)
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
    if rec.mode == REPLACE:
        delete_replaced(target, conn, table, partition_predicate(target, rec.summary))
    if staged:
        cols = ", ".join(target.ident(n) for n, _ in rec.columns)
        sql = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}"
        if rec.mode == "upsert":
            keys = upsert_keys(target, conn, rec)
            # WHERE true: SQLite's parser needs it before an upsert clause after a SELECT
            sql += " WHERE true " + on_conflict(target, keys, [n for n, _ in rec.columns])
        conn.execute(sql)
    mark_published(target, conn, rec.export_id, [p for p, _, _ in pending])
    if complete:
        conn.execute(f"DROP TABLE IF EXISTS {stage}")
    elif staged:
        conn.execute(f"DELETE FROM {stage}")
    return staged
