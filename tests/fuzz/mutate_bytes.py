"""Mutation families that work on a part's bytes, below the XML: flips, cuts, base64,
zstd frames, bombs, encodings, byte-order marks, NUL bytes, invalid UTF-8.

Each family is ``f(rng, base) -> bytes``.  Where a checksum would stop a mutation
before the code it aims at (base64, zstd), the family fixes the checksum most of
the time, so the decompressor really meets the damaged frame.
"""

from __future__ import annotations

import base64
import random
import re

import xxhash
import zstandard

from tests.fuzz.bases import Base
from tests.fuzz.bombs import rle_frame, rows_frame, with_rows_payload

_R_RE = re.compile(rb"<R>([^<]*)</R>")


def payload(body: bytes) -> bytes:
    """The first ``<R>`` text: for a compressed part, its base64 frame."""
    m = _R_RE.search(body)
    return m.group(1) if m else b""


def with_payload(body: bytes, b64: bytes, rng: random.Random, fix: float = 0.8) -> bytes:
    """``body`` with its first ``<R>`` text replaced; the checksum fixed with probability ``fix``."""
    out = _R_RE.sub(lambda _m: b"<R>" + b64 + b"</R>", body, count=1)
    if rng.random() < fix:
        digest = xxhash.xxh3_64_hexdigest(b64).encode()
        out = re.sub(rb'checksum="[0-9a-f]*"', b'checksum="' + digest + b'"', out, count=1)
    return out


def byte_flips(rng: random.Random, base: Base) -> bytes:
    data = bytearray(base.body)
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        i = rng.randrange(len(data))
        if rng.random() < 0.5:
            data[i] ^= 1 << rng.randrange(8)
        else:
            data[i] = rng.randrange(256)
    return bytes(data)


def truncation(rng: random.Random, base: Base) -> bytes:
    body = base.body
    how = rng.randrange(4)
    if how == 0:
        return body[: rng.randrange(len(body))]
    if how == 1:
        return body[: len(body) - rng.randint(1, 40)]
    if how == 2:
        return body[rng.randint(1, 60) :]
    cut = rng.randrange(len(body))
    return body[:cut] + body[cut + rng.randint(1, 200) :]


def base64_text(rng: random.Random, base: Base) -> bytes:
    b64 = payload(base.body)
    if not base.compressed or not b64:
        return base.body.replace(b"<R>", b"<R>" + base64.b64encode(b"x" * rng.randint(1, 50)), 1)
    how = rng.randrange(9)
    i = rng.randrange(max(1, len(b64)))
    if how == 0:
        b64 = b64[:i] + rng.choice([b"!", b"*", b"-", b"_", b"\xc3\xa9", b"%"]) + b64[i:]
    elif how == 1:
        b64 = b64[:i] + b64[i + 1 :]
    elif how == 2:
        b64 = b64.rstrip(b"=") if b64.endswith(b"=") else b64 + b"="
    elif how == 3:
        b64 = b64[:i] + rng.choice([b" ", b"\n", b"\r\n", b"\t", b"&#10;"]) + b64[i:]
    elif how == 4:
        b64 = b""
    elif how == 5:
        b64 = b64 + b"==" + b64
    elif how == 6:
        b64 = base64.urlsafe_b64encode(base64.b64decode(b64))
    elif how == 7:
        b64 = b64[:i] + b"=" + b64[i:]
    else:
        b64 = base64.b64encode(base64.b64decode(b64)[: rng.randrange(1, 10)])
    return with_payload(base.body, b64, rng)


def zstd_frames(rng: random.Random, base: Base) -> bytes:
    b64 = payload(base.body)
    try:
        frame = base64.b64decode(b64) if base.compressed else zstandard.compress(b"1|x")
    except ValueError:
        frame = b""
    how = rng.randrange(10)
    data = bytearray(frame)
    if how == 0 and data:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 1:
        data = data[: rng.randrange(max(1, len(data)))]
    elif how == 2 and len(data) > 4:
        data[4] = rng.randrange(256)  # frame header descriptor
    elif how == 3 and len(data) > 6:
        data[5] = rng.randrange(256)  # window descriptor or content size
    elif how == 4:
        data += rng.choice([b"garbage", bytes(data), zstandard.compress(b"\n9|extra")])
    elif how == 5:
        data = bytearray(b"\x50\x2a\x4d\x18" + bytes([8, 0, 0, 0]) + b"skipthis" + bytes(data))
    elif how == 6:
        data = bytearray(zstandard.ZstdCompressor(write_content_size=False).compress(
            zstandard.decompress(bytes(frame)) if frame else b""))  # fmt: skip
    elif how == 7:
        data = bytearray(b"\x28\xb5\x2f\xfd")
    elif how == 8:
        data = bytearray(zstandard.ZstdCompressor(level=rng.choice((-5, 1, 19)), write_checksum=True).compress(
            zstandard.decompress(bytes(frame)) if frame else b""))  # fmt: skip
        if data and rng.random() < 0.5:
            data[-1] ^= 0xFF  # content checksum
    else:
        data = bytearray(rng.randbytes(rng.randint(0, 64)))
    return with_payload(base.body, base64.b64encode(bytes(data)), rng, fix=0.9)


