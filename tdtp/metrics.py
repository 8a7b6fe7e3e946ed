"""Throughput, latency and memory figures, and throttled progress lines on stderr.

Peak RSS comes from ``getrusage``: the kernel's own high-water mark for this process,
so it catches short spikes a sampling thread would miss.  Benchmarks that compare modes
run each mode in a fresh process for that reason.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TextIO


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(slots=True)
class TransferStats:
    """What one export (or import) did: the figures shown in the CLI and in Dagster metadata."""

    export_id: str = ""
    table: str = ""
    partition: str = ""
    rows: int = 0
    parts: int = 0
    bytes: int = 0
    raw_bytes: int = 0
    seconds: float = 0.0
    first_part_seconds: float | None = None
    peak_rss_mb: float = 0.0
    checksum: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["mb_per_second"] = round(self.mb_per_second, 2)
        return data


class Progress:
    """Prints ``rows, parts, rows/s`` to stderr at most once a second; silent when quiet."""

    def __init__(self, label: str, *, quiet: bool = False, stream: TextIO | None = None, every: float = 1.0):
        self.label = label
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.every = every
        self.start = time.perf_counter()
        self._last = self.start

    def update(self, rows: int, parts: int, *, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.every:
            return
        self._last = now
        elapsed = max(now - self.start, 1e-9)
        self.stream.write(f"{self.label}: {rows:,} rows, {parts} parts, {rows / elapsed:,.0f} rows/s\n")
        self.stream.flush()
