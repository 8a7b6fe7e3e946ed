"""May an export be published into its table now?  And is a published one still there?

Read from committed bookkeeping only (docs/importer.md): an export is ready once the
summary (or a batch part's TotalParts) says how many parts there are, parts
1..TotalParts are all in the ledger, no dead letter is open, and the ledger's row
count and checksum equal the summary's.  Otherwise :func:`assess` says exactly what
it waits for, or why it is blocked, or that it has been given up:

* *superseded* — a newer export of the same table and partition was published first;
* *abandoned* — it has no summary and will never get one: a newer export of the same
  table and partition was published (its producer was killed and rerun), or nothing
  of it arrived for ``abandon_after`` seconds.

:func:`lost_reason` is the other direction: an export published into a table that
was dropped, replaced or emptied since is not trusted as "finalized" any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tdtp.importer.catalog import table_columns
from tdtp.importer.dead_letters import open_dead_letters
from tdtp.importer.ledger import (
    ExportRecord,
    checksum_sum,
    last_landed,
    ledger_parts,
    load_export,
    other_exports,
    set_state,
)
from tdtp.importer.outcome import (
    ABANDONED,
    APPEND,
    BLOCKED,
    FINALIZED,
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
from tdtp.importer.target import Target
from tdtp.importer.writemode import partition_has_rows, partition_predicate


@dataclass
class Verdict:
    result: FinalizeResult | None = None  # set: not publishable now, and why
    rec: ExportRecord | None = None
    partial: bool = False
    newer: str | None = None  # a newer export of the same partition is already published
    abandon: str = ""  # why the export is given up (no summary will ever come)


def instant(text: str | None) -> datetime | None:
    """A timestamp text (ISO 8601, ``Z`` allowed) as an aware datetime; None when it is not one."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def newer_finalized(target: Target, conn: Any, rec: ExportRecord) -> str | None:
    """Id of an already published export of the same table and partition that was produced later.

    "Produced" is the summary's start time, or for an export without a summary the
    header Timestamp of its first part (when its producer made it).
    Only a *replace* export overtakes: it put the whole partition in place, so an older
    one would only bring back older rows.  An append or upsert export published later
    overtakes nothing (both exports' rows belong in the table).
    """
    mine = instant(rec.summary.started_at if rec.summary is not None else None) or instant(rec.produced_at)
    if mine is None:
        return None
    for other in other_exports(target, conn, rec, status=FINALIZED):
        if other.mode != REPLACE:
            continue
        theirs = instant(other.summary.started_at if other.summary is not None else None)
        if theirs is not None and theirs > mine:
            return other.export_id
    return None


def _idle_seconds(target: Target, conn: Any, rec: ExportRecord) -> float | None:
    """Seconds since the export's last part landed in its table (or since it was first seen)."""
    raw = last_landed(target, conn, rec.export_id, rec.table_name)
    last = raw if isinstance(raw, datetime) else instant(raw)
    if last is None:
        return None
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)  # SQLite's CURRENT_TIMESTAMP is UTC
    return (datetime.now(UTC) - last).total_seconds()


def _abandonment(target: Target, conn: Any, rec: ExportRecord, abandon_after: float | None) -> str:
    """Why an export without a summary is given up ("" while it may still complete).

    Only replace exports: without a summary they can never be published.  An append or
    upsert export without one is published part by part (``allow_partial``), so giving
    it up would throw rows away.
    """
    if rec.mode != REPLACE:
        return ""
    newer = newer_finalized(target, conn, rec)
    if newer is not None:
        return f"no summary, and a newer export {newer} of the same table and partition is published"
    idle = _idle_seconds(target, conn, rec)
    if abandon_after is not None and idle is not None and idle >= abandon_after:
        return f"no summary, and no part of it arrived for {idle:,.0f} s (abandon_after = {abandon_after:g} s)"
    return ""


