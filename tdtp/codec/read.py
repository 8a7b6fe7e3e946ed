"""Bytes to packets: parse, verify, and hand back row lines (docs/format.md §1–4).

``decode_packet`` runs every check a part must pass before anything is written:
size limit, DTDs, envelope, schema types, zstd checksum and size, v1.4 hashes,
RecordsInPart, PartNumber/TotalParts, compact tail.  Rows come back as *row lines*
(see ``tdtp.packet``); turning them into Python values is ``decode_values`` /
``tdtp.values.RowDecoder``.  ``peek_header`` reads the Header alone, for routing.
"""

from __future__ import annotations

import zstandard
from lxml import etree

from tdtp.codec.hashes import verify_hashes
from tdtp.codec.rows import collect_rows, decompressed_rows, expand_compact
from tdtp.codec.xmlread import GO_BOOL, check_prolog, loc, parse_header, parse_schema, xml_parser
from tdtp.codec.zstd import ZSTD_MAGIC, maybe_unzstd
from tdtp.packet import Header, IntegrityError, Packet, PacketFormatError, RowError
from tdtp.values import RowDecoder

DEFAULT_MAX_BYTES = 256 * 2**20
_EXTRA_TAGS = ("Query", "QueryContext", "PipelineContext", "AlarmDetails")


def decode_packet(data: bytes, *, where: str = "", max_bytes: int = DEFAULT_MAX_BYTES) -> Packet:
    """Parse and verify one packet; rows come back as row lines (never holding a raw LF).

    Checks, each raising the typed error named in docs/format.md: size limit, DTDs,
    envelope, schema types, zstd checksum and size, v1.4 hashes, RecordsInPart,
    PartNumber/TotalParts, compact tail.
    """
    if len(data) > max_bytes:
        raise PacketFormatError(f"packet of {len(data)} bytes exceeds the limit of {max_bytes}", where=where)
    data = maybe_unzstd(data if isinstance(data, bytes) else bytes(data), max_bytes, where)
    check_prolog(data, where)
    try:
        root = etree.fromstring(data, xml_parser(huge=len(data) > 8 * 2**20))
    except etree.XMLSyntaxError as exc:
        raise PacketFormatError(f"not well-formed XML: {exc}", where=where) from exc
    if root.get("protocol") != "TDTP":
        raise PacketFormatError(
            f"root <{root.tag}> has protocol={root.get('protocol')!r}, expected 'TDTP'", where=where
        )
    version = (root.get("version") or "").strip()
    if not version:
        raise PacketFormatError("root element has no version", where=where)

    header_el = root.find("Header")
    if header_el is None:
        raise PacketFormatError("packet has no <Header>", where=where)
    header = parse_header(header_el, where)
    if header.total_parts > 0 and not 1 <= header.part_number <= header.total_parts:
        raise PacketFormatError(
            f"PartNumber {header.part_number} is outside 1..TotalParts ({header.total_parts})",
            where=loc(where, "Header"),
        )
    pwhere = loc(where, f"part {header.part_number}") if header.part_number else where

    schema_el = root.find("Schema")
    data_el = root.find("Data")
    hashed = any(e is not None and e.get("xxh3") for e in (root, schema_el, data_el))
    schema, schema_xml = parse_schema(schema_el, pwhere, want_xml=hashed)
    extras = {
        tag: etree.tostring(el, encoding="unicode", with_tail=False)
        for tag in _EXTRA_TAGS
        if (el := root.find(tag)) is not None
    }

    if data_el is None:
        raise PacketFormatError("packet has no <Data>", where=pwhere)
    dwhere = loc(pwhere, "Data")
    compression = (data_el.get("compression") or "").strip().lower()
    if compression not in ("", "zstd"):
        raise PacketFormatError(f"unsupported compression {compression!r}", where=dwhere)
    texts = collect_rows(data_el, dwhere)
    if compression:
        rows = decompressed_rows(texts, data_el, header.records_in_part, max_bytes, dwhere)
    else:
        rows = texts
    if header.records_in_part and header.records_in_part != len(rows):
        raise IntegrityError(
            f"RecordsInPart says {header.records_in_part} rows, the part holds {len(rows)}",
            where=loc(pwhere, "Header"),
        )
    hash_status = (
        verify_hashes((root, schema_el, data_el), header.message_id, schema_xml, rows, pwhere)
        if hashed
        else "none"
    )
    if not compression:
        rows = [r if "\n" not in r else r.replace("\n", "\\n") for r in rows]
    compact = GO_BOOL.get((data_el.get("compact") or "false").strip(), False)
    if compact:
        tail = GO_BOOL.get((data_el.get("tail") or "false").strip(), False)
        rows = expand_compact(rows, schema, data_el.get("carry") or "", tail, dwhere)
    return Packet(
        header=header,
        schema=schema,
        rows=rows,
        version=version,
        compression=compression,
        compact=compact,
        hash_status=hash_status,
        extras=extras,
    )


def decode_values(packet: Packet) -> list[tuple]:
    """Python values of every row; a bad row raises RowError naming part, row and field."""
    dec = RowDecoder(packet.schema)
    out = []
    part = f"part {packet.header.part_number}: " if packet.header.part_number else ""
    for i, line in enumerate(packet.rows, start=1):
        try:
            out.append(dec.decode(line))
        except RowError as exc:
            raise exc.at(f"{part}row {i}") from None
    return out


_PEEK_BYTES = 64 * 1024


def peek_header(data: bytes, *, where: str = "") -> Header:
    """The Header alone, from a bounded prefix: no Data parse (inspect, routing)."""
    if data[:4] == ZSTD_MAGIC:
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(data)
            prefix = reader.read(_PEEK_BYTES)
        except zstandard.ZstdError as exc:
            raise PacketFormatError(f"zstd data is broken: {exc}", where=where) from exc
    else:
        prefix = bytes(data[:_PEEK_BYTES])
    check_prolog(prefix, where)
    parser = etree.XMLPullParser(
        events=("end",), tag="Header", resolve_entities=False, no_network=True, load_dtd=False
    )
    try:
        parser.feed(prefix)
        for _event, el in parser.read_events():
            return parse_header(el, where)
    except etree.XMLSyntaxError as exc:
        raise PacketFormatError(f"not well-formed XML: {exc}", where=where) from exc
    raise PacketFormatError(f"no complete <Header> in the first {_PEEK_BYTES} bytes", where=where)
