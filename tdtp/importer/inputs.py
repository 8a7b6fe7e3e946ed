"""What the importer receives: part and summary files, broker messages, dead letters to replay.

Each becomes an :class:`Incoming` item carrying the raw bytes and the routing facts
the sender gave (broker headers), so the dispatcher can skip known duplicates and
route without parsing XML.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tdtp.brokers.base import CaughtUp, Message
from tdtp.brokers.headers import EXPORT_ID, KIND, KIND_SUMMARY, PART, PARTITION, ROWS, TABLE
from tdtp.packet import TdtpError, is_summary_body
from tdtp.part_files import SUMMARY_SUFFIX, split_part_file_name


@dataclass
class Incoming:
    """One received item; ``message`` is kept for the broker acknowledgement."""

    kind: str  # "data" | "summary"
    body: bytes
    source: str
    export_hint: str = ""
    part_hint: int = 0
    table_hint: str = ""  # the table the sender named (our broker header) or the part's TableName
    rows_hint: int | None = None
    partition: str = ""
    foreign: bool = False
    message: Message | None = None
    dead_letter_id: int | None = None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def from_message(msg: Message) -> Incoming:
    """A broker message; messages without our ``kind`` header come from another producer."""
    h = msg.headers or {}
    kind = h.get(KIND, "")
    source = f"seq {msg.seq}"
    if kind == KIND_SUMMARY or (not kind and is_summary_body(msg.body)):
        return Incoming("summary", msg.body, source, export_hint=h.get(EXPORT_ID, ""), message=msg)
    return Incoming(
        "data",
        msg.body,
        source,
        export_hint=h.get(EXPORT_ID, ""),
        part_hint=_int(h.get(PART)) or 0,
        table_hint=h.get(TABLE, ""),
        rows_hint=_int(h.get(ROWS)),
        partition=h.get(PARTITION, ""),
        foreign=not kind,
        message=msg,
    )


def _part_sort_key(path: Path) -> tuple[str, int, str]:
    stem, number = split_part_file_name(path.name)
    return (str(path.parent), number, stem)


def expand_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """Summary files and part files named by ``paths`` (directories are scanned, not recursed)."""
    summaries: list[Path] = []
    parts: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.is_file())
        elif path.is_file():
            candidates = [path]
        else:
            raise TdtpError("no such file or directory", where=str(path))
        for p in candidates:
            if p.name.endswith(SUMMARY_SUFFIX):
                summaries.append(p)
            elif p.suffix.lower() in (".xml", ".zst", ".tdtp") or p in (Path(g) for g in paths):
                parts.append(p)
    return summaries, sorted(set(parts), key=_part_sort_key)


def file_items(summaries: list[Path], parts: list[Path]) -> Iterator[Incoming]:
    """Summaries first (so completion is seen as the last part lands), then parts, read lazily."""
    for p in summaries:
        yield Incoming("summary", p.read_bytes(), str(p))
    for p in parts:
        body = p.read_bytes()
        kind = "summary" if is_summary_body(body) else "data"
        yield Incoming(kind, body, str(p))


def log_items(items: Iterator[Message | CaughtUp], until_seq: int | None) -> Iterator[Incoming | CaughtUp]:
    """Broker messages as Incoming; stops before ``until_seq``."""
    for item in items:
        if isinstance(item, CaughtUp):
            yield item
            continue
        if until_seq is not None and item.seq >= until_seq:
            return
        yield from_message(item)