def assess(
    target: Target,
    conn: Any,
    export_id: str,
    table: str,
    *,
    allow_partial: bool,
    abandon_after: float | None = None,
) -> Verdict:
    """Whether ``export_id`` may be published into ``table`` now (see the module docstring)."""
    rec = load_export(target, conn, export_id, table)
    dead = open_dead_letters(target, conn, export_id, table)
    if rec is None:
        if dead:  # every part that arrived failed before its export could be recorded
            return Verdict(FinalizeResult(export_id, BLOCKED, reason=_dead_reason(dead)))
        return Verdict(
            FinalizeResult(export_id, UNKNOWN, reason=f"no part or summary of this export is in {table!r}")
        )
    if rec.status == FINALIZED:
        return Verdict(FinalizeResult(export_id, FINALIZED, finalized=True, already=True))
    if rec.status in (SUPERSEDED, ABANDONED):
        return Verdict(FinalizeResult(export_id, rec.status, reason=rec.note))
    if dead:
        return blocked(target, conn, rec, BLOCKED, _dead_reason(dead))
    parts = ledger_parts(target, conn, export_id, table)
    present = {p for p, _, _ in parts}
    rows = sum(r for _, r, _ in parts)
    total = rec.total_parts
    if not total:
        if rec.summary is None:
            why = _abandonment(target, conn, rec, abandon_after)
            if why:
                return Verdict(rec=rec, abandon=why)
        if rec.summary is None and allow_partial and rec.mode in (UPSERT, APPEND):
            return Verdict(rec=rec, partial=True)
        if rec.summary is None and allow_partial:
            return blocked(
                target, conn, rec, NO_SUMMARY,
                f"no summary and no TotalParts: {len(parts)} parts staged, but replace mode needs to know the "
                "export is complete; import it with mode upsert or append",
            )  # fmt: skip
        return Verdict(
            FinalizeResult(export_id, WAITING, reason=f"waiting for the summary ({len(parts)} parts in)")
        )
    beyond = sorted(p for p in present if p > total or p < 1)
    if beyond:
        return blocked(target, conn, rec, MISMATCH, f"parts {ranges(beyond)} are outside 1..{total}")
    missing = sorted(set(range(1, total + 1)) - present)
    if missing:
        reason = f"waiting for part(s) {ranges(missing)} of {total} ({len(parts)} in)"
        return Verdict(FinalizeResult(export_id, WAITING, reason=reason))
    if rec.summary is not None:
        if rows != rec.total_rows:
            reason = f"the ledger holds {rows:,} rows, the summary says {rec.total_rows:,}"
            return blocked(target, conn, rec, MISMATCH, reason)
        have = checksum_sum(parts)
        if have != rec.checksum:
            return blocked(target, conn, rec, MISMATCH, f"ledger checksum {have} differs from the summary's {rec.checksum}")
    if rec.mode == REPLACE:
        if rec.partition and partition_predicate(target, rec.summary) is None:
            return blocked(
                target, conn, rec, BLOCKED,
                f"replace of partition {rec.partition!r} needs partition_filter in the summary; "
                "without it the whole table would be replaced",
            )  # fmt: skip
        newer = newer_finalized(target, conn, rec)
        if newer is not None:
            return Verdict(rec=rec, newer=newer)
    return Verdict(rec=rec)


def _dead_reason(dead: list) -> str:
    parts = ranges(sorted({d.part_number for d in dead}))
    return f"{len(dead)} dead letter(s) (part {parts}: {dead[0].reason}); replay them or import good copies"


def blocked(target: Target, conn: Any, rec: ExportRecord, state: str, reason: str) -> Verdict:
    """Not publishable until someone acts: say why on the export (``tdtp status`` shows it)."""
    set_state(target, conn, rec, note=f"{state}: {reason}")
    return Verdict(FinalizeResult(rec.export_id, state, reason=reason))


def lost_reason(target: Target, conn: Any, rec: ExportRecord) -> str:
    """Why a published export is not in its table any more ("" when it is, as far as can be told).

    Noticed: the table is gone, or holds no row of the export's partition any more.
    Not its identity (OID, SQLite root page): a VACUUM or a dump and restore changes
    that while every row is still there, and landing an export again over a table
    that holds rows could bring back old ones.
    Rows deleted by hand from a partition that still has some are not noticed.
    """
    if rec.status != FINALIZED:
        return ""
    where = f"table {rec.table_name!r}"
    if table_columns(target, conn, rec.table_name) is None:
        return f"{where} was dropped since export {rec.export_id} was published into it"
    if rec.published_rows > 0 and partition_has_rows(target, conn, rec.table_name, rec.summary) is False:
        return f"{where} holds none of export {rec.export_id}'s rows any more (emptied since it was published)"
    return ""
