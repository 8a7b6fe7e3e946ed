"""What one import run knows of each export it meets, per target table.

The dispatcher asks for an export's state the first time a part, a summary or a
dead letter of it shows up, and :class:`ExportTracker` reads it from the target's
bookkeeping once: the parts already in the ledger (with their body hashes, so a
redelivered part is skipped without being decoded while another body of it is not),
whether it is closed, and — for an export published earlier — whether its table is
still there (see :func:`tdtp.importer.readiness.lost_reason`).  A table dropped or
emptied since is landed again in replace mode; in append/upsert mode the export is
refused with one line saying how to force it (``reland``), since landing it again
where rows survived would add them twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tdtp.importer.ledger import forget_landing, ledger_body_hashes, load_export, set_mode, set_state
from tdtp.importer.options import ImportOptions
from tdtp.importer.outcome import CLOSED_STATES, FINALIZED, REPLACE, ranges
from tdtp.importer.readiness import lost_reason
from tdtp.importer.target import Target


@dataclass
class ExportState:
    """What the dispatcher knows of one export into one table during a run."""

    export_id: str
    table: str
    total: int | None = None
    parts: dict[int, str] = field(default_factory=dict)  # part number -> body hash ("": not known)
    summary: bool = False
    foreign: bool = False
    closed: bool = False  # finalized, superseded or abandoned
    closed_as: str = ""  # its state and note when it was found closed
    no_live: bool = False  # a live publisher was refused or failed in this run: publish at the end
    refused: str = ""  # why this run lands none of its parts (the user must act)

    def complete(self) -> bool:
        if not self.total:
            return False
        return sum(1 for p in self.parts if 1 <= p <= self.total) == self.total

    def waiting_for(self) -> str:
        if not self.total:
            return f"waiting for the summary ({len(self.parts)} parts in)"
        missing = sorted(set(range(1, self.total + 1)) - set(self.parts))
        return f"waiting for part(s) {ranges(missing)} of {self.total} ({len(self.parts)} in)"

    def is_duplicate(self, part: int, body_hash: str) -> bool:
        """The ledger has this very part, with this very body.

        A ledger row of an earlier version has no body hash: such a part goes to a worker,
        which compares its rows' checksum (a duplicate, or a conflicting copy).
        """
        return self.parts.get(part) == body_hash


class ExportTracker:
    """The states of the exports one run meets, keyed by (export id, target table)."""

    def __init__(self, target: Target, conn: Any, options: ImportOptions, *, replay: bool) -> None:
        self.target = target
        self.conn = conn
        self.opts = options
        self.replay = replay
        self.states: dict[tuple[str, str], ExportState] = {}

    def __iter__(self) -> Iterator[ExportState]:
        return iter(list(self.states.values()))

    def get(self, export_id: str, table: str) -> ExportState:
        st = self.states.get((export_id, table))
        if st is None:
            st = self._load(export_id, table)
            self.states[(export_id, table)] = st
        return st

    def _load(self, export_id: str, table: str) -> ExportState:
        st = ExportState(export_id, table)
        rec = load_export(self.target, self.conn, export_id, table)
        if rec is not None and rec.status == FINALIZED:
            reason = lost_reason(self.target, self.conn, rec)
            if reason and (rec.mode == REPLACE or self.opts.reland):
                with self.target.transaction(self.conn):
                    forget_landing(self.target, self.conn, export_id, table)
                    set_state(self.target, self.conn, rec, note=f"landing again: {reason}")
                rec = load_export(self.target, self.conn, export_id, table)
            elif reason:
                st.refused = (
                    f"refused: {reason}; {rec.mode} would add its rows again where they survived, so "
                    "rerun with --reland (reland=True) to land it again"
                )
        if rec is not None:
            if not self.replay and rec.mode != self.opts.mode and rec.status not in CLOSED_STATES:
                set_mode(self.target, self.conn, export_id, table, self.opts.mode)
            st.total = rec.total_parts
            st.summary = rec.summary is not None
            st.closed = rec.status in CLOSED_STATES
            if st.closed:
                st.closed_as = f"{rec.status} (earlier)" + (f": {rec.note}" if rec.note else "")
        st.parts = ledger_body_hashes(self.target, self.conn, export_id, table)
        return st
