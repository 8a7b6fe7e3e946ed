"""The spool's part log: options, the writer's lifecycle, dead letters.

Why the writer is the whole of this module: appending is where the spool's
guarantees are made -- ``fdatasync`` before a seq is returned, the index written
after the data, a torn tail cut under the writers' ``flock``, rotation that only
ever creates the next file, retention that never deletes the current segment.
The bytes it writes are defined in ``tdtp/brokers/spool/format.py``, the file
names in ``tdtp/brokers/spool/files.py``; readers (``tdtp/brokers/spool/cursor.py``)
share nothing with it but those files.  See ``tdtp/brokers/spool/__init__.py`` for
the URL and the options.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tdtp.brokers.base import DEFAULT_MAX_MESSAGE_BYTES, BrokerError, Cursor, DeadLetter, Message, PartLog
from tdtp.brokers.options import BOOL, DURATION, INT, OPT_DURATION, OPT_SIZE, SIZE, resolve_options
from tdtp.brokers.spool.cursor import SpoolCursor
from tdtp.brokers.spool.files import SpoolFiles
from tdtp.brokers.spool.format import (
    IDX_ENTRY,
    SEG_HEADER,
    encode_headers,
    encode_record,
    index_entries,
    indexed,
    record_length,
    scan,
    segment_header,
)

DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024
_STREAM_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

OPTIONS = {
    "segment_bytes": (SIZE, DEFAULT_SEGMENT_BYTES),
    "retention_bytes": (OPT_SIZE, None),
    "retention_age": (OPT_DURATION, None),
    "max_message_bytes": (SIZE, DEFAULT_MAX_MESSAGE_BYTES),
    "max_in_flight": (INT, 8),
    "poll_interval": (DURATION, 0.02),
    "stall_timeout": (DURATION, 60.0),
    "create": (BOOL, True),
}


def parse_spool_url(url: str) -> tuple[str, str, str]:
    """``spool:///DIR/STREAM?query`` -> (directory, stream, query)."""
    if not url.startswith("spool://"):
        raise BrokerError("not a spool URL", where=url)
    rest = url[len("spool://") :]
    path, _, query = rest.partition("?")
    if not path.startswith("/") or len(path) < 2:
        raise BrokerError("spool URL must be spool:///DIR/STREAM (or spool:////abs/DIR/STREAM)", where=url)
    path = path[1:].rstrip("/")
    directory, _, stream = path.rpartition("/")
    if not _STREAM_RE.match(stream):
        raise BrokerError(f"bad stream name {stream!r} (letters, digits, _ . - only)", where=url)
    return directory or ".", stream, query


@dataclass(slots=True)
class _Writer:
    """The writer's view of the current segment; refreshed under the file lock before each append."""

    first: int
    fd: int
    idx_fd: int
    ino: int
    count: int
    end: int


