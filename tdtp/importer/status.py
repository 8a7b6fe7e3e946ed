"""An export's import progress as a user asks for it: ``tdtp status EXPORT_ID --target URL``.

Everything is read from committed state in the target (ledger, exports, dead
letters), never from an importer's memory, so the answer is the same from any
machine and while imports are still running; Dagster's asset checks read it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tdtp.importer.dead_letters import open_dead_letters
from tdtp.importer.errors import is_db_error
from tdtp.importer.evolve import stored_change
from tdtp.importer.ledger import checksum_sum, ledger_parts, load_export
from tdtp.importer.outcome import (
    BLOCKED,
    CLOSED_STATES,
    COMPLETE,
    COPY,
    ERROR,
    FINALIZED,
    IMPORTING,
    LOST,
    MISMATCH,
    NO_SUMMARY,
    UNKNOWN,
    ranges,
)
from tdtp.importer.readiness import lost_reason
from tdtp.importer.target import Target
from tdtp.importer.writemode import partition_query
from tdtp.sinks.schema_change import REFUSED, SchemaChange


@dataclass
class ExportStatus:
    """Import progress of one export in one target.

    ``state``: ``unknown`` (nothing of it in the target), ``importing`` (parts or
    the summary still missing), ``complete`` (everything in, not yet published),
    ``finalized``, ``blocked`` (dead letters or a finalize refusal, see ``note``),
    ``no summary`` (a producer that sends none), ``superseded`` (a newer export of
    the same partition was published first), ``abandoned`` (no summary, and a newer
    export was published or nothing arrived for too long), ``lost`` (published, but
    the table was dropped or emptied since; ``note`` says which).
    """

    export_id: str
    state: str = UNKNOWN
    table: str = ""
    partition: str = ""
    mode: str = ""
    summary_received: bool = False
    total_parts: int | None = None
    total_rows: int | None = None
    parts_in_ledger: int = 0
    rows_in_ledger: int = 0
    missing_parts: list[int] = field(default_factory=list)
    checksum_expected: str | None = None
    checksum_in_ledger: str = ""
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    finalized: bool = False
    finalized_at: str | None = None
    published_rows: int = 0
    note: str = ""
    publish: str = ""  # PostgreSQL: "copy", "swap" or "attach" (chosen at the first part)
    publish_note: str = ""  # why not by swap, or how it was published
    load_table: str = ""  # swap/attach: where the parts' rows wait until published
    #: How the export's schema differs from its table (planned at its first part, as applied once
    #: published): added, dropped, widened and discarded columns, and what was refused.
    schema_change: SchemaChange | None = None

    @property
    def schema_refusal(self) -> str:
        """The one line saying why the export's schema may not land ("" when it may)."""
        for reason in [d["reason"] for d in self.dead_letters] + [self.note]:
            at = reason.find(REFUSED)
            if at >= 0:
                return reason[at:]
        return ""

    @property
    def complete(self) -> bool:
        return self.total_parts is not None and not self.missing_parts and not self.dead_letters

    @property
    def checksum_ok(self) -> bool | None:
        if self.checksum_expected is None:
            return None
        return self.checksum_expected == self.checksum_in_ledger

    def as_dict(self) -> dict[str, Any]:
        return {
            "export_id": self.export_id,
            "state": self.state,
            "table": self.table,
            "partition": self.partition,
            "mode": self.mode,
            "summary_received": self.summary_received,
            "total_parts": self.total_parts,
            "total_rows": self.total_rows,
            "parts_in_ledger": self.parts_in_ledger,
            "rows_in_ledger": self.rows_in_ledger,
            "missing_parts": list(self.missing_parts),
            "checksum_expected": self.checksum_expected,
            "checksum_in_ledger": self.checksum_in_ledger,
            "checksum_ok": self.checksum_ok,
            "dead_letters": list(self.dead_letters),
            "finalized": self.finalized,
            "finalized_at": self.finalized_at,
            "published_rows": self.published_rows,
            "note": self.note,
            "publish": self.publish,
            "publish_note": self.publish_note,
            "load_table": self.load_table,
            "schema_change": None if self.schema_change is None else self.schema_change.as_dict(),
        }

    def describe(self) -> str:
        """A few lines for people: the state, then what it waits for."""
        if self.state == UNKNOWN:
            return f"{self.export_id}: unknown in this target (no part or summary imported)"
        total = "?" if self.total_parts is None else str(self.total_parts)
        lines = [
            f"{self.export_id} -> {self.table} ({self.mode}): {self.state}; "
            f"{self.parts_in_ledger}/{total} parts, {self.rows_in_ledger:,} rows in the ledger"
        ]
        if self.missing_parts:
            lines.append(f"  missing parts: {ranges(self.missing_parts)}")
        if not self.summary_received:
            lines.append("  no summary received")
        for d in self.dead_letters:
            lines.append(f"  dead letter #{d['id']}: part {d['part_number']}: {d['reason']}")
        if self.note:
            lines.append(f"  note: {self.note}")
        if self.schema_change is not None and self.schema_change.changed:
            lines.append(f"  schema ({self.schema_change.policy}): {self.schema_change.describe()}")
        if self.publish:
            how = f"  publish: {self.publish}" + (f" ({self.publish_note})" if self.publish_note else "")
            if self.load_table and not self.finalized and self.publish != COPY:
                how += f"; rows wait in {self.load_table}"
            lines.append(how)
        return "\n".join(lines)


