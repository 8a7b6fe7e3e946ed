"""TDTP packets to and from bytes (TDTP_FORMAT.md §1–4).

Writing builds the XML as strings and bytes in Go's layout (declaration, one
newline, the packet on one line) because a DOM costs more than the rest of an
export; Header and Schema follow Go's ``encoding/xml`` rules so v1.4 schema
hashes agree with Go's.  Reading uses lxml with DTDs, entities and network
access off, after a cheap prolog check that refuses any DOCTYPE outright
(XXE, billion laughs).  Rows stay *row lines* (see ``tdtp.packet``); turning
them into Python values is ``decode_values`` / ``tdtp.values.RowDecoder``.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
from collections.abc import Iterable
from datetime import UTC, datetime

import xxhash
import zstandard
from lxml import etree

from tdtp.packet import (
    Field,
    Header,
    IntegrityError,
    Packet,
    PacketFormatError,
    RowError,
    Schema,
    SchemaError,
    SpecialValues,
    canonical_type,
)
from tdtp.values import XML_ILLEGAL_RE, RowDecoder, split_raw, unescape_value

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_MAX_BYTES = 256 * 2**20
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

# Bytes XML 1.0 cannot carry (UTF-8 encoded rows; U+FFFE/U+FFFF checked separately).
_ILLEGAL_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32)])
_MARK_ILLEGAL = bytes.maketrans(_ILLEGAL_BYTES, b"\x00" * len(_ILLEGAL_BYTES))
_NONCHARS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")
_NAME_BAD_RE = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN_RE = re.compile(r"@[A-Za-z][A-Za-z0-9_]*")
_GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
            "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}  # fmt: skip


def _loc(where: str, inner: str) -> str:
    return f"{where}: {inner}" if where and inner else where or inner


# =========================================================================== writing

# Go's encoding/xml escaping (EscapeText and attribute values): what the v1.4
# schema hash is computed over, so Header and Schema are written the same way.
_GO_ESCAPES = str.maketrans(
    {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;",
     "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}
)  # fmt: skip


def _go_esc(s: str) -> str:
    return s.translate(_GO_ESCAPES)


def _go_attr(name: str, value: str) -> str:
    return f' {name}="{_go_esc(value)}"'


def _elem(tag: str, text: str) -> str:
    return f"<{tag}>{_go_esc(text)}</{tag}>"


def _specials_xml(sv: SpecialValues) -> str:
    parts = ["<SpecialValues>"]
    for tag, marker in (
        ("Null", sv.null),
        ("Infinity", sv.infinity),
        ("NegInfinity", sv.neg_infinity),
        ("NaN", sv.nan),
        ("NoDate", sv.no_date),
    ):
        if marker is not None:
            parts.append(f'<{tag} marker="{_go_esc(marker)}"></{tag}>')
    parts.append("</SpecialValues>")
    return "".join(parts)


def _field_xml(f: Field, type_text: str, specials: SpecialValues | None) -> str:
    """One ``<Field>`` exactly as Go marshals it (attribute order, omitempty, no self-closing)."""
    out = [f"<Field{_go_attr('name', f.name)}{_go_attr('type', type_text)}"]
    if f.length:
        out.append(f' length="{f.length}"')
    if f.precision:
        out.append(f' precision="{f.precision}"')
    if f.scale:
        out.append(f' scale="{f.scale}"')
    if f.key:
        out.append(' key="true"')
    if f.timezone:
        out.append(_go_attr("timezone", f.timezone))
    if f.subtype:
        out.append(_go_attr("subtype", f.subtype))
    if f.readonly:
        out.append(' readonly="true"')
    if f.fixed:
        out.append(' fixed="true"')
    out.append(">")
    if specials is not None:
        out.append(_specials_xml(specials))
    out.append("</Field>")
    return "".join(out)


def _schema_xml(fields_xml: Iterable[str], dictionary: tuple[tuple[str, str], ...], xxh3: str = "") -> str:
    head = f'<Schema xxh3="{xxh3}">' if xxh3 else "<Schema>"
    body = "".join(fields_xml)
    if dictionary:
        entries = "".join(
            f"<Entry{_go_attr('short', s)}{_go_attr('full', full)}></Entry>" for s, full in dictionary
        )
        body += f"<Dictionary>{entries}</Dictionary>"
    return f"{head}{body}</Schema>"


def _check_schema_text(schema: Schema) -> None:
    """Refuse (never replace) what readers would refuse: empty or control-character names,
    attribute texts XML cannot carry."""
    for f in schema.fields:
        where = f"field {f.name!r}"
        if not f.name.strip():
            raise SchemaError("field has an empty name", where=where)
        if _NAME_BAD_RE.search(f.name):
            raise SchemaError("field name holds a control character", where=where)
        sv = f.specials
        texts = [f.type, f.timezone, f.subtype]
        texts += [m for m in (sv.null, sv.infinity, sv.neg_infinity, sv.nan, sv.no_date) if m is not None]
        if any(XML_ILLEGAL_RE.search(t) for t in texts):
            raise SchemaError("an attribute holds a character XML 1.0 cannot carry", where=where)


def _header_xml(h: Header, records: int, timestamp: str) -> str:
    out = [
        "<Header>",
        _elem("Type", h.type),
        _elem("TableName", h.table_name),
        _elem("MessageID", h.message_id),
    ]
    if h.in_reply_to:
        out.append(_elem("InReplyTo", h.in_reply_to))
    if h.part_number:
        out.append(f"<PartNumber>{h.part_number}</PartNumber>")
    if h.total_parts:
        out.append(f"<TotalParts>{h.total_parts}</TotalParts>")
    if records:
        out.append(f"<RecordsInPart>{records}</RecordsInPart>")
    out.append(_elem("Timestamp", timestamp))
    if h.sender:
        out.append(_elem("Sender", h.sender))
    if h.recipient:
        out.append(_elem("Recipient", h.recipient))
    out.append("</Header>")
    return "".join(out)


def _xxh128(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def _data_hash(salt: bytes, joined: bytes, nrows: int) -> str:
    """v1.4 data hash: salt, then every row line followed by LF (``joined`` has LF between rows)."""
    return _xxh128(salt + joined + b"\n" if nrows else salt)


def _rows_bytes(packet: Packet, where: str) -> bytes:
    """Rows joined by LF as UTF-8, refusing what XML (and hence Go) cannot carry."""
    text = "\n".join(packet.rows)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _illegal_row_error(packet, where, text.count("\n", 0, exc.start)) from exc
    _check_row_bytes(data, packet, where)
    return data


def _check_row_bytes(data: bytes, packet: Packet, where: str) -> None:
    """Raise RowError for the first row holding a byte sequence XML 1.0 cannot carry."""
    if len(data.translate(None, _ILLEGAL_BYTES)) != len(data) or (
        not data.isascii() and any(n in data for n in _NONCHARS)
    ):
        pos = data.translate(_MARK_ILLEGAL).find(b"\x00")
        if pos < 0:
            pos = min(p for p in (data.find(n) for n in _NONCHARS) if p >= 0)
        if not packet.rows:  # row data given as bytes: build the row lines only to name the row
            packet = Packet(packet.header, packet.schema, data.decode("utf-8", "replace").split("\n"))
        raise _illegal_row_error(packet, where, data.count(b"\n", 0, pos))


def _illegal_row_error(packet: Packet, where: str, line_index: int) -> RowError:
    # Find the real row: a row line with a raw LF spans several joined lines.
    seen = 0
    row_no = 1
    for i, row in enumerate(packet.rows):
        seen += row.count("\n") + 1
        if seen > line_index:
            row_no = i + 1
            break
    row = packet.rows[row_no - 1]
    field_where = ""
    for name, value in zip(packet.schema.names, split_raw(row), strict=False):
        if _bad_xml_text(value):
            field_where = f": field {name!r}"
            break
    return RowError(
        "value holds a character XML 1.0 cannot carry (control character, U+FFFE/U+FFFF or a "
        "lone surrogate); carry the column as BLOB",
        where=f"{where}row {row_no}{field_where}",
    )


def _bad_xml_text(s: str) -> bool:
    return XML_ILLEGAL_RE.search(unescape_value(s)) is not None


def _xml_escape_rows(data: bytes) -> bytes:
    if b"&" in data:
        data = data.replace(b"&", b"&amp;")
    if b"<" in data:
        data = data.replace(b"<", b"&lt;")
    if b">" in data:
        data = data.replace(b">", b"&gt;")
    if b"\r" in data:
        data = data.replace(b"\r", b"&#xD;")
    return data


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """One compressor per thread and level: creating a context per part costs more than small parts."""
    cache = _tls.__dict__.setdefault("compressors", {})
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level)
    return comp


def _choose_version(packet: Packet, hashes: bool) -> str:
    """The version this packet honestly declares: 1.4 means hashes (Go rejects 1.4 without)."""
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
    data = _rows_bytes(packet, part_where) if nrows else b""
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
        _check_row_bytes(data, packet, part_where)
    return _encode(packet, data, nrows, compress=compress, level=level, hashes=hashes)


def _encode(packet: Packet, data: bytes, nrows: int, *, compress: str, level: int, hashes: bool) -> bytes:
    if compress not in ("", "zstd"):
        raise PacketFormatError(f"unsupported compression {compress!r} (use '' or 'zstd')")
    h = packet.header
    schema = packet.schema
    _check_schema_text(schema)
    hashes = hashes or bool(schema.dictionary)
    rows = packet.rows

    fields_xml = [_field_xml(f, f.type, f.specials if f.specials.any() else None) for f in schema.fields]
    schema_plain = _schema_xml(fields_xml, schema.dictionary)
    root_attr = ""
    schema_out = schema_plain
    data_hash_attr = ""
    if hashes:
        salt = h.message_id.encode("utf-8")
        schema_hex = _xxh128(salt + schema_plain.encode("utf-8"))
        data_hex = _data_hash(salt, data, nrows)
        packet_hex = _xxh128(f"{schema_hex}|{data_hex}".encode())
        root_attr = f' xxh3="{packet_hex}"'
        schema_out = _schema_xml(fields_xml, schema.dictionary, schema_hex)
        data_hash_attr = f' xxh3="{data_hex}"'

    version = _choose_version(packet, hashes)
    head = "".join(
        [
            XML_DECLARATION,
            f'<DataPacket protocol="TDTP"{_go_attr("version", version)}{root_attr}>',
            _header_xml(h, nrows, h.timestamp or utc_timestamp()),
            *(packet.extras.get(k, "") for k in ("Query", "QueryContext", "PipelineContext")),
            schema_out,
        ]
    ).encode("utf-8")
    tail = (packet.extras.get("AlarmDetails", "") + "</DataPacket>").encode("utf-8")

    if not nrows:
        return b"".join([head, f"<Data{data_hash_attr}></Data>".encode(), tail])
    if compress == "zstd":
        frame = _compressor(level).compress(data)
        b64 = base64.b64encode(frame)
        checksum = xxhash.xxh3_64_hexdigest(b64)
        open_tag = f'<Data compression="zstd" checksum="{checksum}"{data_hash_attr}><R>'.encode()
        return b"".join([head, open_tag, b64, b"</R></Data>", tail])
    body = _xml_escape_rows(data)
    if not rows or body.count(b"\n") == nrows - 1:
        body = body.replace(b"\n", b"</R><R>")
    else:  # some row line holds a raw LF (legal: readers keep it): join row by row
        body = b"</R><R>".join(_xml_escape_rows(r.encode("utf-8")) for r in rows)
    return b"".join([head, f"<Data{data_hash_attr}><R>".encode(), body, b"</R></Data>", tail])


# =========================================================================== reading

_tls = threading.local()


def _parser(huge: bool) -> etree.XMLParser:
    """Thread-local hardened parsers (lxml parser objects are not shared across threads)."""
    key = "huge" if huge else "plain"
    p = getattr(_tls, key, None)
    if p is None:
        p = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            remove_comments=True,
            remove_pis=True,
            huge_tree=huge,
        )
        setattr(_tls, key, p)
    return p


def _check_prolog(data: bytes, where: str) -> None:
    """Refuse DOCTYPE/ENTITY declarations (and non-UTF-8 encodings) before any parser sees them.

    A declaration can only stand in the prolog, before the root element; scanning
    that much is enough and costs nothing for a 2 MB part.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4]:
        raise PacketFormatError("only UTF-8 packets are accepted", where=where)
    i = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    n = len(data)
    while i < n:
        while i < n and data[i] in b" \t\r\n":
            i += 1
        if data.startswith(b"<?", i):
            end = data.find(b"?>", i)
            i = n if end < 0 else end + 2
        elif data.startswith(b"<!--", i):
            end = data.find(b"-->", i)
            i = n if end < 0 else end + 3
        elif data.startswith(b"<!", i):
            word = re.match(rb"<!\s*([A-Za-z\[]*)", data[i : i + 40])
            what = word.group(1).decode("ascii", "replace") if word else "declaration"
            raise PacketFormatError(
                f"{what or 'markup'} declaration refused: packets may not carry a DTD or entities",
                where=where,
            )
        else:
            return
    return


