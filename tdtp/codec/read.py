"""Bytes to packets: parse, verify, and hand back row lines (docs/format.md §1–4).

``decode_packet`` runs every check a part must pass before anything is written:
the ``DecodeLimits`` (each before the memory it guards is spent), DTDs, UTF-8,
envelope, schema types and attributes, zstd checksum, v1.4 hashes (required when
asked), RecordsInPart, PartNumber/TotalParts, compact tail.  Rows come back as *row lines*
(see ``tdtp.packet``); turning them into Python values is ``decode_values`` /
``tdtp.values.RowDecoder``.  ``peek_header`` reads the Header alone, for routing.
"""

from __future__ import annotations

from dataclasses import replace

import zstandard
from lxml import etree

from tdtp.codec.hashes import verify_hashes
from tdtp.codec.limits import DEFAULT_LIMITS, DecodeLimits, exceeded
from tdtp.codec.rows import collect_rows, decompressed_rows, expand_compact
from tdtp.codec.xmlread import (
    GO_BOOL,
    check_prolog,
    deeper_than,
    loc,
    parse_error,
    parse_header,
    parse_schema,
    xml_parser,
)
from tdtp.codec.zstd import ZSTD_MAGIC, maybe_unzstd
from tdtp.packet import Header, IntegrityError, Packet, PacketFormatError, RowError, Schema, SchemaError
from tdtp.values import RowDecoder, split_raw

_EXTRA_TAGS = ("Query", "QueryContext", "PipelineContext", "AlarmDetails")
DEFAULT_MAX_BYTES = DEFAULT_LIMITS.max_xml_bytes  # the one cap before DecodeLimits; kept for callers


def decode_packet(
    data: bytes,
    *,
    where: str = "",
    limits: DecodeLimits = DEFAULT_LIMITS,
    require_hashes: bool = False,
    max_bytes: int | None = None,
    lazy_rows: bool = False,
) -> Packet:
    """Parse and verify one packet; rows come back as row lines (never holding a raw LF).

    Checks, each raising the typed error named in docs/format.md: ``limits`` (sizes,
    rows, values, tags, depth: ``LimitExceeded``), DTDs, UTF-8, envelope, schema
    types and attributes, zstd checksum, v1.4 hashes, RecordsInPart,
    PartNumber/TotalParts, compact tail.  ``require_hashes`` refuses a part without
    v1.4 hashes (with them, a part altered by accident cannot pass; XXH3 takes no
    key, so hashes do not stop a forger).  ``max_bytes``, the single cap of old,
    sets both ``max_xml_bytes`` and ``max_decoded_bytes``.  ``lazy_rows`` returns a
    compressed part's rows as a :class:`~tdtp.packet.RowText` (its bytes, split as
    read) instead of a list: what a part costs the importer's memory.
    """
    if max_bytes is not None:
        limits = replace(limits, max_xml_bytes=max_bytes, max_decoded_bytes=max_bytes)
    if len(data) > limits.max_xml_bytes:
        raise exceeded(f"packet of {len(data)} bytes", "max_xml_bytes", limits.max_xml_bytes, where)
    data = maybe_unzstd(data if isinstance(data, bytes) else bytes(data), limits.max_xml_bytes, where)
    root = _parse(data, limits, where)
    if root.get("protocol") != "TDTP":
        raise PacketFormatError(
            f"root <{str(root.tag)[:40]}> has protocol={str(root.get('protocol'))[:40]!r}, expected 'TDTP'",
            where=where,
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
    if require_hashes and not hashed:
        raise IntegrityError("part carries no v1.4 xxh3 hashes, and hashes are required", where=pwhere)
    schema, schema_xml = parse_schema(schema_el, pwhere, want_xml=hashed)
    _check_schema(schema, limits, loc(pwhere, "Schema"))
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
        raise PacketFormatError(f"unsupported compression {compression[:40]!r}", where=dwhere)
    texts = collect_rows(data_el, dwhere, limits.max_depth)
    if compression:
        rows, nbytes = decompressed_rows(
            texts, data_el, header.records_in_part, limits, dwhere, lazy=lazy_rows
        )
    else:
        rows, nbytes = texts, len(data)
        _check_plain_rows(rows, nbytes, limits, dwhere)
    _check_value_sizes(rows, nbytes, schema, limits, dwhere)
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
        carry = data_el.get("carry") or ""
        if len(carry) > limits.max_value_bytes:
            raise exceeded("the carry attribute", "max_value_bytes", limits.max_value_bytes, dwhere)
        rows = expand_compact(list(rows), schema, carry, tail, dwhere, limits.max_decoded_bytes)
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


def _parse(data: bytes, limits: DecodeLimits, where: str) -> etree._Element:
    """The packet's root element, parsed only once the prolog, tag count and encoding pass.

    The tag count bounds the parse tree before it is built (one row of an
    uncompressed part costs ~300 bytes of tree); below ``max_xml_tags`` bytes there
    cannot be more tags than that, so ordinary parts skip the count.  The depth
    check covers all but ``<Data>`` here, and the rows (``collect_rows``) there.
    """
    check_prolog(data, where)
    if len(data) > limits.max_xml_tags and data.count(b"<") > limits.max_xml_tags:
        raise exceeded("XML tag count", "max_xml_tags", limits.max_xml_tags, where)
    try:
        root = etree.fromstring(data, xml_parser(huge=len(data) > 8 * 2**20))
    except etree.XMLSyntaxError as exc:
        raise parse_error(exc, where) from exc
    if deeper_than(root, 1, limits.max_depth, skip_data=True):
        raise exceeded("element nesting", "max_depth", limits.max_depth, where)
    return root


def _check_schema(schema: Schema, limits: DecodeLimits, where: str) -> None:
    """Refuse a schema whose values could not be read, before any row is.

    Building the row decoder interprets every field's attributes the way reading
    its values will (a ``timezone`` of ``+25:00`` is no zone), so its complaint
    comes now, naming the field, rather than at the first row.
    """
    for short, full in schema.dictionary:
        if len(full) > limits.max_value_bytes:
            raise exceeded(f"dictionary entry {short!r}", "max_value_bytes", limits.max_value_bytes, where)
    try:
        RowDecoder(schema)
    except SchemaError as exc:
        raise exc.at(where) from None


def _check_plain_rows(rows: list[str], xml_bytes: int, limits: DecodeLimits, where: str) -> None:
    """Row count and decoded bytes of an uncompressed part: the limits a compressed one
    meets while it is decompressed.  Row texts are never longer than the XML holding
    them, so a part smaller than the cap skips the sum."""
    if len(rows) > limits.max_rows:
        raise exceeded("row count", "max_rows", limits.max_rows, where)
    if xml_bytes > limits.max_decoded_bytes and sum(map(len, rows)) > limits.max_decoded_bytes:
        raise exceeded("rows", "max_decoded_bytes", limits.max_decoded_bytes, where)


def _check_value_sizes(
    rows: list[str], nbytes: int, schema: Schema, limits: DecodeLimits, where: str
) -> None:
    """Refuse a value longer than ``max_value_bytes``, naming its row and field.

    No value is longer than its row, nor a row than the part's ``nbytes``: an
    ordinary part (smaller than the cap) skips the scan, and only a row longer than
    the cap is split into values.
    """
    cap = limits.max_value_bytes
    if nbytes <= cap:
        return
    for i, row in enumerate(rows, start=1):
        if len(row) > cap:
            for name, value in zip(schema.names, split_raw(row), strict=False):
                if len(value) > cap:
                    raise exceeded(f"row {i}: field {name!r}: value", "max_value_bytes", cap, where)


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
