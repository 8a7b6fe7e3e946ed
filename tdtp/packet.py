"""Value types of a TDTP packet: header, schema, fields, rows, and the export summary.

These are plain data holders shared by every layer (codec, parts, sources, sinks,
brokers, importer).  They know nothing about XML; ``tdtp.codec`` does.

Rows are carried as *row lines*: the TDTP text of one ``<R>`` element after XML
unescaping and before value unescaping, i.e. values joined by ``|`` with ``\\``,
``|`` and line feed escaped as ``\\\\``, ``\\|`` and ``\\n``.  Keeping rows in this
form lets the fast paths (PostgreSQL ``COPY`` text in, ``COPY FROM`` out) move
text without turning every value into a Python object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast, overload


class TdtpError(Exception):
    """Base of every error the engine raises on bad input or configuration.

    ``where`` names the file/part/row/field so a user can find the problem;
    ``str(err)`` is one line suitable for a CLI message.
    """

    def __init__(self, message: str, *, where: str = "") -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)

    def at(self, where: str) -> TdtpError:
        """Return the same error with an outer location prefixed (file, then part, ...)."""
        combined = f"{where}: {self.where}" if self.where else where
        err = type(self)(self.message, where=combined)
        err.__cause__ = self.__cause__
        return err


class PacketFormatError(TdtpError):
    """The bytes are not a well-formed, safe TDTP packet (XML, envelope, limits)."""


class LimitExceeded(PacketFormatError):
    """A part is larger than a decoding limit allows (``tdtp.codec.DecodeLimits``).

    A subclass of PacketFormatError, so callers that treat a part as bad keep doing
    so; ``limit`` names the ``DecodeLimits`` field and ``value`` its setting, for
    callers that want to say which option to raise.
    """

    def __init__(self, message: str, *, where: str = "", limit: str = "", value: int = 0) -> None:
        super().__init__(message, where=where)
        self.limit = limit
        self.value = value

    def at(self, where: str) -> LimitExceeded:
        err = cast(LimitExceeded, super().at(where))  # type(self)(...): a LimitExceeded
        err.limit, err.value = self.limit, self.value
        return err


class SchemaError(TdtpError):
    """Unknown type, bad attribute, or a hostile/invalid identifier."""


class RowError(TdtpError):
    """A row has the wrong number of fields or a value that does not parse as its type."""


class IntegrityError(TdtpError):
    """Counts or hashes disagree with the content (RecordsInPart, xxh3, checksums)."""


# Canonical TDTP type names and the aliases Go accepts.
INTEGER = "INTEGER"
REAL = "REAL"
DECIMAL = "DECIMAL"
TEXT = "TEXT"
BOOLEAN = "BOOLEAN"
DATE = "DATE"
TIMESTAMP = "TIMESTAMP"
BLOB = "BLOB"

CANONICAL_TYPES = (INTEGER, REAL, DECIMAL, TEXT, BOOLEAN, DATE, TIMESTAMP, BLOB)
TYPE_ALIASES = {
    "INT": INTEGER,
    "FLOAT": REAL,
    "DOUBLE": REAL,
    "VARCHAR": TEXT,
    "CHAR": TEXT,
    "STRING": TEXT,
    "BOOL": BOOLEAN,
    "DATETIME": TIMESTAMP,
}


def canonical_type(name: str) -> str:
    """Map a type name or alias (any case) to its canonical TDTP name, or raise SchemaError."""
    upper = name.strip().upper()
    if upper in CANONICAL_TYPES:
        return upper
    if upper in TYPE_ALIASES:
        return TYPE_ALIASES[upper]
    raise SchemaError(f"unknown type {name!r} (known: {', '.join(CANONICAL_TYPES)} and aliases)")


DEFAULT_NULL_MARKER = "[NULL]"
DEFAULT_INF_MARKER = "INF"
DEFAULT_NEG_INF_MARKER = "-INF"
DEFAULT_NAN_MARKER = "NaN"
DEFAULT_NO_DATE_MARKER = "0000-00-00"


@dataclass(frozen=True, slots=True)
class SpecialValues:
    """Markers from a field's ``<SpecialValues>``; ``None`` means the marker is not declared."""

    null: str | None = None
    infinity: str | None = None
    neg_infinity: str | None = None
    nan: str | None = None
    no_date: str | None = None

    def any(self) -> bool:
        return any(
            m is not None for m in (self.null, self.infinity, self.neg_infinity, self.nan, self.no_date)
        )


