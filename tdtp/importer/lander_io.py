"""What a lander process and its caller exchange (see :mod:`tdtp.importer.one_export`).

Apart from the landing itself so that a caller (``tdtp copy``, Dagster's copy runs)
can start a lander and read its result without importing the importer: the import
of the whole engine cost ``tdtp copy`` ~0.2 CPU-s and delayed the lander's start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tdtp.importer.outcome import COMPLETE, FINALIZED
from tdtp.importer.stats import ImportStats

#: The environment variable holding the lander process's job.
JOB_ENV = "TDTP_LAND_JOB"
#: Run as ``python -m LANDER_MODULE`` to land one export in a process of its own.
LANDER_MODULE = "tdtp.importer.one_export"
#: Export states in which every part is in the target (published or ready to be).
LANDED_STATES = (COMPLETE, FINALIZED)
#: The line a lander started with ``from_seq: null`` writes once it has its seq and reads.
READY = "ready"


@dataclass
class ExportLanding:
    """What landing one export did: the importer's figures and where the read ended."""

    stats: ImportStats = field(default_factory=ImportStats)
    summary_seq: int | None = None  # where its summary was read; None: not reached
    others: list[str] = field(default_factory=list)  # other exports met ("" : a message naming none)
    state: str = ""  # the export's state in the target afterwards (ExportStatus.state)
    error: str | None = None  # why the landing failed (a lander process's own failure)

    @property
    def complete(self) -> bool:
        """Every part of the export is in the target."""
        return self.state in LANDED_STATES

    def as_dict(self) -> dict[str, Any]:
        """The lander process's result line (JSON)."""
        return {
            "stats": self.stats.as_dict(),
            "summary_seq": self.summary_seq,
            "others": list(self.others),
            "state": self.state,
            "complete": self.complete,
            **({"error": self.error} if self.error is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportLanding:
        """A lander process's result line read back (a failed process sends only ``error``)."""
        return cls(
            stats=ImportStats.from_dict(data.get("stats") or {}),
            summary_seq=data.get("summary_seq"),
            others=list(data.get("others") or []),
            state=str(data.get("state") or ""),
            error=data.get("error"),
        )
