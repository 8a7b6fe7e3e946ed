"""zstd + base64: the compressed form of a part's rows (docs/format.md §3, v1.2).

A compressed ``<Data>`` holds one ``<R>``: the LF-joined row lines as one zstd frame,
in base64, with an XXH3-64 ``checksum`` of the base64 text.  Decompression never
produces more than a cap (256 MiB by default, as Go), so a zstd bomb fails early.
Go may also compress a whole message (Kafka spool): ``maybe_unzstd`` undoes that.
"""

from __future__ import annotations

import base64
import binascii
import threading

import xxhash
import zstandard

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
    b64 = base64.b64encode(frame)
    checksum = xxhash.xxh3_64_hexdigest(b64)
    return b64, checksum


def unpack_rows(b64: str, checksum: str, cap: int, where: str) -> bytes:
    """Reverse of ``pack_rows``: verify the checksum (when there is one), then base64, then zstd."""
    if checksum:
        actual = xxhash.xxh3_64_hexdigest(b64.encode("ascii", "replace"))
        if actual != checksum.rjust(16, "0"):
            raise IntegrityError(
                f"checksum mismatch: attribute says {checksum[:40]}, base64 text hashes to {actual}",
                where=where,
            )
    try:
        frame = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PacketFormatError(f"compressed rows are not valid base64: {exc}", where=where) from exc
    return zstd_decompress(frame, cap, where)


def maybe_unzstd(data: bytes, cap: int, where: str) -> bytes:
    """A whole message compressed as one zstd frame (Go's Kafka spool) is decompressed first."""
    if data[:4] == ZSTD_MAGIC:
        return zstd_decompress(data, cap, where)
    return data


def zstd_decompress(frame: bytes, cap: int, where: str) -> bytes:
    """Decompress one zstd frame, never producing more than ``cap`` bytes."""
    try:
        size = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise PacketFormatError(f"not a valid zstd frame: {exc}", where=where) from exc
    dctx = zstandard.ZstdDecompressor()
    try:
        if size >= 0:
            if size > cap:
                raise PacketFormatError(
                    f"decompressed size {size} exceeds the limit of {cap} bytes", where=where
                )
            return dctx.decompress(frame)
        # Unknown size: feed small input chunks so a bomb cannot run far past the cap.
        dobj = dctx.decompressobj()
        out: list[bytes] = []
        total = 0
        step = 4096
        for off in range(0, len(frame), step):
            chunk = dobj.decompress(frame[off : off + step])
            total += len(chunk)
            if total > cap:
                raise PacketFormatError(f"decompressed data exceeds the limit of {cap} bytes", where=where)
            out.append(chunk)
            if dobj.eof:
                break
        if not dobj.eof:
            raise PacketFormatError("zstd frame is truncated", where=where)
        return b"".join(out)
    except zstandard.ZstdError as exc:
        raise PacketFormatError(f"zstd data is broken: {exc}", where=where) from exc