def _maybe_unzstd(data: bytes, cap: int, where: str) -> bytes:
    if data[:4] == ZSTD_MAGIC:
        return _zstd_decompress(data, cap, where)
    return data


def _zstd_decompress(frame: bytes, cap: int, where: str) -> bytes:
    """Decompress one zstd frame, never producing more than ``cap`` bytes."""
    try:
        size = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise PacketFormatError(f"not a valid zstd frame: {exc}", where=where) from exc
    dctx = zstandard.ZstdDecompressor()
    try:
        if size >= 0:
            if size > cap:
                raise PacketFormatError(
                    f"decompressed size {size} exceeds the limit of {cap} bytes", where=where
                )
            return dctx.decompress(frame)
        # Unknown size: feed small input chunks so a bomb cannot run far past the cap.
        dobj = dctx.decompressobj()
        out: list[bytes] = []
        total = 0
        step = 4096
        for off in range(0, len(frame), step):
            chunk = dobj.decompress(frame[off : off + step])
            total += len(chunk)
            if total > cap:
                raise PacketFormatError(f"decompressed data exceeds the limit of {cap} bytes", where=where)
            out.append(chunk)
            if dobj.eof:
                break
        if not dobj.eof:
            raise PacketFormatError("zstd frame is truncated", where=where)
        return b"".join(out)
    except zstandard.ZstdError as exc:
        raise PacketFormatError(f"zstd data is broken: {exc}", where=where) from exc


