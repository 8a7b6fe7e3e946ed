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

A part has two budgets.  Encoded bytes (``part_bytes``, default 1.9 MB) bound what a
broker or a file carries: the ratio of encoded bytes to row bytes measured on each
part (it changes a lot with zstd) sizes the next one, and a part that still comes
out too big is split before it is yielded.  Decoded bytes (``part_raw_bytes``,
default 8 MiB of row text) bound what every process that touches the part holds:
without that cap a 1000x compressible table fits 64 MiB of rows into 1.9 MB, and
the writer, the importer and every Go reader pay for the 64 MiB, not the 1.9 MB.
Parts start small and grow (16 KiB of rows, then x4 each part up to the budget):
the consumer gets its first part after milliseconds instead of after a full part.

Memory is bounded by the part, never by the table (docs/architecture.md, "Memory
bounded by design"): a run of rows is joined once, its block list and the previous
part are released before the next run is read, and batch mode keeps its finished
parts in a temporary file, not in memory, until ``TotalParts`` is known.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import xxhash

from tdtp.brokers.headers import EXPORT_ID, KIND, KIND_DATA, PART, PARTITION, ROWS, TABLE
from tdtp.codec import encode_row_data, export_message_id, part_message_id, utc_timestamp
from tdtp.packet import DEFAULT_NULL_MARKER, Header, Packet, Schema, Summary, TdtpError
from tdtp.values import lines_to_blocks

DEFAULT_PART_BYTES = 1_900_000
# Decoded row bytes per part.  8 MiB keeps a part's rows, and the few copies encoding
# and decoding make of them, small beside the 150-200 MB an export or import may use,
# and still holds ~4x the rows a 1.9 MB zstd part of ordinary data carries, so the
# cap only binds where data compresses unusually well.
DEFAULT_PART_RAW_BYTES = 8 * 2**20
# The most ``part_raw_bytes`` may be: far below the 256 MiB every reader caps at.
MAX_RAW_PART_BYTES = 64 * 2**20
MIN_RAW_PART_BYTES = 4096
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
    """How parts are cut and encoded.

    ``part_bytes`` caps a part's encoded size (what a broker message or file holds);
    ``part_raw_bytes`` caps its decoded row text (what a process holds to write or
    read it), so very compressible data makes more parts, never bigger ones.
    """

    part_bytes: int = DEFAULT_PART_BYTES
    compress: str = "zstd"  # "zstd" or ""
    level: int = 1
    hashes: bool = False
    batch: bool = False
    part_raw_bytes: int = DEFAULT_PART_RAW_BYTES

    def __post_init__(self) -> None:
        check_part_raw_bytes(self.part_raw_bytes)


def check_part_raw_bytes(value: int) -> int:
    """``value`` if it is a valid decoded-bytes cap, else TdtpError saying the range.

    Refused above 64 MiB: the decoder's own cap sits a few times above the writer's
    default, and Go readers refuse parts over 256 MiB decoded.
    """
    if not MIN_RAW_PART_BYTES <= value <= MAX_RAW_PART_BYTES:
        raise TdtpError(
            f"part_raw_bytes {value} is outside {MIN_RAW_PART_BYTES}..{MAX_RAW_PART_BYTES} "
            "(decoded row bytes per part)"
        )
    return value


# Share of a part's encoded budget the next run is sized for.  Aimed at the whole budget,
# a run overshot it about as often as not (the ratio is the last part's, and the next
# compresses a little differently), and each overshoot encoded the run again as two
# half-size parts.  bench/copy_cpu.py (1M rows of bench/peers.py's table): 10 runs encoded
# twice, 37 parts, 0.44 CPU-s at 1.0; none, 28 parts, 0.34 CPU-s at 0.95.
_SIZER_AIM = 0.95


@dataclass(slots=True)
class _Sizer:
    """Row-byte budget per part: the encoded-byte budget over the learned ratio, capped
    by the decoded-byte budget."""

    part_bytes: int
    envelope: int
    raw_cap: int = DEFAULT_PART_RAW_BYTES
    ratio: float = 1.0  # encoded bytes per row byte, learned per part
    parts: int = 0

    def budget(self) -> int:
        usable = max(self.part_bytes - self.envelope, 1) * _SIZER_AIM
        full = int(min(usable / self.ratio, self.raw_cap))
        ramp = FIRST_PART_RAW_BYTES * 4**self.parts
        self.parts += 1
        return max(min(full, ramp), 1)

    def learn(self, raw: int, body_bytes: int) -> None:
        if raw > 4096:
            observed = max(body_bytes - self.envelope, 1) / raw
            self.ratio = min(max(observed, 0.02), 4.0)


def choose_null_marker(payload: bytes | Sequence[bytes]) -> str:
    """The default ``[NULL]`` unless some value in the part contains it; then a variant that none does.

    ``payload`` may be the part's blocks of whole lines: a value never spans a line,
    so a marker inside a value lies inside one block.
    """
    blocks = (payload,) if isinstance(payload, bytes) else payload
    marker = DEFAULT_NULL_MARKER
    if not any(b"[" in block for block in blocks):  # one memchr instead of a substring search on most parts
        return marker
    n = 0
    while any(marker.encode() in block for block in blocks):
        n += 1
        marker = f"[NULL~{n}]"
    return marker


def _with_marker(schema: Schema, marker: str) -> Schema:
    if all(f.specials.null == marker for f in schema.fields):
        return schema
    return Schema(
        tuple(f.with_specials(replace(f.specials, null=marker)) for f in schema.fields),
        schema.dictionary,
    )


def resolve_nulls(payload: bytes, schema: Schema) -> tuple[bytes, Schema]:
    """Swap the NULL sentinel for a marker no value of this part equals; declare it on every field."""
    marker = choose_null_marker(payload)
    if b"\\N" in payload:
        payload = _SENTINEL_FIELD.sub(_marker_text(marker), payload)
    return payload, _with_marker(schema, marker)


def resolve_null_blocks(blocks: list[bytes], schema: Schema) -> Schema:
    """:func:`resolve_nulls` for a part held as blocks of whole lines, swapped block by block.

    Why: ``re.sub`` of a whole part holds the part three times (the input, the pieces,
    the joined result); block by block only one block is ever doubled.  A block starts
    and ends at a line boundary, so the pattern sees the same field boundaries.
    """
    marker = choose_null_marker(blocks)
    text = _marker_text(marker)
    for index, block in enumerate(blocks):
        if b"\\N" in block:
            blocks[index] = _SENTINEL_FIELD.sub(text, block)
    return _with_marker(schema, marker)


def _marker_text(marker: str) -> bytes:
    """The marker as it stands in row text (a backslash in it escaped, as in a value)."""
    return marker.encode().replace(b"\\", b"\\\\")


def resolve_null_lines(lines: list[str], schema: Schema) -> tuple[list[str], Schema]:
    """:func:`resolve_nulls` for row lines held as strings (tests, small tools)."""
    if not lines:
        return [], resolve_nulls(b"", schema)[1]
    payload, schema = resolve_nulls("\n".join(lines).encode("utf-8"), schema)
    return payload.decode("utf-8").split("\n"), schema


@dataclass(slots=True)
class _Run:
    """A part's rows, ready to encode.

    ``payload`` holds ``rows`` row lines joined by LF (no last LF), with the NULL
    sentinel already swapped for the marker ``schema`` declares; ``size`` is what
    the source gave for them (the bytes the budget counted and the ratio learns from).
    """

    payload: bytes
    rows: int
    size: int
    schema: Schema


def _groups(blocks: Iterable[bytes], sizer: _Sizer, schema: Schema) -> Iterator[_Run]:
    """Cut blocks into part-sized runs of whole lines; a line over budget goes alone.

    A run is resolved (NULL markers) block by block and joined once, and its block
    list is emptied before it is yielded, so a run never sits in memory twice.
    """
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
                    yield _take_run(buf, schema)
                    size, budget = 0, sizer.budget()
                    continue
                cut = block.find(b"\n") + 1 or len(block)  # one row bigger than the budget
            buf.append(block[:cut])
            block = block[cut:]
            yield _take_run(buf, schema)
            size, budget = 0, sizer.budget()
    if buf:
        yield _take_run(buf, schema)


def _take_run(buf: list[bytes], schema: Schema) -> _Run:
    """The run in ``buf`` (blocks of whole lines), resolved and joined; ``buf`` is emptied.

    The last LF is dropped through a memoryview, so stripping it copies nothing
    (slicing the joined run would copy all of it once more).  Every line ends in LF,
    so a run of n lines holds n - 1 LFs once the last is gone, even when the only
    line is empty.
    """
    size = sum(map(len, buf))
    schema = resolve_null_blocks(buf, schema)
    pieces: list[bytes | memoryview] = [*buf[:-1], memoryview(buf[-1])[:-1]]
    buf.clear()
    payload = b"".join(pieces)
    return _Run(payload, payload.count(b"\n") + 1, size, schema)


@dataclass
class PartBuilder:
    """Encodes runs of row lines as packets of one export."""

    schema: Schema
    table: str
    export_id: str
    options: PartOptions = field(default_factory=PartOptions)
    partition: str = ""
    checked: bool = False  # rows come from a Source, which refuses what XML cannot carry

    def make_part(
        self, number: int, payload: bytes, nrows: int, total_parts: int, schema: Schema | None = None
    ) -> Part:
        """``payload``: ``nrows`` row lines joined by LF (``b""`` and 0 for a part without rows).

        With ``schema``, the payload's NULL markers are already resolved for it
        (:func:`resolve_null_blocks`); without, they are resolved here.
        """
        if schema is None:
            payload, schema = resolve_nulls(payload, self.schema)
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


def _halves(run: _Run) -> tuple[_Run, _Run]:
    """Split a run of at least 2 lines at the line end nearest its middle.

    The halves keep the run's marker; each half's source size is its length less
    what the markers added over the 2-byte sentinel (no value contains the marker).
    """
    payload = run.payload
    lf = payload.find(b"\n", (len(payload) + 1) // 2)
    if lf < 0:
        lf = payload.rfind(b"\n")
    left_rows = payload.count(b"\n", 0, lf) + 1
    marker = _marker_text(run.schema.fields[0].specials.null)
    halves = []
    for text, rows in ((payload[:lf], left_rows), (payload[lf + 1 :], run.rows - left_rows)):
        size = len(text) + 1 - text.count(marker) * (len(marker) - 2)
        halves.append(_Run(text, rows, size, run.schema))
    return halves[0], halves[1]


class _PartSpool:
    """A batch export's finished parts, in a temporary file until ``TotalParts`` is known.

    Batch parts must carry ``TotalParts``, which is known only when the source ends;
    holding them (or their rows) in memory until then made a batch export's memory
    grow with the table.  Each part is encoded once, with ``TotalParts`` unset, and
    written here; :meth:`replay` reads them back one at a time and adds the element.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file  # an unnamed temporary file: nothing is left behind, even on a crash
        self._index: list[tuple[Part, int]] = []  # each part without its body, and the body's size

    def add_all(self, parts: Iterable[Part]) -> None:
        for part in parts:
            self._file.write(part.body)
            self._index.append((replace(part, body=b""), len(part.body)))

    def __len__(self) -> int:
        return len(self._index)

    def replay(self) -> Iterator[Part]:
        total = len(self._index)
        self._file.seek(0)
        for meta, size in self._index:
            body = _with_total_parts(self._file.read(size), meta.number, total)
            yield replace(meta, body=body, total_parts=total)


# What _with_total_parts adds at most: the element around a count of up to 20 digits.
_TOTAL_PARTS_ROOM = len("<TotalParts></TotalParts>") + 20


def _with_total_parts(body: bytes, number: int, total: int) -> bytes:
    """The part as if encoded with ``TotalParts``: the element goes right after
    ``<PartNumber>``, where the codec (Go's layout) writes it.  No hash covers the
    header (v1.4 hashes cover MessageID, schema and rows), so nothing else changes."""
    mark = b"<PartNumber>%d</PartNumber>" % number
    at = body.find(mark, 0, body.find(b"</Header>"))
    if at < 0:
        raise TdtpError(f"part {number}: no PartNumber in its header to put TotalParts after")
    at += len(mark)
    return b"".join((body[:at], b"<TotalParts>%d</TotalParts>" % total, body[at:]))


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
    spool_dir: str | Path | None = None,
) -> Iterator[Part | Summary]:
    """Yield the parts of one export, then its Summary.

    Give rows either as ``lines`` (row lines) or as ``blocks`` (see the module doc);
    ``checked=True`` says a Source already refused characters XML cannot carry.
    Streaming: each part as soon as it is full, ``TotalParts=0``.  Batch
    (``options.batch``): every part with ``TotalParts`` set, after the source ends;
    until then the parts wait in a temporary file in ``spool_dir`` (default: the
    system's temporary directory).
    """
    options = options or PartOptions()
    if blocks is None:
        blocks = lines_to_blocks(lines or ())
    export_id = export_id or export_message_id("REF")
    builder = PartBuilder(schema, table, export_id, options, partition, checked)
    # A batch part gets its TotalParts element after it is cut: room is kept for it, in
    # both modes, so that a batch part is the streamed one plus that element.
    limit = options.part_bytes - _TOTAL_PARTS_ROOM
    sizer = _Sizer(limit, len(builder.make_part(1, b"", 0, 0).body), options.part_raw_bytes)
    started = utc_timestamp()
    total_rows = total_bytes = checksum = 0
    number = 0

    def emit(run: _Run) -> Iterator[Part]:
        """Encode a run; split it while it is over budget (rare: the ratio guessed low)."""
        nonlocal number
        number += 1
        part = builder.make_part(number, run.payload, run.rows, 0, run.schema)
        if len(part.body) > limit and run.rows > 1:
            number -= 1
            pending = list(_halves(run))
            del part, run  # neither the run nor its failed part is held while the halves are encoded
            while pending:
                yield from emit(pending.pop(0))
            return
        sizer.learn(run.size, len(part.body))
        yield part

    def encoded() -> Iterator[Part]:
        for run in _groups(blocks, sizer, schema):
            parts = emit(run)
            del run  # the next run is read without this one (or its part) still held
            yield from parts

    def count(part: Part) -> Part:
        nonlocal total_rows, total_bytes, checksum
        total_rows += part.rows
        total_bytes += len(part.body)
        checksum = (checksum + part.checksum) % 2**64
        return part

    if options.batch:
        with tempfile.TemporaryFile(prefix=".tdtp-batch-", dir=spool_dir) as file:
            spool = _PartSpool(file)
            spool.add_all(encoded())
            if spool:
                yield from map(count, spool.replay())
            else:  # zero rows: one empty part 1 of 1, as the format says
                number = 1
                yield count(builder.make_part(1, b"", 0, 1))
    else:
        yield from map(count, encoded())
        if number == 0:  # zero rows: one empty part 1 of 1, as the format says
            number = 1
            yield count(builder.make_part(1, b"", 0, 1))

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
