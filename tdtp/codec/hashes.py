"""XXH3 hashes of a packet: the v1.4 integrity hashes and the per-part checksum.

v1.4 (docs/format.md §4): three XXH3-128 hashes salted with the MessageID, over the
Schema element as Go serializes it (``tdtp.codec.goxml``), over the row lines, and
over both.  Writers compute them before compression; readers verify them before
anything is written.  ``part_checksum`` is this project's own figure: summaries add
it up so an importer can tell that every row of an export arrived.
"""

from __future__ import annotations

from collections.abc import Sequence

import xxhash
from lxml import etree

from tdtp.packet import IntegrityError, RowText


def _xxh128(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def _data_hash(salt: bytes, joined: bytes, nrows: int) -> str:
    """v1.4 data hash: salt, then every row line followed by LF (``joined`` has LF between rows)."""
    if not nrows:
        return _xxh128(salt)
    h = xxhash.xxh3_128()  # fed in pieces: no copy of the part's rows
    for piece in (salt, joined, b"\n"):
        h.update(piece)
    return h.hexdigest()


def v14_hashes(message_id: str, schema_xml: str, rows_data: bytes, nrows: int) -> tuple[str, str, str]:
    """(packet, schema, data) hashes of a packet: ``schema_xml`` without its own xxh3
    attribute, ``rows_data`` the row lines joined by LF as UTF-8."""
    salt = message_id.encode("utf-8")
    schema_hex = _xxh128(salt + schema_xml.encode("utf-8"))
    data_hex = _data_hash(salt, rows_data, nrows)
    packet_hex = _xxh128(f"{schema_hex}|{data_hex}".encode())
    return packet_hex, schema_hex, data_hex


def verify_hashes(
    elements: tuple[etree._Element, etree._Element, etree._Element],
    message_id: str,
    schema_xml: str,
    rows: Sequence[str],
    where: str,
) -> str:
    """Recompute the three v1.4 hashes (root, Schema, Data elements) and compare; "ok" or "none"."""
    stored = tuple(el.get("xxh3") for el in elements)
    if not any(stored):
        return "none"
    names = ("packet", "schema", "data")
    missing = [n for n, s in zip(names, stored, strict=True) if not s]
    if missing:
        raise IntegrityError(f"xxh3 hashes incomplete: no {', '.join(missing)} hash", where=where)
    packet_hex, schema_hex, data_hex = v14_hashes(message_id, schema_xml, rows_utf8(rows), len(rows))
    checks = (
        ("schema", stored[1], schema_hex),
        ("data", stored[2], data_hex),
        ("packet", stored[0], packet_hex),
    )
    for name, s, computed in checks:
        if s is not None and s.strip().lower() != computed:
            raise IntegrityError(
                f"xxh3 {name} hash mismatch: stored {s.strip()[:40]}, computed {computed}", where=where
            )
    return "ok"


def part_checksum(rows: Sequence[str]) -> int:
    """XXH3-64 of the row lines joined by LF: the per-part figure summaries add up."""
    return xxhash.xxh3_64_intdigest(rows_utf8(rows))


def rows_utf8(rows: Sequence[str]) -> bytes:
    """The row lines joined by LF, as UTF-8: a RowText already holds them so."""
    return rows.data if isinstance(rows, RowText) else "\n".join(rows).encode("utf-8")