def _text(el: etree._Element | None) -> str:
    if el is None or el.text is None:
        return ""
    return el.text.strip()


def _int_text(el: etree._Element | None, what: str, where: str) -> int:
    t = _text(el)
    if not t:
        return 0
    try:
        return int(t)
    except ValueError as exc:
        raise PacketFormatError(f"{what} {t[:40]!r} is not a number", where=_loc(where, "Header")) from exc


def _parse_header(el: etree._Element, where: str) -> Header:
    return Header(
        table_name=_text(el.find("TableName")),
        message_id=_text(el.find("MessageID")),
        type=_text(el.find("Type")) or "reference",
        in_reply_to=_text(el.find("InReplyTo")),
        part_number=_int_text(el.find("PartNumber"), "PartNumber", where),
        total_parts=_int_text(el.find("TotalParts"), "TotalParts", where),
        records_in_part=_int_text(el.find("RecordsInPart"), "RecordsInPart", where),
        timestamp=_text(el.find("Timestamp")),
        sender=_text(el.find("Sender")),
        recipient=_text(el.find("Recipient")),
    )


def _attr_int(el: etree._Element, name: str, where: str) -> int:
    v = el.get(name)
    if v is None or v.strip() == "":
        return 0
    try:
        return int(v.strip())
    except ValueError as exc:
        raise SchemaError(f"attribute {name}={v[:40]!r} is not an integer", where=where) from exc


