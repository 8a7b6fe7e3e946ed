"""Names of part and summary files: one definition for the exporter that writes them
and the importer that reads them back.

Go's naming (docs/format.md §5): a multi-part export of ``users.tdtp.xml`` is
``users.tdtp_part_1_of_3.xml``, ``users.tdtp_part_2_of_3.xml``, ... (split at the
last dot, no zero padding); a lone part keeps the plain name.  Streamed parts do not
know their total, so they are ``users.tdtp_part_1.xml``, ..., and the stream's
summary is ``users.tdtp_summary.json``.
"""

from __future__ import annotations

import re

SUMMARY_SUFFIX = "_summary.json"
_PART_NUMBER_RE = re.compile(r"_part_(\d+)(?:_of_\d+)?\.[^.]+$")


def part_file_name(base: str, number: int, total: int) -> str:
    """Go's naming: ``users.tdtp.xml`` -> ``users.tdtp_part_2_of_3.xml``; streamed parts have no total."""
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, "xml"
    if total == 1:
        return base
    suffix = f"_part_{number}_of_{total}" if total else f"_part_{number}"
    return f"{stem}{suffix}.{ext}"


def summary_file_name(base: str) -> str:
    """The summary file of a streamed export: ``users.tdtp.xml`` -> ``users.tdtp_summary.json``."""
    stem, dot, _ = base.rpartition(".")
    return f"{stem if dot else base}{SUMMARY_SUFFIX}"


def part_files_glob(base: str) -> str:
    """A glob matching every numbered part file of ``base`` (batch and streamed)."""
    stem = base.rpartition(".")[0] or base
    return f"{stem}_part_*"


def split_part_file_name(name: str) -> tuple[str, int]:
    """(stem, part number) of a numbered part file name; ``(name, 0)`` for any other name."""
    m = _PART_NUMBER_RE.search(name)
    if m is None:
        return name, 0
    return name[: m.start()], int(m.group(1))
