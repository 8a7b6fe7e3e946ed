"""Rows -> TDTP parts, streaming or batch.

Streaming (the default) yields each part the moment it is full, so the first part
reaches the broker while the source is still being read and memory never holds more
than one part.  Streamed parts carry ``TotalParts=0``; the totals travel in a final
:class:`~tdtp.packet.Summary`.  Batch mode is the original file format: it must know
``TotalParts`` up front, so it keeps every part's rows until the source is exhausted.

Rows arrive as *blocks*: UTF-8 bytes holding whole row lines, each ending in LF
(``Source.blocks()``).  Cutting parts, swapping the NULL sentinel for the part's
marker, hashing and compressing all work on those bytes, so the PostgreSQL COPY
fast path moves rows from the socket into parts without making Python strings.

The part budget is in real encoded bytes (default 1.9 MB).  The ratio of encoded
bytes to row bytes measured on each part (it changes a lot with zstd) sizes the
next one, and a part that still comes out too big is split before it is yielded.
Parts start small and grow (16 KiB of rows, then x4 each part up to the budget):
the consumer gets its first part after milliseconds instead of after a full part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import xxhash

from tdtp.brokers.headers import EXPORT_ID, KIND, KIND_DATA, PART, PARTITION, ROWS, TABLE
from tdtp.codec import encode_row_data, export_message_id, part_message_id, utc_timestamp
from tdtp.packet import DEFAULT_NULL_MARKER, Header, Packet, Schema, Summary
from tdtp.values import lines_to_blocks

DEFAULT_PART_BYTES = 1_900_000
# Decompressed rows per part stay far below the 256 MiB every reader caps at.
MAX_RAW_PART_BYTES = 64 * 2**20
FIRST_PART_RAW_BYTES = 16 * 1024

# A whole field equal to the NULL sentinel: preceded by start/'|'/LF, followed by end/'|'/LF.
# Our escaper never emits backslash-N inside a value, so a '|' before it is a delimiter.
# The pattern starts with the literal so the regex engine can jump between candidates
# (a leading lookbehind made it ~10x slower on 2 MB parts).
_SENTINEL_FIELD = re.compile(rb"\\N(?<=(?<![^|\n])\\N)(?![^|\n])")


@dataclass(slots=True)
class Part:
    """One encoded part, ready for a file or a broker."""

    number: int
    body: bytes
    rows: int
    raw_bytes: int
    checksum: int
    message_id: str
    export_id: str
    table: str
    partition: str = ""
    total_parts: int = 0  # 0 while streaming; known in batch mode

    def headers(self) -> dict[str, str]:
        """Routing facts for broker message headers (the importer never needs to parse to route)."""
        return {
            KIND: KIND_DATA,
            EXPORT_ID: self.export_id,
            TABLE: self.table,
            PARTITION: self.partition,
            PART: str(self.number),
            ROWS: str(self.rows),
        }


@dataclass(slots=True)
class PartOptions:
    part_bytes: int = DEFAULT_PART_BYTES
    compress: str = "zstd"  # "zstd" or ""
    level: int = 1
    hashes: bool = False
    batch: bool = False


@dataclass(slots=True)
class _Sizer:
    """Row-byte budget per part, derived from the encoded-byte budget and learned ratios."""

    part_bytes: int
    envelope: int
    ratio: float = 1.0  # encoded bytes per row byte, learned per part
    parts: int = 0

    def budget(self) -> int:
        usable = max(self.part_bytes - self.envelope, 1)
        full = int(min(usable / self.ratio, MAX_RAW_PART_BYTES))
        ramp = FIRST_PART_RAW_BYTES * 4**self.parts
        self.parts += 1
        return max(min(full, ramp), 1)

    def learn(self, raw: int, body_bytes: int) -> None:
        if raw > 4096:
            observed = max(body_bytes - self.envelope, 1) / raw
            self.ratio = min(max(observed, 0.02), 4.0)


def choose_null_marker(payload: bytes) -> str:
    """The default ``[NULL]`` unless some value in the part contains it; then a variant that none does."""
    marker = DEFAULT_NULL_MARKER
    if b"[" not in payload:  # one memchr instead of a substring search on most parts
        return marker
    n = 0
    while marker.encode() in payload:
        n += 1
        marker = f"[NULL~{n}]"
    return marker


def resolve_nulls(payload: bytes, schema: Schema) -> tuple[bytes, Schema]:
    """Swap the NULL sentinel for a marker no value of this part equals; declare it on every field."""
    marker = choose_null_marker(payload)
    if b"\\N" in payload:
        payload = _SENTINEL_FIELD.sub(marker.encode().replace(b"\\", b"\\\\"), payload)
    if any(f.specials.null != marker for f in schema.fields):
        schema = Schema(
            tuple(f.with_specials(replace(f.specials, null=marker)) for f in schema.fields),
            schema.dictionary,
        )
    return payload, schema


def resolve_null_lines(lines: list[str], schema: Schema) -> tuple[list[str], Schema]:
    """:func:`resolve_nulls` for row lines held as strings (tests, small tools)."""
    if not lines:
        return [], resolve_nulls(b"", schema)[1]
    payload, schema = resolve_nulls("\n".join(lines).encode("utf-8"), schema)
    return payload.decode("utf-8").split("\n"), schema


def _groups(blocks: Iterable[bytes], sizer: _Sizer) -> Iterator[bytes]:
    """Cut blocks into part-sized runs of whole lines; a line over budget goes alone."""
    buf: list[bytes] = []
    size = 0
    budget = sizer.budget()
    for block in blocks:
        while block:
            room = budget - size
            if len(block) <= room:
                buf.append(block)
                size += len(block)
                break
            cut = block.rfind(b"\n", 0, room) + 1  # end of the last whole line that fits
            if not cut:
                if buf:  # nothing more fits: close the current part first
                    yield b"".join(buf)
                    buf, size, budget = [], 0, sizer.budget()
                    continue
                cut = block.find(b"\n") + 1 or len(block)  # one row bigger than the budget
            buf.append(block[:cut])
            block = block[cut:]
            yield b"".join(buf)
            buf, size, budget = [], 0, sizer.budget()
    if buf:
        yield b"".join(buf)


@dataclass
class PartBuilder:
    """Encodes runs of row lines as packets of one export."""

    schema: Schema
    table: str
    export_id: str
    options: PartOptions = field(default_factory=PartOptions)
    partition: str = ""
    checked: bool = False  # rows come from a Source, which refuses what XML cannot carry

    def make_part(self, number: int, data: bytes, total_parts: int) -> Part:
        """``data``: whole row lines, each ending in LF (empty for a part without rows)."""
        nrows = data.count(b"\n")
        payload, schema = resolve_nulls(data[:-1] if nrows else b"", self.schema)
        message_id = part_message_id(self.export_id, number)
        header = Header(
            table_name=self.table,
            message_id=message_id,
            part_number=number,
            total_parts=total_parts,
            records_in_part=nrows,
            timestamp=utc_timestamp(),
        )
        body = encode_row_data(
            Packet(header=header, schema=schema),
            payload,
            nrows,
            compress=self.options.compress,
            level=self.options.level,
            hashes=self.options.hashes,
            checked=self.checked,
        )
        return Part(
            number=number,
            body=body,
            rows=nrows,
            raw_bytes=len(payload),
            # XXH3-64 of the row lines joined by LF: the same value codec.part_checksum gives.
            checksum=xxhash.xxh3_64_intdigest(payload) if nrows else 0,
            message_id=message_id,
            export_id=self.export_id,
            table=self.table,
            partition=self.partition,
            total_parts=total_parts,
        )


def _halves(data: bytes) -> tuple[bytes, bytes]:
    mid = data.find(b"\n", len(data) // 2) + 1
    if mid <= 0 or mid >= len(data):
        mid = data.rfind(b"\n", 0, len(data) - 1) + 1
    return data[:mid], data[mid:]


def build_parts(
    schema: Schema,
    lines: Iterable[str] | None = None,
    *,
    blocks: Iterable[bytes] | None = None,
    table: str,
    export_id: str | None = None,
    options: PartOptions | None = None,
    partition: str = "",
    summary_extra: dict[str, object] | None = None,
    checked: bool = False,
) -> Iterator[Part | Summary]:
    """Yield the parts of one export, then its Summary.

    Give rows either as ``lines`` (row lines) or as ``blocks`` (see the module doc);
    ``checked=True`` says a Source already refused characters XML cannot carry.
    Streaming: each part as soon as it is full, ``TotalParts=0``.  Batch
    (``options.batch``): every part with ``TotalParts`` set, after the source ends.
    """
    options = options or PartOptions()
    if blocks is None:
        blocks = lines_to_blocks(lines or ())
    export_id = export_id or export_message_id("REF")
    builder = PartBuilder(schema, table, export_id, options, partition, checked)
    sizer = _Sizer(options.part_bytes, len(builder.make_part(1, b"", 0).body))
    started = utc_timestamp()
    total_rows = total_bytes = checksum = 0
    number = 0

    def emit(data: bytes) -> Iterator[tuple[bytes, Part]]:
        """Encode a run; split it while it is over budget (rare: the ratio guessed low)."""
        nonlocal number
        number += 1
        part = builder.make_part(number, data, 0)
        if len(part.body) > options.part_bytes and part.rows > 1:
            number -= 1
            for half in _halves(data):
                yield from emit(half)
            return
        sizer.learn(len(data), len(part.body))
        yield data, part

    def count(part: Part) -> Part:
        nonlocal total_rows, total_bytes, checksum
        total_rows += part.rows
        total_bytes += len(part.body)
        checksum = (checksum + part.checksum) % 2**64
        return part

    if options.batch:
        # Encoding may split a run, so settle every part's rows before TotalParts is known.
        settled = [data for run in _groups(blocks, sizer) for data, _ in emit(run)] or [b""]
        number = len(settled)
        for index, data in enumerate(settled, start=1):
            yield count(builder.make_part(index, data, number))
    else:
        for run in _groups(blocks, sizer):
            for _, part in emit(run):
                yield count(part)
        if number == 0:  # zero rows: one empty part 1 of 1, as the format says
            number = 1
            yield count(builder.make_part(1, b"", 1))

    yield Summary(
        export_id=export_id,
        table=table,
        partition=partition,
        total_parts=number,
        total_rows=total_rows,
        total_bytes=total_bytes,
        checksum=f"{checksum:016x}",
        started_at=started,
        finished_at=utc_timestamp(),
        extra=dict(summary_extra or {}),
    )