def _attr_bool(el: etree._Element, name: str, where: str) -> bool:
    v = el.get(name)
    if v is None or v == "":
        return False
    b = _GO_BOOL.get(v.strip())
    if b is None:
        raise SchemaError(f"attribute {name}={v[:40]!r} is not a boolean", where=where)
    return b


def _parse_specials(el: etree._Element | None) -> SpecialValues | None:
    if el is None:
        return None

    def marker(tag: str) -> str | None:
        m = el.find(tag)
        return None if m is None else m.get("marker", "")

    return SpecialValues(
        null=marker("Null"),
        infinity=marker("Infinity"),
        neg_infinity=marker("NegInfinity"),
        nan=marker("NaN"),
        no_date=marker("NoDate"),
    )


def _parse_schema(el: etree._Element | None, where: str, want_xml: bool) -> tuple[Schema, str]:
    """Schema plus (when hashes are to be checked) its Go serialization without xxh3."""
    if el is None:
        raise SchemaError("packet has no <Schema>", where=where)
    fields: list[Field] = []
    fields_xml: list[str] = []
    for i, fe in enumerate(el.iterchildren("Field"), start=1):
        name = fe.get("name", "")
        fwhere = _loc(where, f"Schema: field {name!r}" if name else f"Schema: field #{i}")
        if not name.strip():
            raise SchemaError("field has an empty or missing name", where=fwhere)
        if _NAME_BAD_RE.search(name):
            raise SchemaError("field name holds a control character", where=fwhere)
        type_text = fe.get("type", "")
        try:
            ftype = canonical_type(type_text)
        except SchemaError as exc:
            raise exc.at(fwhere) from None
        specials = _parse_specials(fe.find("SpecialValues"))
        f = Field(
            name=name,
            type=ftype,
            length=_attr_int(fe, "length", fwhere),
            precision=_attr_int(fe, "precision", fwhere),
            scale=_attr_int(fe, "scale", fwhere),
            key=_attr_bool(fe, "key", fwhere),
            timezone=fe.get("timezone", ""),
            subtype=fe.get("subtype", ""),
            readonly=_attr_bool(fe, "readonly", fwhere),
            fixed=_attr_bool(fe, "fixed", fwhere),
            specials=specials or SpecialValues(),
        )
        fields.append(f)
        if want_xml:
            fields_xml.append(_field_xml(f, type_text, specials))
    if not fields:
        raise SchemaError("schema has no fields", where=_loc(where, "Schema"))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SchemaError(f"field {dup!r} appears twice", where=_loc(where, "Schema"))
    entries: list[tuple[str, str]] = []
    dict_el = el.find("Dictionary")
    if dict_el is not None:
        for e in dict_el.iterchildren("Entry"):
            short, full = e.get("short", ""), e.get("full", "")
            if not _TOKEN_RE.fullmatch(short):
                raise SchemaError(
                    f"dictionary token {short[:40]!r} is not @ + letter + letters/digits/_",
                    where=_loc(where, "Schema: Dictionary"),
                )
            entries.append((short, full))
    dictionary = tuple(entries)
    xml = _schema_xml(fields_xml, dictionary) if want_xml else ""
    return Schema(tuple(fields), dictionary), xml


