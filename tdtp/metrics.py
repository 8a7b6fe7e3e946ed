"""Throughput, latency and memory figures (progress on stderr: ``tdtp/progress.py``).

Peak RSS comes from ``getrusage``: the kernel's own high-water mark for this process,
so it catches short spikes a sampling thread would miss.  Benchmarks that compare modes
run each mode in a fresh process for that reason.
"""

from __future__ import annotations

import ctypes
import resource
from dataclasses import asdict, dataclass, field

from tdtp.progress import Progress  # noqa: F401 - re-exported: where the importer and exporter import it


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
    # Wall-clock (epoch) time the first part was handed to the broker or file: comparable with an
    # importer's ``first_read_at`` in another process (bench/first_part.py).
    first_publish_at: float | None = None
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


# glibc's mallopt parameter number for the mmap threshold (malloc.h: M_MMAP_THRESHOLD).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 32 * 1024


def map_big_buffers() -> bool:
    """Have glibc map every buffer of 32 KiB or more on its own, for this whole process.

    Why: glibc raises its mmap threshold to the size of each big block freed (up to
    32 MiB), so after the first parts every part-sized buffer, and every 64 KiB block
    of row lines, comes from the heap, where freed pieces stay resident and fragment.
    A fixed threshold maps and unmaps them whole.  Measured with ``tdtp export`` of
    1M ordinary rows: peak RSS 69 -> 63 MB from PostgreSQL, 63 -> 57 MB from SQLite
    (growth over 100k rows 14 -> 9 and 15 -> 10 MB), at the same speed.  The CLI
    calls this for ``tdtp export`` and ``tdtp import``; a library caller may too.  False where the C
    library has no ``mallopt`` (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
