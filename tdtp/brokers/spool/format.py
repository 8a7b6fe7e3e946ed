"""The spool's bytes on disk: segment header, records, index entries.

Why a module of its own: this is the file format, which must stay readable by
every version that shares a spool directory, while the writer and reader around it
(``tdtp/brokers/spool/log.py``, ``tdtp/brokers/spool/cursor.py``) may change freely.
Everything here works on open file descriptors and plain values; nothing keeps
state.

A segment starts with ``TDTPSEG1`` + u64 first seq.  A record is a 24-byte header
(``TDR1``, u64 seq, u32 headers length, u32 body length, u32 CRC-32C of the header
fields, headers and body) followed by the headers as JSON and the body.  The
lengths and the CRC are what let a writer that opens after a crash (SIGKILL
mid-append) find and cut a torn last record; readers simply never return a record
whose bytes are incomplete or whose CRC does not match.  An index file holds one
little-endian u64 file offset per record of its segment.
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Iterable, Iterator

from tdtp.brokers.base import BrokerError

try:  # hardware CRC-32C; zlib's CRC-32 keeps the spool usable without the package
    from crc32c import crc32c as _crc_update
except ImportError:  # pragma: no cover - crc32c is a declared dependency
    from zlib import crc32 as _crc_update

SEG_MAGIC = b"TDTPSEG1"
SEG_HEADER = struct.Struct("<8sQ")
REC_MAGIC = b"TDR1"
REC_HEADER = struct.Struct("<4sQIII")
REC_PREFIX = struct.Struct("<4sQII")  # the header without its CRC
REC_CRC = struct.Struct("<I")
IDX_ENTRY = struct.Struct("<Q")

#: (seq, headers length, body length, crc) of a record header.
RecordHead = tuple[int, int, int, int]
#: (seq, headers, body, record length) of a whole record.
Record = tuple[int, dict[str, str], bytes, int]


def record_crc(prefix: bytes, headers: bytes, body: bytes) -> int:
    """The CRC a record stores: over its header fields (``prefix``), headers and body."""
    return _crc_update(body, _crc_update(headers, _crc_update(prefix)))


# ---------------------------------------------------------------- segments
def segment_header(first: int) -> bytes:
    """The first bytes of the segment whose first record has seq ``first``."""
    return SEG_HEADER.pack(SEG_MAGIC, first)


def open_segment(path: str, first: int, where: str, flags: int = os.O_RDONLY) -> int:
    """Open a segment file and check its header names ``first``; return the fd."""
    fd = os.open(path, flags)
    raw = os.pread(fd, SEG_HEADER.size, 0)
    if len(raw) < SEG_HEADER.size or SEG_HEADER.unpack(raw) != (SEG_MAGIC, first):
        os.close(fd)
        raise BrokerError(f"segment {path} has a bad header", where=where)
    return fd


# ----------------------------------------------------------------- records
def encode_headers(headers: dict[str, str]) -> bytes:
    """A record's headers as stored: compact JSON, or nothing when there are none."""
    return json.dumps(headers, separators=(",", ":"), ensure_ascii=False).encode() if headers else b""


def record_length(hbytes: bytes, body: bytes) -> int:
    return REC_HEADER.size + len(hbytes) + len(body)


def encode_record(seq: int, hbytes: bytes, body: bytes) -> list[bytes]:
    """A record as the pieces to write one after another (header, headers, body: no body copy)."""
    prefix = REC_PREFIX.pack(REC_MAGIC, seq, len(hbytes), len(body))
    return [prefix + REC_CRC.pack(record_crc(prefix, hbytes, body)), hbytes, body]


def read_header(fd: int, offset: int, where: str) -> RecordHead | None:
    """(seq, headers_len, body_len, crc) at offset, or None if not (yet) complete."""
    raw = os.pread(fd, REC_HEADER.size, offset)
    if len(raw) < REC_HEADER.size:
        return None
    magic, seq, hlen, blen, crc = REC_HEADER.unpack(raw)
    if magic != REC_MAGIC:
        raise BrokerError(f"corrupt record at offset {offset} (bad magic)", where=where)
    return seq, hlen, blen, crc


def read_record(fd: int, offset: int, size: int, where: str) -> Record | None:
    """(seq, headers, body, record length) if a whole, CRC-valid record is at offset; else None.

    None means "not there yet": a writer may be mid-append (a concurrent reader
    sees a prefix of a write) or a crashed writer left a torn tail that the next
    writer will cut.  A bad CRC on bytes that are all present is re-read once
    (a writer may just have replaced a torn tail) before it counts as torn.
    """
    for attempt in range(2):
        head = read_header(fd, offset, where)
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
        if record_crc(prefix, hbytes, body) == crc:
            try:
                headers = json.loads(hbytes) if hlen else {}
            except ValueError as exc:
                raise BrokerError(f"corrupt headers at offset {offset}: {exc}", where=where) from exc
            return seq, headers, body, length
        if attempt == 0:
            time.sleep(0.01)
        elif offset + length < os.fstat(fd).st_size:
            # Whole records follow it, so this is not a torn tail: it is damage.
            raise BrokerError(f"corrupt record seq {seq} at offset {offset} (CRC mismatch)", where=where)
    return None


def scan(fd: int, offset: int, seq: int, size: int, where: str, *, verify: bool) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) of complete records from ``offset`` on, stopping at the first gap.

    ``verify`` checks each CRC (reads bodies); without it only headers are read,
    which is how indexes are rebuilt and positions found cheaply.
    """
    while True:
        if verify:
            rec = read_record(fd, offset, size, where)
            if rec is None:
                return
            got, length = rec[0], rec[3]
        else:
            head = read_header(fd, offset, where)
            if head is None:
                return
            got, hlen, blen, _ = head
            length = REC_HEADER.size + hlen + blen
            if offset + length > size:
                return
        if got != seq:
            raise BrokerError(f"corrupt segment: record at offset {offset} has seq {got}, expected {seq}", where=where)
        yield offset, length
        offset += length
        seq += 1


# ------------------------------------------------------------------- index
def index_entries(offsets: Iterable[int]) -> bytes:
    """Index entries for records at these file offsets, in order."""
    return b"".join(IDX_ENTRY.pack(o) for o in offsets)


def indexed(fd: int, idx_path: str, first: int, size: int, where: str) -> tuple[int, int]:
    """(records covered by a trustworthy index, offset after the last of them).

    The index is trusted only if its last entry points at a whole record with
    the expected seq; otherwise it counts as empty and callers scan instead.
    """
    try:
        with open(idx_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            count = f.tell() // IDX_ENTRY.size
            if count == 0:
                return 0, SEG_HEADER.size
            f.seek((count - 1) * IDX_ENTRY.size)
            (last,) = IDX_ENTRY.unpack(f.read(IDX_ENTRY.size))
    except FileNotFoundError:
        return 0, SEG_HEADER.size
    try:
        head = read_header(fd, last, where)
    except BrokerError:
        head = None
    if head is None or head[0] != first + count - 1:
        return 0, SEG_HEADER.size
    end = last + REC_HEADER.size + head[1] + head[2]
    if end > size:
        return 0, SEG_HEADER.size
    return count, end


def index_offset(idx_path: str, first: int, seq: int) -> int | None:
    """File offset of ``seq`` from the index of segment ``first``, if the index covers it."""
    try:
        with open(idx_path, "rb") as f:
            f.seek((seq - first) * IDX_ENTRY.size)
            raw = f.read(IDX_ENTRY.size)
    except FileNotFoundError:
        return None
    return IDX_ENTRY.unpack(raw)[0] if len(raw) == IDX_ENTRY.size else None
