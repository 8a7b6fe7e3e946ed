"""The importer's shared words: export states, part outcomes, publish strategies, and how a
finalize call ended.

These sit at the bottom of the importer (see docs/architecture.md) so that every layer
names a state or a strategy by a constant instead of a string literal, and so that a
result can travel up from the publish code to the dispatcher, the CLI and Dagster
without those importing the code that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------- write modes
REPLACE = "replace"
UPSERT = "upsert"
APPEND = "append"
MODES = (REPLACE, UPSERT, APPEND)

# ------------------------------------------------------------------ export states
#: Stored in ``_tdtp_exports.status`` and reported by ``tdtp status``.
IMPORTING = "importing"
COMPLETE = "complete"
FINALIZED = "finalized"
SUPERSEDED = "superseded"
#: Only reported (finalize results and ``tdtp status``), never stored as a status.
WAITING = "waiting"
BLOCKED = "blocked"
MISMATCH = "mismatch"
NO_SUMMARY = "no summary"
UNKNOWN = "unknown"
BUSY = "busy"
ERROR = "error"
ABANDONED = "abandoned"  # no summary, and overtaken by a newer export or too old
#: Only reported (``tdtp status``): the table it was published into was dropped or emptied since.
LOST = "lost"
#: An export that will take no more parts: published, or overtaken by a newer one, or given up.
CLOSED_STATES = (FINALIZED, SUPERSEDED, ABANDONED)
#: The words a conflicting duplicate's reason starts with: another body of a part that landed.
CONFLICT = "conflicting duplicate"

# ------------------------------------------------------------------- part outcomes
IMPORTED = "imported"
DUPLICATE = "duplicate"
FAILED = "failed"

# -------------------------------------------------------------- publish strategies
AUTO = "auto"  # the option: swap/attach where safe, else copy
#: Chosen at an export's first part and stored in ``_tdtp_exports.publish`` (PostgreSQL).
COPY = "copy"  # bodies staged, one COPY in the publish transaction
SWAP = "swap"  # whole table: rows loaded into a load table, renamed into place
ATTACH = "attach"  # one partition: rows loaded into a load table, attached in place
INSERT = "insert"  # the swap/attach fallback: INSERT ... SELECT from the load table
#: Strategies whose workers write the rows into a load table themselves.
LOAD_TABLE_STRATEGIES = (SWAP, ATTACH)


def ranges(numbers: list[int] | set[int], limit: int | None = None) -> str:
    """``[1,2,3,7,9,10]`` -> ``1-3, 7, 9-10``: part and gap lists that stay readable for big exports.

    ``limit`` keeps the first that many ranges and says how many more there are.
    """
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and spans[-1][1] == n - 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    shown = spans if limit is None else spans[:limit]
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in shown)
    return text + (f" (+{len(spans) - len(shown)} more ranges)" if len(shown) < len(spans) else "")


@dataclass
class FinalizeResult:
    """Outcome of one finalize call; ``finalized`` is True once the export is published."""

    export_id: str
    state: str
    finalized: bool = False
    rows_published: int = 0
    seconds: float = 0.0
    reason: str = ""
    already: bool = False
    dead_lettered_part: int | None = None
    strategy: str = ""  # how it was published: COPY, SWAP, ATTACH or INSERT (swap fallback)
    strategy_note: str = ""  # why not by swap / what the swap did beyond the rename

    @property
    def publish_text(self) -> str:
        """``swap`` or ``copy (not swapped: a view depends on it)``: for stats and logs."""
        if not self.strategy:
            return ""
        return f"{self.strategy} ({self.strategy_note})" if self.strategy_note else self.strategy

    def as_dict(self) -> dict[str, Any]:
        return {
            "export_id": self.export_id,
            "state": self.state,
            "finalized": self.finalized,
            "already": self.already,
            "rows_published": self.rows_published,
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
            "strategy": self.strategy,
            "strategy_note": self.strategy_note,
        }

    def describe(self) -> str:
        if self.finalized:
            if self.already:
                return "finalized (earlier)"
            how = f" by {self.publish_text}" if self.strategy else ""
            return f"finalized: {self.rows_published:,} rows published{how}"
        return f"{self.state}: {self.reason}" if self.reason else self.state
