"""The embedded default broker: a part log in plain files, no server needed.

URL: ``spool:///DIR/STREAM`` (three slashes: the path as written, relative to the
working directory) or ``spool:////abs/DIR/STREAM`` (four: absolute).  Options in
the query or as keywords: ``segment_bytes`` (default 256MB), ``retention_bytes``,
``retention_age`` (``7d``, ``6h``, seconds), ``max_message_bytes`` (128 MiB),
``max_in_flight`` (group-commit window of :meth:`SpoolLog.publish_many`),
``poll_interval`` (how often a following reader looks for new data), ``create``.

Layout in ``DIR`` (after the ``rotate+file`` storage of the seeds):

- ``STREAM.<first_seq:020d>.dat`` -- segments, each named by the first seq it
  holds; zero padding makes ``ls`` order equal seq order.  The newest one is the
  current segment being appended to, and ``STREAM.current.dat`` is a symlink to it
  for people and ``tail``.  Segments are never renamed: a reader holding one open
  never sees it change identity, and rotation is just "create the next file".
- ``STREAM.<first_seq:020d>.idx`` -- the index: one little-endian u64 file offset
  per record.  Written after the record is durable, never trusted blindly, and
  rebuilt from the segment whenever it disagrees (:meth:`SpoolLog.rebuild_index`).
- ``STREAM.lock`` -- ``flock`` taken by a writer around each append, so several
  writers (say two partitions exported at once) interleave whole records.
  Readers never take it.
- ``STREAM.dead/`` -- dead letters: ``<seq>.body`` plus ``<seq>.reason.json``.

A segment starts with ``TDTPSEG1`` + u64 first seq.  A record is a 24-byte header
(``TDR1``, u64 seq, u32 headers length, u32 body length, u32 CRC-32C of the header
fields, headers and body) followed by the headers as JSON and the body.  The
lengths and the CRC are what let a writer that opens after a crash (SIGKILL
mid-append) find and cut a torn last record; readers simply never return a record
whose bytes are incomplete or whose CRC does not match.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tdtp.brokers.base import (
    DEFAULT_MAX_MESSAGE_BYTES,
    BrokerError,
    Cursor,
    DeadLetter,
    Message,
    PartLog,
    normalize_headers,
)
from tdtp.brokers.options import (
    BOOL,
    DURATION,
    INT,
    OPT_DURATION,
    OPT_SIZE,
    SIZE,
    resolve_options,
)

try:  # hardware CRC-32C; zlib's CRC-32 keeps the spool usable without the package
    from crc32c import crc32c as _crc_update
except ImportError:  # pragma: no cover - crc32c is a declared dependency
    from zlib import crc32 as _crc_update

SEG_MAGIC = b"TDTPSEG1"
SEG_HEADER = struct.Struct("<8sQ")
REC_MAGIC = b"TDR1"
REC_HEADER = struct.Struct("<4sQIII")
REC_PREFIX = struct.Struct("<4sQII")  # the header without its CRC
IDX_ENTRY = struct.Struct("<Q")

DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024
#: A fetch returns at most this many records / bytes: one read never holds more than a few parts.
FETCH_MAX_RECORDS = 16
FETCH_MAX_BYTES = 64 * 1024 * 1024

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


def _crc(prefix: bytes, headers: bytes, body: bytes) -> int:
    return _crc_update(body, _crc_update(headers, _crc_update(prefix)))


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
            if self._segments() and os.access(self.directory, os.W_OK):
                self._repair()
        elif not self._segments():
            raise self.error("stream does not exist (nothing has been published to it)")

    # ------------------------------------------------------------------ paths
    def _seg_path(self, first: int) -> str:
        return os.path.join(self.directory, f"{self.stream}.{first:020d}.dat")

    def _idx_path(self, first: int) -> str:
        return os.path.join(self.directory, f"{self.stream}.{first:020d}.idx")

    @property
    def dead_dir(self) -> str:
        return os.path.join(self.directory, f"{self.stream}.dead")

    def _segments(self) -> list[int]:
        """First seqs of the segments on disk, ascending."""
        pattern = re.compile(rf"^{re.escape(self.stream)}\.(\d{{20}})\.dat$")
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(pattern.match, names) if m)

    # ------------------------------------------------------- record plumbing
    def _read_header(self, fd: int, offset: int) -> tuple[int, int, int, int] | None:
        """(seq, headers_len, body_len, crc) at offset, or None if not (yet) complete."""
        raw = os.pread(fd, REC_HEADER.size, offset)
        if len(raw) < REC_HEADER.size:
            return None
        magic, seq, hlen, blen, crc = REC_HEADER.unpack(raw)
        if magic != REC_MAGIC:
            raise BrokerError(f"corrupt record at offset {offset} (bad magic)", where=self.where)
        return seq, hlen, blen, crc

    def _read_record(self, fd: int, offset: int, size: int) -> tuple[int, dict[str, str], bytes, int] | None:
        """(seq, headers, body, record length) if a whole, CRC-valid record is at offset; else None.

        None means "not there yet": a writer may be mid-append (a concurrent reader
        sees a prefix of a write) or a crashed writer left a torn tail that the next
        writer will cut.  A bad CRC on bytes that are all present is re-read once
        (a writer may just have replaced a torn tail) before it counts as torn.
        """
        for attempt in range(2):
            head = self._read_header(fd, offset)
            if head is None:
                return None
            seq, hlen, blen, crc = head
            length = REC_HEADER.size + hlen + blen
            if offset + length > size:
                size = os.fstat(fd).st_size
                if offset + length > size:
                    return None
            hbytes = os.pread(fd, hlen, offset + REC_HEADER.size) if hlen else b""
            body = os.pread(fd, blen, offset + REC_HEADER.size + hlen)  # straight into the body: one copy
            if len(hbytes) < hlen or len(body) < blen:
                return None
            prefix = REC_PREFIX.pack(REC_MAGIC, seq, hlen, blen)
            if _crc(prefix, hbytes, body) == crc:
                try:
                    headers = json.loads(hbytes) if hlen else {}
                except ValueError as exc:
                    raise BrokerError(f"corrupt headers at offset {offset}: {exc}", where=self.where) from exc
                return seq, headers, body, length
            if attempt == 0:
                time.sleep(0.01)
            elif offset + length < os.fstat(fd).st_size:
                # Whole records follow it, so this is not a torn tail: it is damage.
                raise BrokerError(f"corrupt record seq {seq} at offset {offset} (CRC mismatch)", where=self.where)
        return None

    def _scan(self, fd: int, offset: int, seq: int, size: int, *, verify: bool) -> Iterator[tuple[int, int]]:
        """Yield (offset, length) of complete records from ``offset`` on, stopping at the first gap.

        ``verify`` checks each CRC (reads bodies); without it only headers are read,
        which is how indexes are rebuilt and positions found cheaply.
        """
        while True:
            if verify:
                rec = self._read_record(fd, offset, size)
                if rec is None:
                    return
                got, length = rec[0], rec[3]
            else:
                head = self._read_header(fd, offset)
                if head is None:
                    return
                got, hlen, blen, _ = head
                length = REC_HEADER.size + hlen + blen
                if offset + length > size:
                    return
            if got != seq:
                raise BrokerError(
                    f"corrupt segment: record at offset {offset} has seq {got}, expected {seq}", where=self.where
                )
            yield offset, length
            offset += length
            seq += 1

    def _indexed(self, fd: int, first: int, size: int) -> tuple[int, int]:
        """(records covered by a trustworthy index, offset after the last of them).

        The index is trusted only if its last entry points at a whole record with
        the expected seq; otherwise it counts as empty and callers scan instead.
        """
        try:
            with open(self._idx_path(first), "rb") as f:
                f.seek(0, os.SEEK_END)
                count = f.tell() // IDX_ENTRY.size
                if count == 0:
                    return 0, SEG_HEADER.size
                f.seek((count - 1) * IDX_ENTRY.size)
                (last,) = IDX_ENTRY.unpack(f.read(IDX_ENTRY.size))
        except FileNotFoundError:
            return 0, SEG_HEADER.size
        try:
            head = self._read_header(fd, last)
        except BrokerError:
            head = None
        if head is None or head[0] != first + count - 1:
            return 0, SEG_HEADER.size
        end = last + REC_HEADER.size + head[1] + head[2]
        if end > size:
            return 0, SEG_HEADER.size
        return count, end

    def _idx_offset(self, first: int, seq: int) -> int | None:
        """File offset of ``seq`` from the index, if the index covers it."""
        try:
            with open(self._idx_path(first), "rb") as f:
                f.seek((seq - first) * IDX_ENTRY.size)
                raw = f.read(IDX_ENTRY.size)
        except FileNotFoundError:
            return None
        return IDX_ENTRY.unpack(raw)[0] if len(raw) == IDX_ENTRY.size else None

    def _open_segment(self, first: int, flags: int = os.O_RDONLY) -> int:
        fd = os.open(self._seg_path(first), flags)
        raw = os.pread(fd, SEG_HEADER.size, 0)
        if len(raw) < SEG_HEADER.size or SEG_HEADER.unpack(raw) != (SEG_MAGIC, first):
            os.close(fd)
            raise BrokerError(f"segment {self._seg_path(first)} has a bad header", where=self.where)
        return fd

    def _count(self, first: int) -> int:
        """Whole records in segment ``first``: index, then a CRC-checked look at anything after it."""
        fd = self._open_segment(first)
        try:
            size = os.fstat(fd).st_size
            count, end = self._indexed(fd, first, size)
            for _ in self._scan(fd, end, first + count, size, verify=True):
                count += 1
            return count
        finally:
            os.close(fd)

    # ----------------------------------------------------------------- state
    def high_watermark(self) -> int:
        """Next seq: the current segment's first seq + its record count (index, sizes; no bodies)."""
        for _ in range(5):
            segments = self._segments()
            if not segments:
                return 0
            try:
                return segments[-1] + self._count(segments[-1])
            except FileNotFoundError:  # retention removed it between listdir and open; look again
                continue
        raise self.error("segments keep disappearing while reading the high watermark")

    def first_seq(self) -> int:
        """The oldest seq still retained (0 for an empty stream)."""
        segments = self._segments()
        return segments[0] if segments else 0

    # --------------------------------------------------------------- writing
    def _lock(self) -> int:
        if self._lock_fd is None:
            path = os.path.join(self.directory, f"{self.stream}.lock")
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
        path = self._seg_path(first)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, SEG_HEADER.pack(SEG_MAGIC, first))
            os.fsync(fd)
        finally:
            os.close(fd)
        with open(self._idx_path(first), "wb"):
            pass
        os.replace(tmp, path)
        link = os.path.join(self.directory, f"{self.stream}.current.dat")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link + ".tmp")
        os.symlink(os.path.basename(path), link + ".tmp")
        os.replace(link + ".tmp", link)
        self._fsync_dir()

    def _attach(self, first: int) -> _Writer:
        """Open segment ``first`` for appending; cut a torn tail; make its index whole."""
        fd = self._open_segment(first, os.O_RDWR)
        idx_fd = os.open(self._idx_path(first), os.O_RDWR | os.O_CREAT, 0o644)
        st = os.fstat(fd)
        count, end = self._indexed(fd, first, st.st_size)
        writer = _Writer(first=first, fd=fd, idx_fd=idx_fd, ino=st.st_ino, count=count, end=end)
        self._absorb(writer)
        return writer

    def _absorb(self, w: _Writer) -> None:
        """Take in records appended since ``w.end`` (other writers), index them, cut a torn tail.

        Called under the file lock, so nobody is appending: bytes after the last
        whole, CRC-valid record are debris of a crashed writer and are removed.
        """
        size = os.fstat(w.fd).st_size
        for offset, length in self._scan(w.fd, w.end, w.first + w.count, size, verify=True):
            os.pwrite(w.idx_fd, IDX_ENTRY.pack(offset), w.count * IDX_ENTRY.size)
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
                current = os.stat(self._seg_path(w.first)).st_ino == w.ino
            except FileNotFoundError:
                current = False
            if not current:
                self._close_writer()
                w = None
        if w is None:
            self._remove_debris()
            segments = self._segments()
            if not segments:
                self._create_segment(0)
                segments = [0]
            self._check_sealed(segments)
            w = self._writer = self._attach(segments[-1])
            self._apply_retention()
        while True:
            self._absorb(w)
            nxt = w.first + w.count
            if w.count and os.path.exists(self._seg_path(nxt)):  # another writer rotated
                self._close_writer()
                w = self._writer = self._attach(nxt)
                continue
            return w

    def _remove_debris(self) -> None:
        prefix = f"{self.stream}."
        for name in os.listdir(self.directory):
            if name.startswith(prefix) and name.endswith(".tmp") and name.count(".") >= 2:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))

    def _check_sealed(self, segments: list[int]) -> None:
        """Rebuild the index of any sealed segment whose index does not cover it exactly."""
        for first, nxt in zip(segments, segments[1:], strict=False):
            try:
                idx_size = os.stat(self._idx_path(first)).st_size
            except FileNotFoundError:
                idx_size = -1
            if idx_size != (nxt - first) * IDX_ENTRY.size:
                self._rebuild_one(first)

    def _rebuild_one(self, first: int) -> int:
        fd = self._open_segment(first)
        try:
            size = os.fstat(fd).st_size
            entries = [IDX_ENTRY.pack(off) for off, _ in self._scan(fd, SEG_HEADER.size, first, size, verify=True)]
        finally:
            os.close(fd)
        tmp = self._idx_path(first) + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"".join(entries))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._idx_path(first))
        return len(entries)

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
                total = sum(self._rebuild_one(first) for first in self._segments())
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
        segments = self._segments()
        stats = []
        for first in segments:
            try:
                stats.append((first, os.stat(self._seg_path(first))))
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
                os.unlink(self._seg_path(first))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._idx_path(first))
            total -= st.st_size

    def _encode(self, body: bytes, headers: dict[str, str] | None) -> tuple[bytes, bytes]:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise self.error(f"publish() needs bytes, got {type(body).__name__}")
        body = bytes(body)
        hdrs = normalize_headers(headers)
        self.check_size(body, hdrs)
        hbytes = json.dumps(hdrs, separators=(",", ":"), ensure_ascii=False).encode() if hdrs else b""
        return hbytes, body

    def _write_record(self, w: _Writer, hbytes: bytes, body: bytes) -> int:
        """Write one record at the end of the current segment (no fsync yet); return its seq."""
        length = REC_HEADER.size + len(hbytes) + len(body)
        seq = w.first + w.count
        prefix = REC_PREFIX.pack(REC_MAGIC, seq, len(hbytes), len(body))
        parts = [prefix + struct.pack("<I", _crc(prefix, hbytes, body)), hbytes, body]
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
        os.pwrite(w.idx_fd, b"".join(IDX_ENTRY.pack(o) for o in offsets), first_pos)

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
                        length = REC_HEADER.size + len(hbytes) + len(body)
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
        return _SpoolCursor(self, start, online)

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
            pattern = re.compile(rf"^{re.escape(self.stream)}\.(\d{{20}}\.(dat|idx)|current\.dat|lock)(\.tmp)?$")
            for name in os.listdir(self.directory):
                if pattern.match(name):
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


