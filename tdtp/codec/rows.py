"""The rows of a ``<Data>`` section: row lines to XML text and back (docs/format.md §3).

Writing keeps rows as bytes: one scan refuses characters XML 1.0 cannot carry (with a
RowError naming part, row and field), then byte replacements XML-escape the LF-joined
rows.  Reading collects the ``<R>`` texts (or the decompressed rows) and expands the
compact format's carried values.  Rows stay *row lines* throughout (see
``tdtp.packet``); values are ``tdtp.values``' business.
"""

from __future__ import annotations

from lxml import etree

from tdtp.codec.limits import DecodeLimits, exceeded
from tdtp.codec.xmlread import deeper_than
from tdtp.codec.zstd import unpack_rows
from tdtp.packet import IntegrityError, Packet, PacketFormatError, RowError, RowText, Schema
from tdtp.values import XML_ILLEGAL_RE, split_raw, unescape_value

# Bytes XML 1.0 cannot carry (UTF-8 encoded rows; U+FFFE/U+FFFF checked separately).
_ILLEGAL_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32)])
_MARK_ILLEGAL = bytes.maketrans(_ILLEGAL_BYTES, b"\x00" * len(_ILLEGAL_BYTES))
_NONCHARS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")


def rows_bytes(packet: Packet, where: str) -> bytes:
    """Rows joined by LF as UTF-8, refusing what XML (and hence Go) cannot carry."""
    text = "\n".join(packet.rows)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _illegal_row_error(packet, where, text.count("\n", 0, exc.start)) from exc
    check_row_bytes(data, packet, where)
    return data


def check_row_bytes(data: bytes, packet: Packet, where: str) -> None:
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


def xml_escape_rows(data: bytes) -> bytes:
    """XML-escape LF-joined row bytes for ``<R>`` text (``&``, ``<``, ``>``, CR as ``&#xD;``)."""
    if b"&" in data:
        data = data.replace(b"&", b"&amp;")
    if b"<" in data:
        data = data.replace(b"<", b"&lt;")
    if b">" in data:
        data = data.replace(b">", b"&gt;")
    if b"\r" in data:
        data = data.replace(b"\r", b"&#xD;")
    return data


_COUNT_R_CHILDREN = etree.XPath("count(R/*)")  # C-level; ElementPath's find("R/*") costs 15x more
_COUNT_GRANDCHILDREN = etree.XPath("count(*/*)")


def collect_rows(data_el: etree._Element, where: str, max_depth: int) -> list[str]:
    """The texts of the ``<R>`` children; ``where`` names the Data section in errors.

    ``max_depth`` (``DecodeLimits``) applies to whatever else ``<Data>`` holds; one
    count of grandchildren, as cheap as the ``<R>`` check alone, tells that there is
    nothing below the rows to look at.
    """
    if _COUNT_GRANDCHILDREN(data_el):
        if _COUNT_R_CHILDREN(data_el):
            raise PacketFormatError("an <R> element holds child elements", where=where)
        if deeper_than(data_el, 2, max_depth):
            raise exceeded("element nesting", "max_depth", max_depth, where)
    return [r.text or "" for r in data_el.iterchildren("R")]


def decompressed_rows(
    texts: list[str],
    data_el: etree._Element,
    records: int,
    limits: DecodeLimits,
    where: str,
    *,
    lazy: bool = False,
) -> tuple[list[str] | RowText, int]:
    """The row lines of a compressed Data section (its one ``<R>`` text in ``texts``), and
    the length of their text.

    Decompression stops past ``max_decoded_bytes``; the split stops past ``max_rows``
    (``maxsplit``: a part of 32 MiB of line feeds must not become 32 million strings
    first), whatever RecordsInPart says.  ``lazy`` keeps the decompressed bytes as a
    :class:`RowText` (counted, UTF-8 checked, not split): the importer's form.
    """
    if not texts:
        return [], 0
    if len(texts) != 1:
        raise PacketFormatError(f"compressed Data must hold exactly one <R>, found {len(texts)}", where=where)
    checksum = (data_el.get("checksum") or "").strip().lower()
    raw = unpack_rows(texts[0].strip(), checksum, limits.max_decoded_bytes, where)
    if lazy:
        return _row_text(raw, records, limits, where), len(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PacketFormatError(
            f"decompressed rows are not UTF-8 ({exc}): only UTF-8 packets are accepted", where=where
        ) from exc
    del raw
    if not text:
        # One row whose whole line is empty compresses to nothing; RecordsInPart tells.
        return ([""] if records == 1 else []), 0
    rows = text.split("\n", limits.max_rows)
    if len(rows) > limits.max_rows:
        raise exceeded("row count", "max_rows", limits.max_rows, where)
    return rows, len(text)


def _row_text(raw: bytes, records: int, limits: DecodeLimits, where: str) -> RowText:
    """Decompressed rows as a RowText, checked as ``decompressed_rows`` checks the split."""
    if not raw.isascii():
        try:
            raw.decode("utf-8")  # checked once here; chunks decode again as they are read
        except UnicodeDecodeError as exc:
            raise PacketFormatError(
                f"decompressed rows are not UTF-8 ({exc}): only UTF-8 packets are accepted", where=where
            ) from exc
    if not raw:
        return RowText(b"", 1 if records == 1 else 0)
    count = raw.count(b"\n") + 1
    if count > limits.max_rows:
        raise exceeded("row count", "max_rows", limits.max_rows, where)
    return RowText(raw, count)


def expand_compact(
    rows: list[str], schema: Schema, carry: str, tail: bool, where: str, max_bytes: int
) -> list[str]:
    """Carry fixed values forward (Go's ExpandCompactRows), on escaped fields; ``where`` names Data.

    Expansion can multiply a part's size (one long carried value repeated in every
    row), so the expanded rows are held to ``max_bytes`` (``max_decoded_bytes``) too.
    """
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
                    where=f"{where}: row {len(rows)}: field {schema.fields[i].name!r}",
                )
    out: list[str] = []
    total = 0
    for row in rows:
        vals = split_raw(row)
        if len(vals) < n:
            vals += [""] * (n - len(vals))
        for i in fixed:
            if vals[i] == "":
                vals[i] = state[i]
            else:
                state[i] = vals[i]
        line = "|".join(vals)
        total += len(line) + 1
        if total > max_bytes:
            raise exceeded("expanded compact rows", "max_decoded_bytes", max_bytes, where)
        out.append(line)
    return out
