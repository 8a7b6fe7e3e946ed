"""The parts the fuzz harness mutates: real parts this tool writes, plus Go-style fixtures.

A small mixed-type table (every TDTP type, NULLs, escapes, non-ASCII, a BLOB) goes
through ``tdtp.parts.build_parts`` as a real export would: zstd and uncompressed,
with and without v1.4 hashes, streamed and batch.  The hand-written Go-style
fixtures add what our writer never writes (compact rows, a dictionary, a Query,
raw line feeds).  Everything is deterministic: the same seed gives the same cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from tdtp.codec import decode_packet
from tdtp.packet import Field, Packet, Schema
from tdtp.parts import Part, PartOptions, build_parts
from tdtp.values import RowEncoder, schema_for_export

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXED_TIMESTAMP = b"<Timestamp>2026-12-03T21:00:00Z</Timestamp>"
EXPORT_ID = "REF-2026-f022f022"

SCHEMA = schema_for_export(
    Schema(
        (
            Field("id", "INTEGER", key=True),
            Field("name", "TEXT", length=-1),
            Field("score", "REAL"),
            Field("amount", "DECIMAL", precision=12, scale=2),
            Field("ok", "BOOLEAN"),
            Field("day", "DATE"),
            Field("at", "TIMESTAMP", timezone="UTC"),
            Field("local", "TIMESTAMP"),
            Field("clock", "TIMESTAMP", subtype="time"),
            Field("bin", "BLOB", length=-1),
        )
    )
)
_NAMES = ["plain", "a|b", "back\\slash", "line\nfeed", "caf\u00e9 \U0001f600", "<&>", "", "[NULL]x", "\t tab"]


def _row(i: int) -> tuple:
    """Row ``i`` of the table: every type, a NULL now and then, the awkward texts above."""
    tz = timezone(timedelta(hours=(i % 27) - 13))
    return (
        i,
        None if i % 11 == 5 else f"{_NAMES[i % len(_NAMES)]} {i}",
        None if i % 13 == 7 else (i * 0.37 - 5 if i % 17 else float("inf")),
        None if i % 7 == 3 else Decimal(i * 1234 - 50000).scaleb(-2),
        None if i % 5 == 4 else bool(i % 2),
        None if i % 9 == 8 else date(2000 + i % 30, 1 + i % 12, 1 + i % 28),
        datetime(2025, 1, 15, i % 24, i % 60, tzinfo=tz).astimezone(UTC),
        None if i % 6 == 2 else datetime(2024, 2, 29, 12, i % 60, i % 60, i * 1000 % 1_000_000),
        time(i % 24, (i * 7) % 60),
        None if i % 8 == 1 else bytes(range(i % 7, i % 7 + i % 23)),
    )


@dataclass(frozen=True)
class Base:
    """One part to mutate: its bytes, how it was written, and what it decodes to."""

    name: str
    body: bytes
    compressed: bool
    hashed: bool
    options: tuple[tuple[str, object], ...]  # encode_packet options, to re-encode a changed packet
    packet: Packet

    @property
    def encode_options(self) -> dict[str, object]:
        return dict(self.options)


def _fixed(body: bytes) -> bytes:
    """Timestamps are the only part of a part that changes from run to run."""
    return re.sub(rb"<Timestamp>[^<]*</Timestamp>", FIXED_TIMESTAMP, body)


@lru_cache(maxsize=1)
def build_bases() -> tuple[Base, ...]:
    enc = RowEncoder(SCHEMA)
    lines = [enc.encode(_row(i)) for i in range(60)]
    bases: list[Base] = []
    for compress in ("zstd", ""):
        for hashes in (False, True):
            options = PartOptions(part_bytes=3000, compress=compress, hashes=hashes, batch=hashes)
            parts = [
                p
                for p in build_parts(SCHEMA, lines, table="fuzz_mixed", export_id=EXPORT_ID, options=options)
                if isinstance(p, Part)
            ]
            for part in parts[:2]:
                body = _fixed(part.body)
                name = f"{compress or 'none'}{'+hashes' if hashes else ''}#{part.number}"
                opts = (("compress", compress), ("hashes", hashes))
                bases.append(Base(name, body, bool(compress), hashes, opts, decode_packet(body)))
    for fixture in (
        "compact.xml",
        "hashes_v14.xml",
        "special_values.xml",
        "raw_linefeed.xml",
        "tdtp_root.xml",
    ):
        body = _fixed((FIXTURES / fixture).read_bytes())
        packet = decode_packet(body)
        hashed = packet.hash_status == "ok"
        opts = (("compress", packet.compression), ("hashes", hashed))
        bases.append(Base(fixture, body, bool(packet.compression), hashed, opts, packet))
    return tuple(bases)