_COUNT_R_CHILDREN = etree.XPath("count(R/*)")  # C-level; ElementPath's find("R/*") costs 15x more


def _collect_rows(data_el: etree._Element, where: str) -> list[str]:
    if _COUNT_R_CHILDREN(data_el):
        raise PacketFormatError("an <R> element holds child elements", where=_loc(where, "Data"))
    return [r.text or "" for r in data_el.iterchildren("R")]


def _decompress_rows(
    texts: list[str], data_el: etree._Element, records: int, cap: int, where: str
) -> list[str]:
    dwhere = _loc(where, "Data")
    if not texts:
        return []
    if len(texts) != 1:
        raise PacketFormatError(
            f"compressed Data must hold exactly one <R>, found {len(texts)}", where=dwhere
        )
    b64 = texts[0].strip()
    checksum = (data_el.get("checksum") or "").strip().lower()
    if checksum:
        actual = xxhash.xxh3_64_hexdigest(b64.encode("ascii", "replace"))
        if actual != checksum.rjust(16, "0"):
            raise IntegrityError(
                f"checksum mismatch: attribute says {checksum[:40]}, base64 text hashes to {actual}",
                where=dwhere,
            )
    try:
        frame = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PacketFormatError(f"compressed rows are not valid base64: {exc}", where=dwhere) from exc
    raw = _zstd_decompress(frame, cap, dwhere)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PacketFormatError(f"decompressed rows are not UTF-8: {exc}", where=dwhere) from exc
    if not text:
        # One row whose whole line is empty compresses to nothing; RecordsInPart tells.
        return [""] if records == 1 else []
    return text.split("\n")


