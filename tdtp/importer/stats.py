"""What an import did: the figures the CLI prints and Dagster records as metadata.

Part times are kept per part (a float each) so p50/p95 are exact; an import of
10k parts keeps 80 kB of them, which is nothing next to one part in flight.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


@dataclass
class ExportShare:
    """One export's part of a run: its parts, rows and bytes, and the time its parts were in work.

    ``start``/``end`` are seconds since the run began: when the first of its parts
    went to a worker and when the last one committed.  A run that lands several
    exports one after the other gives each its own rate this way, not the run's.
    """

    parts: int = 0
    rows: int = 0
    bytes: int = 0
    start: float = 0.0
    end: float = 0.0

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    def as_dict(self) -> dict[str, Any]:
        seconds = self.seconds
        return {
            "parts": self.parts,
            "rows": self.rows,
            "bytes": self.bytes,
            # 0.1 ms: a small partition lands in a few ms, and its rate is rows / these seconds.
            "seconds": round(seconds, 4),
            "rows_per_second": round(self.rows / seconds, 1) if seconds > 0 else 0.0,
        }

    def merge(self, other: ExportShare) -> None:
        """Add another run's share of the same export (parallel land ops overlap: the widest window)."""
        if not self.parts:
            self.start, self.end = other.start, other.end
        elif other.parts:
            self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        self.parts += other.parts
        self.rows += other.rows
        self.bytes += other.bytes