NO_SPECIALS = SpecialValues()


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a schema, with the attributes of docs/format.md §2."""

    name: str
    type: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    key: bool = False
    timezone: str = ""
    subtype: str = ""
    readonly: bool = False
    fixed: bool = False
    specials: SpecialValues = NO_SPECIALS

    def with_specials(self, specials: SpecialValues) -> Field:
        return replace(self, specials=specials)


@dataclass(frozen=True, slots=True)
class Schema:
    """Ordered fields plus the optional v1.4 dictionary (token -> full value)."""

    fields: tuple[Field, ...]
    dictionary: tuple[tuple[str, str], ...] = ()

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def key_names(self) -> list[str]:
        return [f.name for f in self.fields if f.key]

    def signature(self) -> tuple[tuple[str, str], ...]:
        """Names and types only: what two parts of one export must agree on."""
        return tuple((f.name, f.type) for f in self.fields)

    def __len__(self) -> int:
        return len(self.fields)


@dataclass(slots=True)
class Header:
    """The ``<Header>`` element.  Numbers absent on the wire are 0."""

    table_name: str
    message_id: str
    type: str = "reference"
    in_reply_to: str = ""
    part_number: int = 0
    total_parts: int = 0
    records_in_part: int = 0
    timestamp: str = ""  # RFC 3339 text, as written/read
    sender: str = ""
    recipient: str = ""

    @property
    def batch_id(self) -> str:
        """The text before the last ``-P<n>`` of the MessageID: the export id shared by all parts."""
        mid = self.message_id
        idx = mid.rfind("-P")
        if idx > 0 and mid[idx + 2 :].isdigit():
            return mid[:idx]
        return mid


class RowText(Sequence[str]):
    """A part's row lines kept as their LF-joined UTF-8 bytes, split a chunk at a time.

    Why: as a list, every line is a Python string (~50 bytes of header each), so a
    part of 7 MiB of rows held ~13 MiB of strings, and its checksum joined them back
    into 7 MiB of text and 7 MiB of bytes on top.  The importer reads a part once,
    front to back, in chunks (COPY text, SQLite rows): it needs the lines of one chunk
    at a time, the count, and the bytes for the checksum, never the whole list.  The
    bytes must be valid UTF-8 (the decoder checked) and hold no raw line feed inside a
    line (row lines never do).  Indexing and slicing work, by splitting the whole text:
    for tests and rare paths, not for the import's loop.
    """

    __slots__ = ("data", "_count")

    def __init__(self, data: bytes, count: int | None = None) -> None:
        self.data = data
        self._count = (data.count(b"\n") + 1 if data else 0) if count is None else count

    def __len__(self) -> int:
        return self._count

    def chunks(self, size: int = 256 * 1024) -> Iterator[list[str]]:
        """Lists of consecutive lines, each from about ``size`` bytes of the text."""
        return map(_split_lines, self.text_chunks(size))  # map keeps no chunk text while its lines are used

    def text_chunks(self, size: int = 256 * 1024) -> Iterator[tuple[str, int]]:
        """(lines joined by LF, how many) for consecutive lines, each from about ``size`` bytes.

        The COPY conversion works on a chunk's joined text; splitting it into lines
        only to join them again cost the importer ~0.2 CPU-s per 1M rows.
        """
        data, end, pos, left = self.data, len(self.data), 0, self._count
        while left > 0:
            cut = data.rfind(b"\n", pos, pos + size) if pos + size < end else -1
            if cut < 0:  # the rest fits, or one line is longer than size
                cut = data.find(b"\n", pos + size) if pos + size < end else -1
            stop = end if cut < 0 else cut
            count = data.count(b"\n", pos, stop) + 1
            left -= count
            yield data[pos:stop].decode("utf-8"), count  # the bytes slice is gone once decoded
            pos = stop + 1
            if cut < 0 and left > 0:  # the text ends with line feeds: empty last lines
                yield "\n" * (left - 1), left
                left = 0

    def __iter__(self) -> Iterator[str]:
        for lines in self.chunks():
            yield from lines

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        return list(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowText):
            return self.data == other.data and len(self) == len(other)
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-free, but equal to lists: no hash

    def __repr__(self) -> str:
        return f"RowText({len(self)} lines, {len(self.data)} bytes)"


def _split_lines(chunk: tuple[str, int]) -> list[str]:
    return chunk[0].split("\n")


def line_chunks(lines: Sequence[str], rows: int = 4096) -> Iterator[tuple[int, list[str]]]:
    """(index of the first line, lines) for consecutive chunks of about ``rows`` lines.

    A list is sliced; a :class:`RowText` is split a chunk at a time, sized by its
    average line, so only one chunk of strings exists at once.
    """
    start = 0
    if isinstance(lines, RowText):
        size = max(4096, len(lines.data) * rows // max(len(lines), 1))
        for chunk in lines.chunks(size):
            yield start, chunk
            start += len(chunk)
        return
    for start in range(0, len(lines), rows):
        yield start, list(lines[start : start + rows])


def text_chunks(lines: RowText, rows: int = 4096) -> Iterator[tuple[int, str, int]]:
    """(index of the first line, the lines joined by LF, how many) for chunks of about ``rows`` lines.

    :func:`line_chunks` as joined text, which is what a :class:`RowText` holds, so its
    chunks are never split into lines.  (A list of lines may hold a raw line feed
    inside a line, which joined text could not tell from a line end: lists go by
    :func:`line_chunks`.)
    """
    start = 0
    size = max(4096, len(lines.data) * rows // max(len(lines), 1))
    for text, count in lines.text_chunks(size):
        yield start, text, count
        start += count


@dataclass(slots=True)
class Packet:
    """A whole TDTP packet.

    ``rows`` are row lines (see the module docstring): a list, or a :class:`RowText`
    where the decoder was asked for ``lazy_rows``.  ``compression`` is ``""`` or
    ``"zstd"`` and says how the packet was (or will be) written; ``compact`` marks a
    v1.3.1 compact Data section (read only: the codec expands it on decode).
    ``hash_status`` is set by the decoder: ``"none"`` (no hashes), ``"ok"``.
    """

    header: Header
    schema: Schema
    rows: list[str] | RowText = field(default_factory=list)
    version: str = "1.0"
    compression: str = ""
    compact: bool = False
    hash_status: str = "none"
    extras: dict[str, Any] = field(default_factory=dict)  # Query/QueryContext/AlarmDetails raw XML


@dataclass(slots=True)
class Summary:
    """End-of-stream message of a streaming export: the totals the parts could not carry.

    ``checksum`` is the sum modulo 2**64 of every part's ``part_checksum`` (XXH3-64
    of its row lines joined by line feeds), written as 16 hex digits: it does not
    depend on the order parts arrive in, and a duplicate part changes it.
    """

    export_id: str
    table: str
    total_parts: int
    total_rows: int
    total_bytes: int
    checksum: str
    partition: str = ""
    started_at: str = ""
    finished_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc = {
            "kind": "tdtp-summary",
            "export_id": self.export_id,
            "table": self.table,
            "partition": self.partition,
            "total_parts": self.total_parts,
            "total_rows": self.total_rows,
            "total_bytes": self.total_bytes,
            "checksum": self.checksum,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.extra:
            doc["extra"] = self.extra
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Summary:
        try:
            doc = json.loads(data)
            if doc.get("kind") != "tdtp-summary":
                raise ValueError("kind is not tdtp-summary")
            return cls(
                export_id=str(doc["export_id"]),
                table=str(doc["table"]),
                partition=str(doc.get("partition", "")),
                total_parts=int(doc["total_parts"]),
                total_rows=int(doc["total_rows"]),
                total_bytes=int(doc["total_bytes"]),
                checksum=str(doc["checksum"]),
                started_at=str(doc.get("started_at", "")),
                finished_at=str(doc.get("finished_at", "")),
                extra=dict(doc.get("extra", {})),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PacketFormatError(f"not a TDTP summary: {exc}") from exc


def is_summary_body(data: bytes) -> bool:
    """Cheap check used by brokers/importers to tell a summary message from a part."""
    head = data[:64].lstrip()
    return head.startswith(b"{") and b"tdtp-summary" in data[:512]