def _verify_hashes(
    elements: tuple[etree._Element, etree._Element, etree._Element],
    message_id: str,
    schema_xml: str,
    rows: list[str],
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
    salt = message_id.encode("utf-8")
    schema_hex = _xxh128(salt + schema_xml.encode("utf-8"))
    data_hex = _data_hash(salt, "\n".join(rows).encode("utf-8"), len(rows))
    packet_hex = _xxh128(f"{schema_hex}|{data_hex}".encode())
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


def _expand_compact(rows: list[str], schema: Schema, carry: str, tail: bool, where: str) -> list[str]:
    """Carry fixed values forward (Go's ExpandCompactRows), on escaped fields."""
    n = len(schema.fields)
    fixed = [i for i, f in enumerate(schema.fields) if f.fixed]
    if not fixed or not rows:
        return rows
    state = [""] * n
    if carry:
        init = split_raw(carry)
        for i in fixed:
            if i < len(init) and init[i] != "":
                state[i] = init[i]
    if tail:
        last = split_raw(rows[-1])
        for i in fixed:
            if i >= len(last) or last[i] == "":
                raise IntegrityError(
                    "compact tail row leaves a fixed field empty (tail row must repeat every fixed value)",
                    where=_loc(where, f"Data: row {len(rows)}: field {schema.fields[i].name!r}"),
                )
    out: list[str] = []
    for row in rows:
        vals = split_raw(row)
        if len(vals) < n:
            vals += [""] * (n - len(vals))
        for i in fixed:
            if vals[i] == "":
                vals[i] = state[i]
            else:
                state[i] = vals[i]
        out.append("|".join(vals))
    return out


_EXTRA_TAGS = ("Query", "QueryContext", "PipelineContext", "AlarmDetails")


def decode_packet(data: bytes, *, where: str = "", max_bytes: int = DEFAULT_MAX_BYTES) -> Packet:
    """Parse and verify one packet; rows come back as row lines (never holding a raw LF).

    Checks, each raising the typed error named in TDTP_FORMAT.md: size limit, DTDs,
    envelope, schema types, zstd checksum and size, v1.4 hashes, RecordsInPart,
    PartNumber/TotalParts, compact tail.
    """
    if len(data) > max_bytes:
        raise PacketFormatError(f"packet of {len(data)} bytes exceeds the limit of {max_bytes}", where=where)
    data = _maybe_unzstd(data if isinstance(data, bytes) else bytes(data), max_bytes, where)
    _check_prolog(data, where)
    try:
        root = etree.fromstring(data, _parser(huge=len(data) > 8 * 2**20))
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
    header = _parse_header(header_el, where)
    if header.total_parts > 0 and not 1 <= header.part_number <= header.total_parts:
        raise PacketFormatError(
            f"PartNumber {header.part_number} is outside 1..TotalParts ({header.total_parts})",
            where=_loc(where, "Header"),
        )
    pwhere = _loc(where, f"part {header.part_number}") if header.part_number else where

    schema_el = root.find("Schema")
    data_el = root.find("Data")
    hashed = any(e is not None and e.get("xxh3") for e in (root, schema_el, data_el))
    schema, schema_xml = _parse_schema(schema_el, pwhere, want_xml=hashed)
    extras = {
        tag: etree.tostring(el, encoding="unicode", with_tail=False)
        for tag in _EXTRA_TAGS
        if (el := root.find(tag)) is not None
    }

    if data_el is None:
        raise PacketFormatError("packet has no <Data>", where=pwhere)
    compression = (data_el.get("compression") or "").strip().lower()
    if compression not in ("", "zstd"):
        raise PacketFormatError(f"unsupported compression {compression!r}", where=_loc(pwhere, "Data"))
    texts = _collect_rows(data_el, pwhere)
    if compression:
        rows = _decompress_rows(texts, data_el, header.records_in_part, max_bytes, pwhere)
    else:
        rows = texts
    if header.records_in_part and header.records_in_part != len(rows):
        raise IntegrityError(
            f"RecordsInPart says {header.records_in_part} rows, the part holds {len(rows)}",
            where=_loc(pwhere, "Header"),
        )
    hash_status = (
        _verify_hashes((root, schema_el, data_el), header.message_id, schema_xml, rows, pwhere)
        if hashed
        else "none"
    )
    if not compression:
        rows = [r if "\n" not in r else r.replace("\n", "\\n") for r in rows]
    compact = _GO_BOOL.get((data_el.get("compact") or "false").strip(), False)
    if compact:
        tail = _GO_BOOL.get((data_el.get("tail") or "false").strip(), False)
        rows = _expand_compact(rows, schema, data_el.get("carry") or "", tail, pwhere)
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


def part_checksum(rows: list[str]) -> int:
    """XXH3-64 of the row lines joined by LF: the per-part figure summaries add up."""
    return xxhash.xxh3_64_intdigest("\n".join(rows).encode("utf-8"))


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
    _check_prolog(prefix, where)
    parser = etree.XMLPullParser(
        events=("end",), tag="Header", resolve_entities=False, no_network=True, load_dtd=False
    )
    try:
        parser.feed(prefix)
        for _event, el in parser.read_events():
            return _parse_header(el, where)
    except etree.XMLSyntaxError as exc:
        raise PacketFormatError(f"not well-formed XML: {exc}", where=where) from exc
    raise PacketFormatError(f"no complete <Header> in the first {_PEEK_BYTES} bytes", where=where)


# =========================================================================== ids and times


def export_message_id(prefix: str = "REF") -> str:
    """``<PREFIX>-<year>-<8 lowercase hex>``: the batch id shared by all parts of an export."""
    return f"{prefix}-{datetime.now(UTC).year}-{secrets.token_hex(4)}"


def part_message_id(base: str, n: int) -> str:
    return f"{base}-P{n}"


def utc_timestamp(dt: datetime | None = None) -> str:
    """RFC 3339 in UTC with ``Z`` and a trimmed fraction, as Go writes Timestamp; naive means UTC."""
    if dt is None:
        dt = datetime.now(UTC)
    elif dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if dt.microsecond:
        text += "." + f"{dt.microsecond:06d}".rstrip("0")
    return text + "Z"
