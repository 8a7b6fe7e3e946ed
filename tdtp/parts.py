"""Rows -> TDTP parts, streaming or batch.

Streaming (the default) yields each part the moment it is full, so the first part
reaches the broker while the source is still being read and memory never holds more
than one part.  Streamed parts carry ``TotalParts=0``; the totals travel in a final
:class:`~tdtp.packet.Summary`.  Batch mode is the original file format: it must know
``TotalParts`` up front, so it keeps every part's rows until the source is exhausted.

The part budget is in real encoded bytes (default 1.9 MB).  Row lines are counted in
characters while a part fills; the ratio of encoded bytes to characters measured on
the previous part (it changes a lot with zstd) scales the next part's budget, and a
part that still comes out too big is split in two before it is yielded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from tdtp.codec import encode_packet, export_message_id, part_checksum, part_message_id, utc_timestamp
from tdtp.packet import DEFAULT_NULL_MARKER, Header, Packet, Schema, Summary
from tdtp.values import NULL_SENTINEL

DEFAULT_PART_BYTES = 1_900_000
# Decompressed rows per part stay far below the 256 MiB every reader caps at.
MAX_RAW_PART_CHARS = 64 * 2**20
_ROW_OVERHEAD = len("<R></R>")

# A whole field equal to the NULL sentinel: preceded by start/'|'/LF, followed by end/'|'/LF.
# Our escaper never emits backslash-N inside a value, so a '|' before it is a delimiter.
# The pattern starts with the literal so the regex engine can jump between candidates
# (a leading lookbehind made it ~10x slower on 2 MB parts).
_SENTINEL_FIELD = re.compile(r"\\N(?<=(?<![^|\n])\\N)(?![^|\n])")


@dataclass(slots=True)
class Part:
    """One encoded part, ready for a file or a broker."""

    number: int
    body: bytes
    rows: int
    raw_chars: int
    checksum: int
    message_id: str
    export_id: str
    table: str
    partition: str = ""
    total_parts: int = 0  # 0 while streaming; known in batch mode

    def headers(self) -> dict[str, str]:
        """Routing facts for broker message headers (the importer never needs to parse to route)."""
        return {
            "kind": "data",
            "export_id": self.export_id,
            "table": self.table,
            "partition": self.partition,
            "part": str(self.number),
            "rows": str(self.rows),
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
    """Adaptive row-character budget derived from the byte budget."""

    part_bytes: int
    envelope: int
    ratio: float = 1.0  # encoded bytes per row character, learned per part

    def char_budget(self) -> int:
        usable = max(self.part_bytes - self.envelope, 1)
        return int(min(usable / self.ratio, MAX_RAW_PART_CHARS))

    def learn(self, chars: int, body_bytes: int) -> None:
        if chars > 4096:
            observed = max(body_bytes - self.envelope, 1) / chars
            self.ratio = min(max(observed, 0.02), 4.0)


def choose_null_marker(text: str) -> str:
    """The default ``[NULL]`` unless some value in the part contains it; then a variant that none does."""
    marker = DEFAULT_NULL_MARKER
    n = 0
    while marker in text:
        n += 1
        marker = f"[NULL~{n}]"
    return marker


def resolve_nulls(lines: list[str], schema: Schema) -> tuple[list[str], Schema]:
    """Swap the NULL sentinel for a marker no value of this part equals; declare it on every field."""
    text = "\n".join(lines)
    marker = choose_null_marker(text)
    if NULL_SENTINEL in text:
        text = (
            _SENTINEL_FIELD.sub(lambda _m: marker, text)
            if "\\" in marker
            else _SENTINEL_FIELD.sub(marker, text)
        )
        lines = text.split("\n")
    if any(f.specials.null != marker for f in schema.fields):
        schema = Schema(
            tuple(f.with_specials(replace(f.specials, null=marker)) for f in schema.fields),
            schema.dictionary,
        )
    return lines, schema


@dataclass
class PartBuilder:
    """Encodes groups of row lines as packets of one export."""

    schema: Schema
    table: str
    export_id: str
    options: PartOptions = field(default_factory=PartOptions)
    partition: str = ""

    def encode(self, number: int, lines: list[str], total_parts: int) -> tuple[bytes, list[str]]:
        rows, schema = resolve_nulls(lines, self.schema)
        header = Header(
            table_name=self.table,
            message_id=part_message_id(self.export_id, number),
            part_number=number,
            total_parts=total_parts,
            records_in_part=len(rows),
            timestamp=utc_timestamp(),
        )
        body = encode_packet(
            Packet(header=header, schema=schema, rows=rows),
            compress=self.options.compress,
            level=self.options.level,
            hashes=self.options.hashes,
        )
        return body, rows

    def make_part(self, number: int, lines: list[str], total_parts: int) -> Part:
        body, rows = self.encode(number, lines, total_parts)
        return Part(
            number=number,
            body=body,
            rows=len(rows),
            raw_chars=sum(len(r) for r in rows),
            checksum=part_checksum(rows) if rows else 0,
            message_id=part_message_id(self.export_id, number),
            export_id=self.export_id,
            table=self.table,
            partition=self.partition,
            total_parts=total_parts,
        )


def _envelope_size(builder: PartBuilder) -> int:
    body, _ = builder.encode(1, [], 0)
    return len(body)


def _groups(lines: Iterable[str], sizer: _Sizer) -> Iterator[list[str]]:
    """Group row lines by the current character budget (re-read after every group)."""
    group: list[str] = []
    chars = 0
    budget = sizer.char_budget()
    for line in lines:
        cost = len(line) + _ROW_OVERHEAD
        if group and chars + cost > budget:
            yield group
            group, chars = [], 0
            budget = sizer.char_budget()
        group.append(line)
        chars += cost
    if group:
        yield group


def build_parts(
    schema: Schema,
    lines: Iterable[str],
    *,
    table: str,
    export_id: str | None = None,
    options: PartOptions | None = None,
    partition: str = "",
    summary_extra: dict[str, object] | None = None,
) -> Iterator[Part | Summary]:
    """Yield the parts of one export, then its Summary.

    Streaming: each part as soon as it is full, ``TotalParts=0``.  Batch
    (``options.batch``): every part with ``TotalParts`` set, after the source ends.
    """
    options = options or PartOptions()
    export_id = export_id or export_message_id("REF")
    builder = PartBuilder(schema, table, export_id, options, partition)
    sizer = _Sizer(options.part_bytes, _envelope_size(builder))
    started = utc_timestamp()
    total_rows = total_bytes = checksum = 0
    number = 0

    def emit(group: list[str]) -> Iterator[tuple[list[str], Part]]:
        """Encode a group; split it while it is over budget (rare: non-ASCII or escape-heavy rows)."""
        nonlocal number
        chars = sum(len(x) for x in group) + _ROW_OVERHEAD * len(group)
        number += 1
        part = builder.make_part(number, group, 0)
        if len(part.body) > options.part_bytes and len(group) > 1:
            number -= 1
            half = len(group) // 2
            yield from emit(group[:half])
            yield from emit(group[half:])
            return
        sizer.learn(chars, len(part.body))
        yield group, part

    if options.batch:
        # Encoding may split a group, so settle every part's rows before TotalParts is known.
        settled = [group for chunk in _groups(lines, sizer) for group, _ in emit(chunk)] or [[]]
        number = len(settled)
        for index, group in enumerate(settled, start=1):
            final = builder.make_part(index, group, number)
            total_rows += final.rows
            total_bytes += len(final.body)
            checksum = (checksum + final.checksum) % 2**64
            yield final
    else:
        any_rows = False
        for group in _groups(lines, sizer):
            any_rows = True
            for _, part in emit(group):
                total_rows += part.rows
                total_bytes += len(part.body)
                checksum = (checksum + part.checksum) % 2**64
                yield part
        if not any_rows:
            part = builder.make_part(1, [], 1)  # zero rows: one empty part 1 of 1, as the format says
            number = 1
            total_bytes += len(part.body)
            yield part

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