def _compressed_template(base: Base) -> bytes:
    """A compressed part to carry a bomb: ``base`` itself, or a Data section turned into one."""
    if base.compressed:
        return base.body
    return re.sub(rb"<Data[ >].*</Data>", b'<Data compression="zstd" checksum="0"><R>x</R></Data>', base.body,
                  count=1, flags=re.S)  # fmt: skip


def bombs(rng: random.Random, base: Base) -> bytes:
    """Small frames that decompress to far more than a part may hold."""
    body = _compressed_template(base)
    how = rng.randrange(8)
    cs = rng.random() < 0.3
    records = rng.choice([None, None, 1, 3])
    if how == 0:  # 200 MiB of one byte: the 9 KB part of issue 12
        frame = rle_frame([(b"a", 200 * 2**20)], content_size=cs)
    elif how == 1:  # line feeds only: millions of rows
        frame = rle_frame([(b"\n", rng.choice((2, 20, 40)) * 2**20)], content_size=cs)
    elif how == 2:  # one value over the value limit, under the decoded limit
        frame = rle_frame([(b"1", 1), (b"|", 1), (b"x", 17 * 2**20)], content_size=cs)
    elif how == 3:  # short rows, more of them than a part may hold
        frame = rows_frame(b"7|x", rng.choice((1_000_001, 1_500_000)), content_size=cs)
    elif how == 4:  # rows of the part repeated, within every limit: accepted, in bounded memory
        line = base.packet.rows[0].encode()
        frame = rows_frame(line, rng.choice((2**20, 2**22)) // (len(line) + 1), content_size=cs)
        records = None
    elif how == 5:  # a whole-message frame (Go's Kafka spool) that is a bomb
        return rle_frame([(b" ", 100 * 2**20)], content_size=cs)
    elif how == 6:  # a whole-message frame holding the part and 70 MiB of trailing space
        comp = zstandard.ZstdCompressor(write_content_size=cs).compressobj()
        pad = b" " * 2**20
        return comp.compress(base.body) + b"".join(comp.compress(pad) for _ in range(70)) + comp.flush()
    else:  # a frame that says 1 KiB and holds 200 MiB
        frame = rle_frame([(b"a", 200 * 2**20)], content_size=True)
        frame = frame[:6] + (1024).to_bytes(8, "little") + frame[14:]
    return with_rows_payload(body, frame, records=records)


_DECLS = [b"ISO-8859-1", b"latin1", b"UTF-16", b"utf-16le", b"US-ASCII", b"Windows-1251", b"utf-8", b"UTF8",
          b"", b"EBCDIC-US", b"UTF-32", b"KOI8-R"]  # fmt: skip


def encodings(rng: random.Random, base: Base) -> bytes:
    body = base.body
    how = rng.randrange(5)
    if how == 0:
        enc = rng.choice(_DECLS)
        quote = rng.choice([b'"', b"'"])
        return re.sub(rb"encoding=\"[^\"]*\"", b"encoding=" + quote + enc + quote, body, count=1)
    text = body.decode("utf-8")
    if how == 1:
        out = text.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
        return out.encode("latin-1", "replace")
    if how == 2:
        return text.encode("latin-1", "replace")  # undeclared Latin-1
    if how == 3:
        codec = rng.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "cp500"])
        return text.replace('encoding="UTF-8"', f'encoding="{codec.upper()}"').encode(codec, "replace")
    return text.replace("\u00e9", "\u00c3\u00a9").encode("utf-8")  # mojibake as data: accepted if unhashed


def boms(rng: random.Random, base: Base) -> bytes:
    body = base.body
    bom8 = b"\xef\xbb\xbf"
    how = rng.randrange(7)
    if how == 0:
        return bom8 + body
    if how == 1:
        return bom8 + bom8 + body
    if how == 2:
        return body.replace(b"\n", b"\n" + bom8, 1)
    if how == 3:
        return rng.choice([b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"]) + body
    if how == 4:
        return body.replace(b"<R>", b"<R>" + bom8, 1)
    if how == 5:
        return rng.choice([b" ", b"\n", b"\t\r\n"]) + body
    return bom8 + body.split(b"\n", 1)[-1]


def nul_bytes(rng: random.Random, base: Base) -> bytes:
    data = bytearray(base.body)
    for _ in range(rng.randint(1, 3)):
        where = rng.randrange(4)
        if where == 0:
            i = rng.randrange(len(data))
        elif where == 1:
            i = rng.randrange(min(8, len(data)))
        else:
            i = data.find(b"<R>") + 3 + rng.randrange(5)
        data[i:i] = b"\x00" * rng.choice((1, 1, 2, 4))
    return bytes(data)


_BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82", b"\xfe",
             b"\xc3\x28", b"\xe9", b"\xf0\x9f\x98"]  # fmt: skip


def invalid_utf8(rng: random.Random, base: Base) -> bytes:
    bad = rng.choice(_BAD_UTF8)
    if base.compressed and rng.random() < 0.5:  # inside the compressed rows
        rows = zstandard.decompress(base64.b64decode(payload(base.body)))
        i = rng.randrange(max(1, len(rows)))
        frame = zstandard.compress(rows[:i] + bad + rows[i:])
        return with_payload(base.body, base64.b64encode(frame), rng, fix=0.95)
    body = base.body
    where = rng.randrange(3)
    if where == 0:
        i = rng.randrange(len(body))
    elif where == 1:
        i = body.find(b"<TableName>") + len(b"<TableName>")
    else:
        i = body.rfind(b"<R>") + 3
    return body[:i] + bad + body[i:]