@dataclass
class ImportStats:
    """Counters of one import run (or one replay).

    ``parts_imported``/``total_rows``/``avg_part_seconds``/``errors`` are the
    seed's ParallelImporter figures; the rest say what happened on the way:
    duplicates skipped by the ledger, retries, dead letters, and per export
    whether it was published (``exports``: export id -> outcome text).
    """

    target: str = ""
    workers: int = 0
    executor: str = ""
    parts_imported: int = 0
    total_rows: int = 0
    bytes: int = 0
    duplicates: int = 0
    retries: int = 0
    dead_letters: int = 0
    summaries: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    first_part_seconds: float | None = None
    # Wall-clock (epoch) times of the first data part received and committed: comparable with
    # the exporter's ``first_publish_at`` in another process (the pipelined latency, bench/first_part.py).
    first_read_at: float | None = None
    first_landed_at: float | None = None
    staged_seconds: float = 0.0  # when the last part of the run was committed to the ledger
    finalize_seconds: float = 0.0  # time spent finishing publishes (the part not overlapped with staging)
    peak_rss_mb: float = 0.0
    worker_peak_rss_mb: float = 0.0
    memory_pauses: int = 0
    max_in_flight: int = 0
    part_seconds: list[float] = field(default_factory=list, repr=False)
    exports: dict[str, str] = field(default_factory=dict)
    finalized: list[str] = field(default_factory=list)
    no_summary: list[str] = field(default_factory=list)
    publish: dict[str, str] = field(default_factory=dict)  # export id -> how it was published (and why)
    last_seq: int | None = None
    per_export: dict[str, ExportShare] = field(default_factory=dict)  # what each export took of the run

    # ------------------------------------------------------------ derived figures
    @property
    def avg_part_seconds(self) -> float:
        return statistics.fmean(self.part_seconds) if self.part_seconds else 0.0

    @property
    def p50_part_seconds(self) -> float:
        return _percentile(sorted(self.part_seconds), 0.50)

    @property
    def p95_part_seconds(self) -> float:
        return _percentile(sorted(self.part_seconds), 0.95)

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def add_part(
        self, rows: int, nbytes: int, seconds: float, elapsed: float, *, export_id: str = "", submitted: float = 0.0
    ) -> None:
        """Count one landed part; ``submitted``: when it went to a worker (seconds since the run began)."""
        self.parts_imported += 1
        self.total_rows += rows
        self.bytes += nbytes
        self.part_seconds.append(seconds)
        if self.first_part_seconds is None:
            self.first_part_seconds = elapsed
            self.first_landed_at = time.time()
        self.staged_seconds = elapsed
        if export_id:
            share = self.per_export.setdefault(export_id, ExportShare(start=submitted, end=elapsed))
            share.parts += 1
            share.rows += rows
            share.bytes += nbytes
            share.start, share.end = min(share.start, submitted), max(share.end, elapsed)

    def export_share(self, export_id: str) -> ExportShare | None:
        """What ``export_id`` took of this run (None: none of its parts landed here)."""
        return self.per_export.get(export_id)

    def merge(self, other: ImportStats) -> None:
        """Fold a replay's figures into a run's (used when an import also replays)."""
        for name in (
            "parts_imported",
            "total_rows",
            "bytes",
            "duplicates",
            "retries",
            "dead_letters",
            "summaries",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)
        self.part_seconds.extend(other.part_seconds)
        self.exports.update(other.exports)
        self.publish.update(other.publish)
        self.finalized.extend(x for x in other.finalized if x not in self.finalized)
        for export_id, share in other.per_export.items():
            self.per_export.setdefault(export_id, ExportShare()).merge(share)

    @classmethod
    def combined(cls, runs: list[ImportStats]) -> ImportStats:
        """One figure set for imports that ran side by side (Dagster's parallel land ops).

        Counts add up; time is the longest run's (they overlapped), memory the largest.
        """
        total = cls()
        for run in runs:
            total.merge(run)
            total.target = total.target or run.target
            total.workers += run.workers
            total.executor = total.executor or run.executor
            total.seconds = max(total.seconds, run.seconds)
            if run.first_part_seconds is not None and (
                total.first_part_seconds is None or run.first_part_seconds < total.first_part_seconds
            ):
                total.first_part_seconds = run.first_part_seconds
            total.peak_rss_mb = max(total.peak_rss_mb, run.peak_rss_mb)
            total.worker_peak_rss_mb = max(total.worker_peak_rss_mb, run.worker_peak_rss_mb)
            total.no_summary.extend(x for x in run.no_summary if x not in total.no_summary)
        return total

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportStats:
        """The figures back from :meth:`as_dict` (a lander process's JSON, a Dagster op's output).

        Derived figures (rates, percentiles) are recomputed, not read; per-part
        times do not travel, so percentiles of a rebuilt object are those of its mean.
        """
        stats = cls()
        for name in (
            "target", "executor", "workers", "parts_imported", "total_rows", "bytes", "duplicates",
            "retries", "dead_letters", "summaries", "seconds", "first_part_seconds", "first_read_at",
            "first_landed_at", "staged_seconds",
            "finalize_seconds", "peak_rss_mb", "worker_peak_rss_mb", "memory_pauses", "max_in_flight",
            "last_seq",
        ):  # fmt: skip
            if data.get(name) is not None:
                setattr(stats, name, data[name])
        stats.errors = list(data.get("errors") or [])
        stats.exports = dict(data.get("exports") or {})
        stats.finalized = list(data.get("finalized") or [])
        stats.no_summary = list(data.get("no_summary") or [])
        stats.publish = dict(data.get("publish") or {})
        for export_id, share in (data.get("per_export") or {}).items():
            stats.per_export[export_id] = ExportShare(
                parts=int(share.get("parts") or 0),
                rows=int(share.get("rows") or 0),
                bytes=int(share.get("bytes") or 0),
                end=float(share.get("seconds") or 0.0),
            )
        if stats.parts_imported and data.get("avg_part_seconds"):
            stats.part_seconds = [float(data["avg_part_seconds"])] * int(stats.parts_imported)
        return stats

    # --------------------------------------------------------------------- output
    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-able figures (Dagster metadata, ``tdtp import`` stdout)."""
        return {
            "target": self.target,
            "workers": self.workers,
            "executor": self.executor,
            "parts_imported": self.parts_imported,
            "total_rows": self.total_rows,
            "bytes": self.bytes,
            "duplicates": self.duplicates,
            "retries": self.retries,
            "dead_letters": self.dead_letters,
            "summaries": self.summaries,
            "errors": list(self.errors),
            "seconds": round(self.seconds, 3),
            "first_part_seconds": None
            if self.first_part_seconds is None
            else round(self.first_part_seconds, 3),
            "first_read_at": self.first_read_at,
            "first_landed_at": self.first_landed_at,
            "staged_seconds": round(self.staged_seconds, 3),
            "finalize_seconds": round(self.finalize_seconds, 3),
            "avg_part_seconds": round(self.avg_part_seconds, 4),
            "p50_part_seconds": round(self.p50_part_seconds, 4),
            "p95_part_seconds": round(self.p95_part_seconds, 4),
            "rows_per_second": round(self.rows_per_second, 1),
            "mb_per_second": round(self.mb_per_second, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "worker_peak_rss_mb": round(self.worker_peak_rss_mb, 1),
            "memory_pauses": self.memory_pauses,
            "max_in_flight": self.max_in_flight,
            "exports": dict(self.exports),
            "finalized": list(self.finalized),
            "no_summary": list(self.no_summary),
            "publish": dict(self.publish),
            "last_seq": self.last_seq,
            "per_export": {export_id: share.as_dict() for export_id, share in self.per_export.items()},
        }

    def summary_line(self) -> str:
        """One human line for the CLI (stderr), then one line per export outcome."""
        head = (
            f"imported {self.parts_imported} parts, {self.total_rows:,} rows in {self.seconds:.2f} s "
            f"({self.rows_per_second:,.0f} rows/s, {self.mb_per_second:.1f} MB/s); "
            f"{self.duplicates} duplicates skipped, {self.retries} retries, {self.dead_letters} dead letters; "
            f"part time p50 {self.p50_part_seconds * 1000:.0f} ms, p95 {self.p95_part_seconds * 1000:.0f} ms; "
            f"peak RSS {self.peak_rss_mb:.0f} MB (workers {self.worker_peak_rss_mb:.0f} MB)"
        )
        lines = [head]
        lines += [f"  {export_id}: {outcome}" for export_id, outcome in sorted(self.exports.items())]
        lines += [f"  error: {e}" for e in self.errors[:20]]
        if len(self.errors) > 20:
            lines.append(f"  ... and {len(self.errors) - 20} more errors")
        return "\n".join(lines)
