"""Which files a spool stream is made of, and where they are.

Why apart: the writer (``tdtp/brokers/spool/log.py``) and every reader
(``tdtp/brokers/spool/cursor.py``) must agree on file names exactly -- a reader
finds the next segment by its name alone -- so the names are made in one place.

In the spool directory, for stream ``STREAM``:

- ``STREAM.<first_seq:020d>.dat`` -- segments, each named by the first seq it
  holds; zero padding makes ``ls`` order equal seq order.  Segments are never
  renamed: a reader holding one open never sees it change identity.
- ``STREAM.<first_seq:020d>.idx`` -- the index of that segment.
- ``STREAM.current.dat`` -- a symlink to the newest segment, for people and ``tail``.
- ``STREAM.lock`` -- the writers' ``flock``.
- ``STREAM.dead/`` -- dead letters.
- ``*.tmp`` -- a file being made (renamed into place when complete).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from tdtp.brokers.spool.format import open_segment


@dataclass(frozen=True, slots=True)
class SpoolFiles:
    """The file names of one stream in one directory; ``where`` names it in errors."""

    directory: str
    stream: str
    where: str

    def segment(self, first: int) -> str:
        return os.path.join(self.directory, f"{self.stream}.{first:020d}.dat")

    def index(self, first: int) -> str:
        return os.path.join(self.directory, f"{self.stream}.{first:020d}.idx")

    @property
    def current_link(self) -> str:
        return os.path.join(self.directory, f"{self.stream}.current.dat")

    @property
    def lock(self) -> str:
        return os.path.join(self.directory, f"{self.stream}.lock")

    @property
    def dead_dir(self) -> str:
        return os.path.join(self.directory, f"{self.stream}.dead")

    def segments(self) -> list[int]:
        """First seqs of the segments on disk, ascending."""
        pattern = re.compile(rf"^{re.escape(self.stream)}\.(\d{{20}})\.dat$")
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(pattern.match, names) if m)

    def open_segment(self, first: int, flags: int = os.O_RDONLY) -> int:
        """Open segment ``first`` (header checked); FileNotFoundError if retention removed it."""
        return open_segment(self.segment(first), first, self.where, flags)

    def is_stream_file(self, name: str) -> bool:
        """True for a segment, index, lock or current link of this stream (or one being made)."""
        pattern = rf"^{re.escape(self.stream)}\.(\d{{20}}\.(dat|idx)|current\.dat|lock)(\.tmp)?$"
        return re.match(pattern, name) is not None

    def is_debris(self, name: str) -> bool:
        """True for a ``.tmp`` file of this stream that a killed writer left half made."""
        return name.startswith(f"{self.stream}.") and name.endswith(".tmp") and name.count(".") >= 2
