"""zstd + base64: the compressed form of a part's rows (docs/format.md §3, v1.2).

A compressed ``<Data>`` holds one ``<R>``: the LF-joined row lines as one zstd frame,
in base64, with an XXH3-64 ``checksum`` of the base64 text.  Decompression never
produces much more than a cap (``DecodeLimits.max_decoded_bytes``), so a zstd bomb
fails early and in bounded memory.
Go may also compress a whole message (Kafka spool): ``maybe_unzstd`` undoes that.
"""

from __future__ import annotations

import binascii
import threading

import pybase64
import xxhash
import zstandard

from tdtp.codec.limits import exceeded
from tdtp.packet import IntegrityError, PacketFormatError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_tls = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """One compressor per thread and level: creating a context per part costs more than small parts."""
    cache = _tls.__dict__.setdefault("compressors", {})
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level)
    return comp


def pack_rows(data: bytes, level: int) -> tuple[bytes, str]:
    """LF-joined row bytes -> (base64 of one zstd frame, its XXH3-64 checksum): a compressed ``<R>``."""
    frame = _compressor(level).compress(data)
    b64 = pybase64.b64encode(frame)
    checksum = xxhash.xxh3_64_hexdigest(b64)
    return b64, checksum


def unpack_rows(b64: str, checksum: str, cap: int, where: str) -> bytes:
    """Reverse of ``pack_rows``: verify the checksum (when there is one), then base64, then zstd.

    ``cap`` is ``DecodeLimits.max_decoded_bytes``: decompression stops past it.
    """
    if checksum:
        actual = xxhash.xxh3_64_hexdigest(b64.encode("ascii", "replace"))
        if actual != checksum.rjust(16, "0"):
            raise IntegrityError(
                f"checksum mismatch: attribute says {checksum[:40]}, base64 text hashes to {actual}",
                where=where,
            )
    try:
        frame = pybase64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PacketFormatError(f"compressed rows are not valid base64: {exc}", where=where) from exc
    return zstd_decompress(frame, cap, where, "decompressed data", "max_decoded_bytes")


def maybe_unzstd(data: bytes, cap: int, where: str) -> bytes:
    """A whole message compressed as one zstd frame (Go's Kafka spool) is decompressed first.

    ``cap`` is ``DecodeLimits.max_xml_bytes``: what comes out is the packet's XML.
    """
    if data[:4] == ZSTD_MAGIC:
        return zstd_decompress(data, cap, where, "decompressed message", "max_xml_bytes")
    return data


# Four bytes of a zstd frame (an RLE block: 3 bytes of header, 1 of content) can stand
# for 128 KiB of output; no block does better.
_MAX_RATIO = 128 * 1024 // 4
_MIN_SLICE = 32


def zstd_decompress(frame: bytes, cap: int, where: str, what: str, limit: str) -> bytes:
    """Decompress one zstd frame, never holding much more than ``cap`` bytes of output.

    Not decompress-then-check: a 9 KB frame can produce 200 MiB.  A frame that states
    its size (every frame our writer and Go write) is refused before any work when
    the size is over the cap, else decompressed in one call into a buffer of exactly
    that size (zstd fails a frame that runs past its stated size).  A frame without a
    size goes through the streaming decompressor in input slices so small that one
    slice cannot add more than the room left under the cap (plus a block), and stops
    as soon as the output is past the cap: a bomb costs at most about ``cap``.  ``what`` and ``limit`` (the
    ``DecodeLimits`` field behind ``cap``) word the refusal.
    """
    try:
        size = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise PacketFormatError(f"not a valid zstd frame: {exc}", where=where) from exc
    if size > cap:
        raise exceeded(f"{what} (the frame states {size} bytes)", limit, cap, where)
    dctx = zstandard.ZstdDecompressor()
    try:
        if size >= 0:
            return dctx.decompress(frame)
        dobj = dctx.decompressobj()
        chunks: list[bytes] = []  # never copied into one growing buffer: that would double the peak
        total = 0
        view = memoryview(frame)
        off, n = 0, len(frame)
        while off < n and not dobj.eof:
            step = max(_MIN_SLICE, (cap - total) // _MAX_RATIO)
            chunk = dobj.decompress(view[off : off + step])
            off += step
            total += len(chunk)
            if total > cap:
                raise exceeded(what, limit, cap, where)
            chunks.append(chunk)
        if not dobj.eof:
            raise PacketFormatError("zstd frame is truncated", where=where)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except zstandard.ZstdError as exc:
        raise PacketFormatError(f"zstd data is broken: {exc}", where=where) from exc
