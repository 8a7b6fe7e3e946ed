"""Small zstd frames that decompress to a lot: the decompression bombs of issue 12.

``rle_frame`` writes a frame by hand out of RLE blocks (3 bytes of block header and
1 byte of content stand for up to 128 KiB), so a 9 KB part can claim 200 MiB
without anyone ever holding 200 MiB, the test included.  ``rows_frame`` compresses
real row lines repeated many times (a "valid" bomb: every row parses) through a
streaming compressor, also without holding the output.
"""

from __future__ import annotations

import base64
import re
import struct
from functools import lru_cache

import xxhash
import zstandard

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BLOCK = 128 * 1024


def _block_header(size: int, block_type: int, last: bool) -> bytes:
    return struct.pack("<I", (size << 3) | (block_type << 1) | int(last))[:3]


def rle_frame(pieces: list[tuple[bytes, int]], *, content_size: bool = False) -> bytes:
    """One zstd frame of ``pieces``: (byte, count) runs, each as RLE blocks of 128 KiB.

    ``content_size=True`` states the total in the frame header (then a reader can
    refuse it before decompressing); without it the frame says nothing, the harder
    case.  Window: 128 KiB (descriptor 0x38), the largest block.
    """
    total = sum(n for _, n in pieces)
    if content_size:
        header = ZSTD_MAGIC + bytes([0xC0, 0x38]) + struct.pack("<Q", total)
    else:
        header = ZSTD_MAGIC + bytes([0x00, 0x38])
    blocks: list[tuple[int, bytes]] = []
    for byte, count in pieces:
        while count > 0:
            n = min(count, BLOCK)
            blocks.append((n, byte))
            count -= n
    out = [header]
    for i, (n, byte) in enumerate(blocks):
        out.append(_block_header(n, 1, i == len(blocks) - 1) + byte)
    return b"".join(out)


@lru_cache(maxsize=32)
def rows_frame(line: bytes, count: int, *, content_size: bool = False) -> bytes:
    """A zstd frame of ``line`` repeated ``count`` times (LF between, none at the end)."""
    comp = zstandard.ZstdCompressor(level=3, write_content_size=content_size)
    chunks = []
    obj = comp.compressobj(size=len(line) * count + count - 1 if content_size else -1)
    block = (line + b"\n") * max(1, (1 << 20) // (len(line) + 1))
    per_block = block.count(b"\n")
    left = count
    while left > per_block:
        chunks.append(obj.compress(block))
        left -= per_block
    chunks.append(obj.compress((line + b"\n") * (left - 1) + line))
    chunks.append(obj.flush())
    return b"".join(chunks)


def with_rows_payload(packet: bytes, frame: bytes, *, records: int | None = None) -> bytes:
    """``packet`` (a compressed part) with its ``<R>`` replaced by ``frame``, the checksum
    fixed so that the frame is what a reader meets, hashes removed (they would fail
    first), and RecordsInPart set to ``records`` (removed when None)."""
    b64 = base64.b64encode(frame)
    out = re.sub(rb"<R>[^<]*</R>", b"<R>" + b64 + b"</R>", packet, count=1)
    out = re.sub(rb'checksum="[0-9a-f]*"', b'checksum="' + xxhash.xxh3_64_hexdigest(b64).encode() + b'"', out)
    out = re.sub(rb' xxh3="[0-9a-f]*"', b"", out)
    out = re.sub(rb"<RecordsInPart>[^<]*</RecordsInPart>", b"", out)
    if records is not None:
        out = out.replace(b"</TotalParts>", b"</TotalParts><RecordsInPart>%d</RecordsInPart>" % records, 1)
        if b"<RecordsInPart>" not in out:
            out = out.replace(
                b"</PartNumber>", b"</PartNumber><RecordsInPart>%d</RecordsInPart>" % records, 1
            )
    return out
