"""Reading a spool stream: records in seq order, following a writer by polling sizes.

Why apart from the writer (``tdtp/brokers/spool/log.py``): a reader takes no lock
and shares no state with writers; it trusts only what the bytes on disk say
(``tdtp/brokers/spool/format.py``), so it can run in any process at any time.  It
is given what it needs explicitly: the stream's files, the high watermark to catch
up to, and how to poll.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from tdtp.brokers.base import BrokerError, Cursor, Message
from tdtp.brokers.spool.files import SpoolFiles
from tdtp.brokers.spool.format import SEG_HEADER, index_offset, indexed, read_header, read_record, scan

#: A fetch returns at most this many records / bytes: one read never holds more than a few parts.
FETCH_MAX_RECORDS = 16
FETCH_MAX_BYTES = 64 * 1024 * 1024


class SpoolCursor(Cursor):
    """Reads records in seq order from the segment files, following a writer by polling sizes.

    ``start_hw`` is the stream's high watermark when the read began; ``start`` the
    first seq wanted (None: the oldest retained), ``online`` starts at ``start_hw``.
    ``error`` makes a BrokerError naming the stream; ``closed`` says the log was closed.
    """

    def __init__(
        self,
        files: SpoolFiles,
        start_hw: int,
        start: int | None,
        online: bool,
        *,
        poll_interval: float,
        error: Callable[[str], BrokerError],
        closed: Callable[[], bool],
    ) -> None:
        self.files = files
        self.poll_interval = poll_interval
        self.error = error
        self.closed = closed
        self.start_hw = start_hw
        segments = files.segments()
        if online:
            start = self.start_hw
        elif start is None:
            start = segments[0] if segments else 0
        elif segments and start < segments[0]:
            raise error(f"seq {start} is no longer retained: the spool starts at seq {segments[0]}")
        self.want = start
        self.fd: int | None = None
        self.seg_first = 0
        self.offset = 0
        self.rec_seq = start
        self._open_at(start)

    @property
    def position(self) -> int:
        return max(self.rec_seq, self.want)

    def _open_at(self, seq: int) -> None:
        """Open the segment holding ``seq`` and find its offset (index, else header scan)."""
        files, where = self.files, self.files.where
        for _ in range(5):
            segments = [f for f in files.segments() if f <= seq]
            if not segments:
                all_segments = files.segments()
                if all_segments and seq < all_segments[0]:
                    raise self.error(f"seq {seq} is no longer retained: the spool starts at seq {all_segments[0]}")
                return  # nothing written yet: wait for the first segment
            first = segments[-1]
            try:
                fd = files.open_segment(first)
            except FileNotFoundError:
                continue
            break
        else:
            raise self.error(f"segment for seq {seq} disappeared while opening it")
        size = os.fstat(fd).st_size
        offset = index_offset(files.index(first), first, seq)
        rec_seq = seq
        head = read_header(fd, offset, where) if offset is not None and offset < size else None
        if head is None or head[0] != seq:
            count, offset = indexed(fd, files.index(first), first, size, where)
            rec_seq = first + count
            for off, length in scan(fd, offset, rec_seq, size, where, verify=False):
                if rec_seq == seq:
                    offset = off
                    break
                offset, rec_seq = off + length, rec_seq + 1
        self.fd, self.seg_first, self.offset, self.rec_seq = fd, first, offset, rec_seq

    def _next_segment(self) -> bool:
        """At the end of this segment: move on if the writer has started the next one."""
        if self.fd is None:
            self._open_at(self.rec_seq)
            return self.fd is not None
        if self.rec_seq == self.seg_first or not os.path.exists(self.files.segment(self.rec_seq)):
            return False
        # The writer only creates the next segment after finishing this one, but our last
        # read may predate its final append: look once more before leaving.
        if os.fstat(self.fd).st_size > self.offset:
            return True
        os.close(self.fd)
        self.fd = None
        try:
            self.fd = self.files.open_segment(self.rec_seq)
        except FileNotFoundError:
            raise self.error(f"seq {self.rec_seq} is no longer retained (removed while reading)") from None
        self.seg_first, self.offset = self.rec_seq, SEG_HEADER.size
        return True

    def fetch(self, wait: float) -> list[Message]:
        deadline = time.monotonic() + wait
        out: list[Message] = []
        nbytes = 0
        while True:
            rec = None
            if self.fd is not None:
                size = os.fstat(self.fd).st_size
                rec = read_record(self.fd, self.offset, size, self.files.where) if self.offset < size else None
            if rec is not None:
                seq, headers, body, length = rec
                if seq != self.rec_seq:
                    raise self.error(f"corrupt segment: found seq {seq} where {self.rec_seq} was expected")
                self.offset += length
                self.rec_seq += 1
                if seq >= self.want:
                    out.append(Message(seq=seq, body=body, headers=headers))
                    nbytes += len(body)
                    if len(out) >= FETCH_MAX_RECORDS or nbytes >= FETCH_MAX_BYTES:
                        return out
                continue
            if out:
                return out
            if self._next_segment():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed():
                return out
            time.sleep(min(self.poll_interval, remaining))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