class SpoolLog(PartLog):
    """A part log in segment files; seq = record index from 0 over the whole stream.

    ``publish`` returns after ``fdatasync``; ``high_watermark`` reads the index and
    the current segment's size, never bodies (except the CRC check of a record
    written but not yet indexed, which only exists for a moment or after a crash).
    """

    def __init__(self, url: str, **options: object) -> None:
        super().__init__()
        self.url = url
        self.directory, self.stream, query = parse_spool_url(url)
        self.files = SpoolFiles(self.directory, self.stream, self.where)
        opts = resolve_options(url, query, options, OPTIONS)
        self.segment_bytes: int = opts["segment_bytes"]
        self.retention_bytes: int | None = opts["retention_bytes"]
        self.retention_age: float | None = opts["retention_age"]
        self.max_message_bytes = opts["max_message_bytes"]
        self.max_in_flight = max(1, opts["max_in_flight"])
        self.poll_interval: float = opts["poll_interval"]
        self.stall_timeout = opts["stall_timeout"]
        self._wlock = threading.Lock()
        self._writer: _Writer | None = None
        self._lock_fd: int | None = None
        if opts["create"]:
            try:
                os.makedirs(self.directory, exist_ok=True)
            except OSError as exc:
                raise self.error(f"cannot create spool directory: {exc}") from exc
            if self.files.segments() and os.access(self.directory, os.W_OK):
                self._repair()
        elif not self.files.segments():
            raise self.error("stream does not exist (nothing has been published to it)")

    # ----------------------------------------------------------------- state
    @property
    def dead_dir(self) -> str:
        return self.files.dead_dir

    def _count(self, first: int) -> int:
        """Whole records in segment ``first``: index, then a CRC-checked look at anything after it."""
        fd = self.files.open_segment(first)
        try:
            size = os.fstat(fd).st_size
            count, end = indexed(fd, self.files.index(first), first, size, self.where)
            for _ in scan(fd, end, first + count, size, self.where, verify=True):
                count += 1
            return count
        finally:
            os.close(fd)

    def high_watermark(self) -> int:
        """Next seq: the current segment's first seq + its record count (index, sizes; no bodies)."""
        for _ in range(5):
            segments = self.files.segments()
            if not segments:
                return 0
            try:
                return segments[-1] + self._count(segments[-1])
            except FileNotFoundError:  # retention removed it between listdir and open; look again
                continue
        raise self.error("segments keep disappearing while reading the high watermark")

    def first_seq(self) -> int:
        """The oldest seq still retained (0 for an empty stream)."""
        segments = self.files.segments()
        return segments[0] if segments else 0

    # --------------------------------------------------------------- writing
    def _lock(self) -> int:
        if self._lock_fd is None:
            path = self.files.lock
            try:
                self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise self.error(f"cannot open lock file {path}: {exc}") from exc
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        return self._lock_fd

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _create_segment(self, first: int) -> None:
        """Create an empty segment atomically (tmp + rename), so no one ever sees half a header."""
        path = self.files.segment(first)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, segment_header(first))
            os.fsync(fd)
        finally:
            os.close(fd)
        with open(self.files.index(first), "wb"):
            pass
        os.replace(tmp, path)
        link = self.files.current_link
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link + ".tmp")
        os.symlink(os.path.basename(path), link + ".tmp")
        os.replace(link + ".tmp", link)
        self._fsync_dir()

    def _attach(self, first: int) -> _Writer:
        """Open segment ``first`` for appending; cut a torn tail; make its index whole."""
        fd = self.files.open_segment(first, os.O_RDWR)
        idx_fd = os.open(self.files.index(first), os.O_RDWR | os.O_CREAT, 0o644)
        st = os.fstat(fd)
        count, end = indexed(fd, self.files.index(first), first, st.st_size, self.where)
        writer = _Writer(first=first, fd=fd, idx_fd=idx_fd, ino=st.st_ino, count=count, end=end)
        self._absorb(writer)
        return writer

    def _absorb(self, w: _Writer) -> None:
        """Take in records appended since ``w.end`` (other writers), index them, cut a torn tail.

        Called under the file lock, so nobody is appending: bytes after the last
        whole, CRC-valid record are debris of a crashed writer and are removed.
        """
        size = os.fstat(w.fd).st_size
        for offset, length in scan(w.fd, w.end, w.first + w.count, size, self.where, verify=True):
            os.pwrite(w.idx_fd, index_entries([offset]), w.count * IDX_ENTRY.size)
            w.count += 1
            w.end = offset + length
        if size > w.end:
            os.ftruncate(w.fd, w.end)
            os.fsync(w.fd)
        if os.fstat(w.idx_fd).st_size != w.count * IDX_ENTRY.size:
            os.ftruncate(w.idx_fd, w.count * IDX_ENTRY.size)

    def _close_writer(self) -> None:
        if self._writer is not None:
            os.close(self._writer.fd)
            os.close(self._writer.idx_fd)
            self._writer = None

    def _sync_writer(self) -> _Writer:
        """Bring the writer up to date with the files (other writers, rotations, crashes)."""
        w = self._writer
        if w is not None:
            try:
                current = os.stat(self.files.segment(w.first)).st_ino == w.ino
            except FileNotFoundError:
                current = False
            if not current:
                self._close_writer()
                w = None
        if w is None:
            self._remove_debris()
            segments = self.files.segments()
            if not segments:
                self._create_segment(0)
                segments = [0]
            self._check_sealed(segments)
            w = self._writer = self._attach(segments[-1])
            self._apply_retention()
        while True:
            self._absorb(w)
            nxt = w.first + w.count
            if w.count and os.path.exists(self.files.segment(nxt)):  # another writer rotated
                self._close_writer()
                w = self._writer = self._attach(nxt)
                continue
            return w

    def _remove_debris(self) -> None:
        for name in os.listdir(self.directory):
            if self.files.is_debris(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))

    def _check_sealed(self, segments: list[int]) -> None:
        """Rebuild the index of any sealed segment whose index does not cover it exactly."""
        for first, nxt in zip(segments, segments[1:], strict=False):
            try:
                idx_size = os.stat(self.files.index(first)).st_size
            except FileNotFoundError:
                idx_size = -1
            if idx_size != (nxt - first) * IDX_ENTRY.size:
                self._rebuild_one(first)

    def _rebuild_one(self, first: int) -> int:
        fd = self.files.open_segment(first)
        try:
            size = os.fstat(fd).st_size
            offsets = [off for off, _ in scan(fd, SEG_HEADER.size, first, size, self.where, verify=True)]
        finally:
            os.close(fd)
        tmp = self.files.index(first) + ".tmp"
        with open(tmp, "wb") as f:
            f.write(index_entries(offsets))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.files.index(first))
        return len(offsets)

    def _repair(self) -> None:
        """On open: cut a torn tail a killed writer left, complete indexes, apply retention.

        Done under the writer lock, so nobody is mid-append and anything after the
        last whole record really is debris.  Read-only users skip it (and still never
        see a torn record).
        """
        with self._wlock:
            lock_fd = self._lock()
            try:
                self._sync_writer()
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def rebuild_index(self) -> int:
        """Rebuild every segment's index from the segment itself; return the records indexed.

        The index is only an accelerator: it can be deleted or damaged and this
        (or simply the next writer) restores it.
        """
        with self._wlock:
            lock_fd = self._lock()
            try:
                self._close_writer()
                total = sum(self._rebuild_one(first) for first in self.files.segments())
                self._sync_writer()
                return total
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _rotate(self, w: _Writer) -> _Writer:
        os.fsync(w.idx_fd)
        nxt = w.first + w.count
        self._create_segment(nxt)
        self._close_writer()
        self._writer = self._attach(nxt)
        self._apply_retention()
        return self._writer

    def _apply_retention(self) -> None:
        """Delete the oldest whole segments beyond ``retention_bytes`` / older than ``retention_age``.

        The current segment is never deleted, so the newest data always survives.
        Age is a segment's last write (mtime): a segment goes when its newest record is old.
        """
        if self.retention_bytes is None and self.retention_age is None:
            return
        segments = self.files.segments()
        stats = []
        for first in segments:
            try:
                stats.append((first, os.stat(self.files.segment(first))))
            except FileNotFoundError:
                continue
        total = sum(st.st_size for _, st in stats)
        now = time.time()
        for first, st in stats[:-1]:
            too_big = self.retention_bytes is not None and total > self.retention_bytes
            too_old = self.retention_age is not None and now - st.st_mtime > self.retention_age
            if not (too_big or too_old):
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.files.segment(first))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.files.index(first))
            total -= st.st_size

    def _encode(self, body: bytes, headers: dict[str, str] | None) -> tuple[bytes, bytes]:
        body, hdrs = self.prepared(body, headers)
        return encode_headers(hdrs), body

    def _write_record(self, w: _Writer, hbytes: bytes, body: bytes) -> int:
        """Write one record at the end of the current segment (no fsync yet); return its seq."""
        length = record_length(hbytes, body)
        seq = w.first + w.count
        parts = encode_record(seq, hbytes, body)
        written = os.pwritev(w.fd, parts, w.end)
        if written < length:  # a short write on a regular file: finish it the slow way
            data = b"".join(parts)
            while written < length:
                written += os.pwrite(w.fd, data[written:], w.end + written)
        w.count += 1
        w.end += length
        return seq

    def _commit(self, w: _Writer, offsets: list[int]) -> None:
        """Make the records at ``offsets`` durable, then index them (index after data, always)."""
        if not offsets:
            return
        os.fdatasync(w.fd)
        first_pos = (w.count - len(offsets)) * IDX_ENTRY.size
        os.pwrite(w.idx_fd, index_entries(offsets), first_pos)

    def _write_batch(self, batch: list[tuple[bytes, bytes]]) -> list[int]:
        """Append records with one fdatasync per segment touched.  Under both locks."""
        with self._wlock:
            if self.closed:
                raise self.error("publish() on a closed broker")
            lock_fd = self._lock()
            try:
                w = self._sync_writer()
                committed = (w.count, w.end)
                seqs: list[int] = []
                pending: list[int] = []
                try:
                    for hbytes, body in batch:
                        length = record_length(hbytes, body)
                        if w.count and w.end + length > self.segment_bytes:
                            self._commit(w, pending)
                            pending = []
                            w = self._rotate(w)
                            committed = (w.count, w.end)
                        pending.append(w.end)
                        seqs.append(self._write_record(w, hbytes, body))
                    self._commit(w, pending)
                except OSError as exc:
                    # Leave no half-written record behind for readers to wait on.
                    with contextlib.suppress(OSError):
                        os.ftruncate(w.fd, committed[1])
                    w.count, w.end = committed
                    if exc.errno == errno.ENOSPC:
                        raise self.error("no space left on the spool's disk") from exc
                    raise self.error(f"cannot append to the spool: {exc}") from exc
                return seqs
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def publish(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        """Append one record and return its seq after ``fdatasync``."""
        return self._write_batch([self._encode(body, headers)])[0]

    def publish_many(self, items: Iterable[tuple[bytes, dict[str, str] | None]]) -> Iterator[int]:
        """Group commit: up to ``max_in_flight`` records per fdatasync; seqs yielded once durable."""
        batch: list[tuple[bytes, bytes]] = []
        for body, headers in items:
            batch.append(self._encode(body, headers))
            if len(batch) >= self.max_in_flight:
                yield from self._write_batch(batch)
                batch = []
        if batch:
            yield from self._write_batch(batch)

    # --------------------------------------------------------------- reading
    def open_cursor(self, start: int | None, online: bool) -> Cursor:
        if not os.path.isdir(self.directory):
            raise self.error("spool directory does not exist")
        return SpoolCursor(
            self.files,
            self.high_watermark(),
            start,
            online,
            poll_interval=self.poll_interval,
            error=self.error,
            closed=lambda: self.closed,
        )

    # ----------------------------------------------------------- dead letters
    def dead_letter(self, message: Message, reason: str) -> None:
        """Write ``<seq>.body`` and ``<seq>.reason.json`` into ``STREAM.dead/`` (reason last = complete)."""
        os.makedirs(self.dead_dir, exist_ok=True)
        name = os.path.join(self.dead_dir, f"{message.seq:020d}")
        meta = {
            "seq": message.seq,
            "reason": reason,
            "headers": message.headers,
            "stream": self.stream,
            "dead_lettered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        for suffix, data in ((".body", message.body), (".reason.json", json.dumps(meta, indent=1).encode())):
            with open(name + suffix + ".tmp", "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(name + suffix + ".tmp", name + suffix)

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        try:
            names = sorted(n for n in os.listdir(self.dead_dir) if n.endswith(".reason.json"))
        except FileNotFoundError:
            return []
        out = []
        for name in names[:limit]:
            base = os.path.join(self.dead_dir, name[: -len(".reason.json")])
            with open(base + ".reason.json", "rb") as f:
                meta = json.load(f)
            with open(base + ".body", "rb") as f:
                body = f.read()
            out.append(DeadLetter(int(meta["seq"]), str(meta["reason"]), body, dict(meta.get("headers", {}))))
        return out

    def delete(self) -> None:
        """Remove every file of this stream (segments, indexes, lock, current link, dead letters)."""
        with self._wlock:
            self._close_writer()
            for name in os.listdir(self.directory):
                if self.files.is_stream_file(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.directory, name))
            shutil.rmtree(self.dead_dir, ignore_errors=True)

    def close(self) -> None:
        super().close()
        with self._wlock:
            self._close_writer()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

