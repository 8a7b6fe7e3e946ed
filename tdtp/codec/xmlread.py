"""Reading packet XML safely: the hardened parser, and Header and Schema elements.

Packets come from brokers and files we do not control.  lxml runs with DTDs,
entities and network access off, after a cheap prolog check that refuses any
DOCTYPE outright (XXE, billion laughs).  Header and Schema elements become
``tdtp.packet`` values here, each bad attribute raising a typed error that names
where it is (docs/format.md §1–2).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from lxml import etree

from tdtp.codec.goxml import NAME_BAD_RE, field_xml, schema_xml
from tdtp.packet import Field, Header, PacketFormatError, Schema, SchemaError, SpecialValues, canonical_type

_TOKEN_RE = re.compile(r"@[A-Za-z][A-Za-z0-9_]*")
GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
            "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}  # fmt: skip


def loc(where: str, inner: str) -> str:
    """An error location: ``where`` (file, part) then ``inner`` (section, field); either may be empty."""
    return f"{where}: {inner}" if where and inner else where or inner


_tls = threading.local()


def xml_parser(huge: bool) -> etree.XMLParser:
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


_ENCODING_RE = re.compile(rb"""\sencoding\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def check_prolog(data: bytes, where: str) -> None:
    """Refuse DOCTYPE/ENTITY declarations and any encoding but UTF-8 before a parser sees them.

    A declaration can only stand in the prolog, before the root element; scanning
    that much is enough and costs nothing for a 2 MB part.  The XML declaration's
    ``encoding`` must say UTF-8 (any case, as Go's reader wants): the parser would
    otherwise transcode a Latin-1 part into mojibake.  UTF-16/32 byte-order marks
    and NUL bytes at the start (UTF-16/32 without a mark) are refused here; bytes
    that are not UTF-8 inside the document are refused by the parser
    (``parse_error``).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4]:
        raise PacketFormatError("only UTF-8 packets are accepted (UTF-16/32 found)", where=where)
    i = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    if data.startswith(b"<?xml", i) and data[i + 5 : i + 6].isspace():
        end = data.find(b"?>", i, i + 4096)
        m = _ENCODING_RE.search(data, i, end if end >= 0 else i + 4096)
        if m is not None:
            enc = (m.group(1) if m.group(1) is not None else m.group(2)).decode("ascii", "replace")
            if enc.strip().lower() != "utf-8":
                raise PacketFormatError(
                    f"the XML declaration says encoding {enc[:40]!r}: only UTF-8 packets are accepted",
                    where=where,
                )
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


def parse_error(exc: etree.XMLSyntaxError, where: str) -> PacketFormatError:
    """The parser's complaint as one line; bytes that are not UTF-8 say so."""
    text = " ".join((getattr(exc, "msg", None) or str(exc)).split())
    if exc.code == etree.ErrorTypes.ERR_INVALID_ENCODING:
        return PacketFormatError(f"not UTF-8 ({text}): only UTF-8 packets are accepted", where=where)
    return PacketFormatError(f"not well-formed XML: {text}", where=where)


@lru_cache(maxsize=16)
def _levels_below(path: str) -> etree.XPath:
    return etree.XPath(f"boolean({path})")


def deeper_than(el: etree._Element, el_depth: int, max_depth: int, skip_data: bool = False) -> bool:
    """Whether an element below ``el`` (itself at ``el_depth``, the root being 1) lies
    deeper than ``max_depth``; with ``skip_data``, ``el``'s ``<Data>`` child is left out.

    One XPath, evaluated in C: cheap even on a tree of a million rows, which sit at
    depth 3 and stop the walk there.
    """
    k = max_depth + 1 - el_depth
    if k <= 0:
        return True
    steps = ["*[not(self::Data)]" if skip_data else "*"] + ["*"] * (k - 1)
    return bool(_levels_below("/".join(steps))(el))


def _text(el: etree._Element | None) -> str:
    if el is None or el.text is None:
        return ""
    return el.text.strip()


def _exact_text(el: etree._Element | None) -> str:
    """An element's text as written: names keep their spaces (`` lead`` is not ``lead``)."""
    return "" if el is None or el.text is None else el.text


def _int_text(el: etree._Element | None, what: str, where: str) -> int:
    t = _text(el)
    if not t:
        return 0
    try:
        return int(t)
    except ValueError as exc:
        raise PacketFormatError(f"{what} {t[:40]!r} is not a number", where=loc(where, "Header")) from exc


def parse_header(el: etree._Element, where: str) -> Header:
    return Header(
        table_name=_exact_text(el.find("TableName")),
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
    b = GO_BOOL.get(v.strip())
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


def parse_schema(el: etree._Element | None, where: str, want_xml: bool) -> tuple[Schema, str]:
    """Schema plus (when hashes are to be checked) its Go serialization without xxh3."""
    if el is None:
        raise SchemaError("packet has no <Schema>", where=where)
    fields: list[Field] = []
    fields_xml: list[str] = []
    for i, fe in enumerate(el.iterchildren("Field"), start=1):
        name = fe.get("name", "")
        fwhere = loc(where, f"Schema: field {name!r}" if name else f"Schema: field #{i}")
        if not name.strip():
            raise SchemaError("field has an empty or missing name", where=fwhere)
        if NAME_BAD_RE.search(name):
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
            fields_xml.append(field_xml(f, type_text, specials))
    if not fields:
        raise SchemaError("schema has no fields", where=loc(where, "Schema"))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SchemaError(f"field {dup!r} appears twice", where=loc(where, "Schema"))
    entries: list[tuple[str, str]] = []
    dict_el = el.find("Dictionary")
    if dict_el is not None:
        for e in dict_el.iterchildren("Entry"):
            short, full = e.get("short", ""), e.get("full", "")
            if not _TOKEN_RE.fullmatch(short):
                raise SchemaError(
                    f"dictionary token {short[:40]!r} is not @ + letter + letters/digits/_",
                    where=loc(where, "Schema: Dictionary"),
                )
            entries.append((short, full))
    dictionary = tuple(entries)
    xml = schema_xml(fields_xml, dictionary) if want_xml else ""
    return Schema(tuple(fields), dictionary), xml