class _SpoolCursor(Cursor):
    """Reads records in seq order from the segment files, following a writer by polling sizes."""

    def __init__(self, log: SpoolLog, start: int | None, online: bool) -> None:
        self.log = log
        self.start_hw = log.high_watermark()
        segments = log._segments()
        if online:
            start = self.start_hw
        elif start is None:
            start = segments[0] if segments else 0
        elif segments and start < segments[0]:
            raise log.error(f"seq {start} is no longer retained: the spool starts at seq {segments[0]}")
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
        log = self.log
        for _ in range(5):
            segments = [f for f in log._segments() if f <= seq]
            if not segments:
                all_segments = log._segments()
                if all_segments and seq < all_segments[0]:
                    raise log.error(f"seq {seq} is no longer retained: the spool starts at seq {all_segments[0]}")
                return  # nothing written yet: wait for the first segment
            first = segments[-1]
            try:
                fd = log._open_segment(first)
            except FileNotFoundError:
                continue
            break
        else:
            raise log.error(f"segment for seq {seq} disappeared while opening it")
        size = os.fstat(fd).st_size
        offset = log._idx_offset(first, seq)
        rec_seq = seq
        head = log._read_header(fd, offset) if offset is not None and offset < size else None
        if head is None or head[0] != seq:
            count, offset = log._indexed(fd, first, size)
            rec_seq = first + count
            for off, length in log._scan(fd, offset, rec_seq, size, verify=False):
                if rec_seq == seq:
                    offset = off
                    break
                offset, rec_seq = off + length, rec_seq + 1
        self.fd, self.seg_first, self.offset, self.rec_seq = fd, first, offset, rec_seq

    def _next_segment(self) -> bool:
        """At the end of this segment: move on if the writer has started the next one."""
        log = self.log
        if self.fd is None:
            self._open_at(self.rec_seq)
            return self.fd is not None
        if self.rec_seq == self.seg_first or not os.path.exists(log._seg_path(self.rec_seq)):
            return False
        # The writer only creates the next segment after finishing this one, but our last
        # read may predate its final append: look once more before leaving.
        if os.fstat(self.fd).st_size > self.offset:
            return True
        os.close(self.fd)
        self.fd = None
        try:
            self.fd = log._open_segment(self.rec_seq)
        except FileNotFoundError:
            raise log.error(f"seq {self.rec_seq} is no longer retained (removed while reading)") from None
        self.seg_first, self.offset = self.rec_seq, SEG_HEADER.size
        return True

    def fetch(self, wait: float) -> list[Message]:
        log = self.log
        deadline = time.monotonic() + wait
        out: list[Message] = []
        nbytes = 0
        while True:
            rec = None
            if self.fd is not None:
                size = os.fstat(self.fd).st_size
                rec = log._read_record(self.fd, self.offset, size) if self.offset < size else None
            if rec is not None:
                seq, headers, body, length = rec
                if seq != self.rec_seq:
                    raise log.error(f"corrupt segment: found seq {seq} where {self.rec_seq} was expected")
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
            if remaining <= 0 or log.closed:
                return out
            time.sleep(min(log.poll_interval, remaining))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
