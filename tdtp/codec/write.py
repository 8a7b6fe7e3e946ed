"""Packets to bytes: Go's layout, built as strings and bytes (docs/format.md §1–4).

Writing builds the XML as strings and bytes in Go's layout (declaration, one
newline, the packet on one line) because a DOM costs more than the rest of an
export; Header and Schema follow Go's ``encoding/xml`` rules (``tdtp.codec.goxml``)
so v1.4 schema hashes agree with Go's.  Rows given as bytes (the PostgreSQL COPY
fast path) go into the part without becoming Python strings.
"""

from __future__ import annotations

from tdtp.codec.goxml import check_schema_text, field_xml, go_attr, header_xml, schema_xml
from tdtp.codec.hashes import v14_hashes
from tdtp.codec.ids import utc_timestamp
from tdtp.codec.rows import check_row_bytes, rows_bytes, xml_escape_rows
from tdtp.codec.zstd import pack_rows
from tdtp.packet import Packet, PacketFormatError

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _choose_version(packet: Packet, hashes: bool) -> str:
    """The version this packet declares: 1.4 exactly when we write v1.4 hashes.

    That is this writer's choice, not Go's rule: Go's reader verifies hashes only when
    the root ``xxh3`` attribute is non-empty, and 1.4 is also the version of a packet
    that only carries a schema dictionary, or is an error packet (docs/format.md §1,
    §4).  Our dictionaries always come with hashes (``_encode`` forces them).  Without
    hashes, a packet keeps its own version below 1.4 (1.3.1 when it uses SpecialValues
    or fixed fields).
    """
    if hashes:
        return "1.4"
    version = packet.version or "1.0"
    if version >= "1.4":  # Go compares versions as strings
        version = "1.3.1"
    if version < "1.3.1" and any(f.specials.any() or f.fixed for f in packet.schema.fields):
        version = "1.3.1"
    return version


def encode_packet(packet: Packet, *, compress: str = "", level: int = 1, hashes: bool = False) -> bytes:
    """Serialize a packet in Go's layout.

    ``RecordsInPart`` is always the number of rows (omitted when 0), whatever the
    header says.  ``compress="zstd"`` writes one frame of the LF-joined rows as
    base64 with its ``checksum``; ``hashes=True`` (forced when the schema has a
    dictionary) writes v1.4 xxh3 attributes.  Rows with characters XML cannot
    carry raise RowError naming the part, row and field.
    """
    part_where = f"part {packet.header.part_number}: " if packet.header.part_number else ""
    nrows = len(packet.rows)
    data = rows_bytes(packet, part_where) if nrows else b""
    return _encode(packet, data, nrows, compress=compress, level=level, hashes=hashes)


def encode_row_data(
    packet: Packet,
    data: bytes,
    nrows: int,
    *,
    compress: str = "",
    level: int = 1,
    hashes: bool = False,
    checked: bool = False,
) -> bytes:
    """Serialize a packet whose rows are given as bytes: row lines joined by LF, UTF-8.

    The fast export path: rows read from PostgreSQL's COPY are already TDTP row
    text, so they go from the socket into the part without becoming Python strings.
    ``packet.rows`` is ignored (leave it empty).  Row lines must not hold raw LFs.
    ``checked=True`` skips the scan for characters XML cannot carry, for callers whose
    rows were already checked (every ``Source`` checks what it yields).
    """
    part_where = f"part {packet.header.part_number}: " if packet.header.part_number else ""
    if nrows and not checked:
        check_row_bytes(data, packet, part_where)
    return _encode(packet, data, nrows, compress=compress, level=level, hashes=hashes)


def _encode(packet: Packet, data: bytes, nrows: int, *, compress: str, level: int, hashes: bool) -> bytes:
    if compress not in ("", "zstd"):
        raise PacketFormatError(f"unsupported compression {compress!r} (use '' or 'zstd')")
    h = packet.header
    schema = packet.schema
    check_schema_text(schema)
    hashes = hashes or bool(schema.dictionary)
    rows = packet.rows

    fields_xml = [field_xml(f, f.type, f.specials if f.specials.any() else None) for f in schema.fields]
    schema_plain = schema_xml(fields_xml, schema.dictionary)
    root_attr = ""
    schema_out = schema_plain
    data_hash_attr = ""
    if hashes:
        packet_hex, schema_hex, data_hex = v14_hashes(h.message_id, schema_plain, data, nrows)
        root_attr = f' xxh3="{packet_hex}"'
        schema_out = schema_xml(fields_xml, schema.dictionary, schema_hex)
        data_hash_attr = f' xxh3="{data_hex}"'

    version = _choose_version(packet, hashes)
    head = "".join(
        [
            XML_DECLARATION,
            f'<DataPacket protocol="TDTP"{go_attr("version", version)}{root_attr}>',
            header_xml(h, nrows, h.timestamp or utc_timestamp()),
            *(packet.extras.get(k, "") for k in ("Query", "QueryContext", "PipelineContext")),
            schema_out,
        ]
    ).encode("utf-8")
    tail = (packet.extras.get("AlarmDetails", "") + "</DataPacket>").encode("utf-8")

    if not nrows:
        return b"".join([head, f"<Data{data_hash_attr}></Data>".encode(), tail])
    if compress == "zstd":
        b64, checksum = pack_rows(data, level)
        open_tag = f'<Data compression="zstd" checksum="{checksum}"{data_hash_attr}><R>'.encode()
        return b"".join([head, open_tag, b64, b"</R></Data>", tail])
    body = xml_escape_rows(data)
    if not rows or body.count(b"\n") == nrows - 1:
        body = body.replace(b"\n", b"</R><R>")
    else:  # some row line holds a raw LF (legal: readers keep it): join row by row
        body = b"</R><R>".join(xml_escape_rows(r.encode("utf-8")) for r in rows)
    return b"".join([head, f"<Data{data_hash_attr}><R>".encode(), body, b"</R></Data>", tail])