def read_status(target: Target, conn: Any, export_id: str, table: str) -> ExportStatus:
    """An export's state in one target table, from committed bookkeeping and the table as it is now."""
    status = ExportStatus(export_id=export_id, table=table)
    rec = load_export(target, conn, export_id, table) if table else None
    parts = ledger_parts(target, conn, export_id, table) if table else []
    dead = open_dead_letters(target, conn, export_id, table)
    status.dead_letters = [d.as_dict() for d in dead]
    status.parts_in_ledger = len(parts)
    status.rows_in_ledger = sum(r for _, r, _ in parts)
    status.checksum_in_ledger = checksum_sum(parts) if parts else ""
    present = {p for p, _, _ in parts}
    if rec is None:
        if parts or dead:
            status.state = BLOCKED if dead else IMPORTING
        return status
    status.table = rec.table_name
    status.partition = rec.partition
    status.mode = rec.mode
    status.summary_received = rec.summary is not None
    status.total_parts = rec.total_parts
    status.total_rows = rec.total_rows
    status.checksum_expected = rec.checksum
    status.published_rows = rec.published_rows
    status.note = rec.note
    status.publish = rec.publish
    status.publish_note = rec.publish_note
    status.load_table = rec.load_table
    status.schema_change = stored_change(rec)
    status.finalized = rec.status == FINALIZED
    status.finalized_at = None if rec.finalized_at is None else str(rec.finalized_at)
    upper = rec.total_parts or (max(present) if present else 0)
    status.missing_parts = sorted(set(range(1, upper + 1)) - present)
    lost = lost_reason(target, conn, rec)
    if lost:
        status.state = LOST
        status.note = lost
    elif rec.status in CLOSED_STATES:
        status.state = rec.status
    elif dead or rec.note.startswith((BLOCKED, MISMATCH, ERROR)):
        status.state = BLOCKED
    elif rec.total_parts is None and rec.note.startswith(NO_SUMMARY):
        status.state = NO_SUMMARY
    elif status.complete:
        status.state = COMPLETE
    else:
        status.state = IMPORTING
    return status


def partition_rows(target: Target, conn: Any, export_id: str, table: str) -> int | None:
    """Rows now in ``table`` for the export's partition (all rows when it is the whole table).

    Counted with the publishers' own partition predicate (from the summary's
    partition filter), so the count covers exactly the rows a replace put there.
    None when the export, its bookkeeping or the table is not there: a check reports that.
    """
    try:
        rec = load_export(target, conn, export_id, table)
        if rec is None:
            return None
        return int(partition_query(target, conn, table, rec.summary, "count(*)")[0])
    except Exception as exc:
        if is_db_error(exc):  # a missing table (or bookkeeping) reads as "no rows here"
            return None
        raise
