"""Header and Schema as Go's ``encoding/xml`` writes them (docs/format.md §1–2, §4).

The v1.4 schema hash is computed over the ``<Schema>`` element exactly as Go
serializes it, so writers use this layout for the packets they send and readers
rebuild it from a parsed schema to verify a received hash.  Header follows the same
rules (element order, omitted empty elements) so our packets look like Go's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tdtp.packet import Field, Header, Schema, SchemaError, SpecialValues
from tdtp.values import XML_ILLEGAL_RE

NAME_BAD_RE = re.compile(r"[\x00-\x1f\x7f]")

# Go's encoding/xml escaping (EscapeText and attribute values): what the v1.4
# schema hash is computed over, so Header and Schema are written the same way.
_GO_ESCAPES = str.maketrans(
    {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;",
     "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}
)  # fmt: skip


def _go_esc(s: str) -> str:
    return s.translate(_GO_ESCAPES)


def go_attr(name: str, value: str) -> str:
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


def field_xml(f: Field, type_text: str, specials: SpecialValues | None) -> str:
    """One ``<Field>`` exactly as Go marshals it (attribute order, omitempty, no self-closing)."""
    out = [f"<Field{go_attr('name', f.name)}{go_attr('type', type_text)}"]
    if f.length:
        out.append(f' length="{f.length}"')
    if f.precision:
        out.append(f' precision="{f.precision}"')
    if f.scale:
        out.append(f' scale="{f.scale}"')
    if f.key:
        out.append(' key="true"')
    if f.timezone:
        out.append(go_attr("timezone", f.timezone))
    if f.subtype:
        out.append(go_attr("subtype", f.subtype))
    if f.readonly:
        out.append(' readonly="true"')
    if f.fixed:
        out.append(' fixed="true"')
    out.append(">")
    if specials is not None:
        out.append(_specials_xml(specials))
    out.append("</Field>")
    return "".join(out)


def schema_xml(fields_xml: Iterable[str], dictionary: tuple[tuple[str, str], ...], xxh3: str = "") -> str:
    head = f'<Schema xxh3="{xxh3}">' if xxh3 else "<Schema>"
    body = "".join(fields_xml)
    if dictionary:
        entries = "".join(
            f"<Entry{go_attr('short', s)}{go_attr('full', full)}></Entry>" for s, full in dictionary
        )
        body += f"<Dictionary>{entries}</Dictionary>"
    return f"{head}{body}</Schema>"


def check_schema_text(schema: Schema) -> None:
    """Refuse (never replace) what readers would refuse: empty or control-character names,
    attribute texts XML cannot carry."""
    for f in schema.fields:
        where = f"field {f.name!r}"
        if not f.name.strip():
            raise SchemaError("field has an empty name", where=where)
        if NAME_BAD_RE.search(f.name):
            raise SchemaError("field name holds a control character", where=where)
        sv = f.specials
        texts = [f.type, f.timezone, f.subtype]
        texts += [m for m in (sv.null, sv.infinity, sv.neg_infinity, sv.nan, sv.no_date) if m is not None]
        if any(XML_ILLEGAL_RE.search(t) for t in texts):
            raise SchemaError("an attribute holds a character XML 1.0 cannot carry", where=where)


def header_xml(h: Header, records: int, timestamp: str) -> str:
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
