"""TDTP row lines -> PostgreSQL COPY text (FORMAT text, DELIMITER '|'), a part at a time.

The two formats are almost the same: both escape ``\\``, ``|`` and line feed with a
backslash, and ``\\N`` as a whole field is NULL in COPY as in our row lines.  So a part
is converted with a handful of whole-string operations on the joined text, not per
value (docs/architecture.md, Principles: "move bytes, not Python objects"):

- Null markers that are whole fields become ``\\N`` (one regex over the part; with no
  backslash in the part every ``|`` is a delimiter, so the regex is exact);
- raw carriage returns become ``\\r`` (COPY would read a raw CR as end of line);
- every typed column is checked against the TDTP value rules first
  (``tdtp.sinks.copy_check``, a column at a time): PostgreSQL's input functions accept
  more than TDTP (`` 1``, ``yes``, ``2025-1-5``...), and the same texts must be refused
  here as by the decoder and the SQLite sink.  Texts that pass (booleans ``1``/``0``,
  RFC 3339 timestamps in UTC, ``INF``/``-INF``/``NaN``, decimals) go as they are.

A line takes the per-value path only when it must: it contains a backslash (TDTP's
``\\`` + other character means that character, but COPY gives ``\\b``, ``\\t``,
``\\N``, ``\\.``, octal... meanings of their own; and an escaped pipe right before a
marker is text, not a delimiter), a raw line feed (Go's file export writes them), or
the check flags a value COPY would read differently: an empty non-TEXT field (NULL in
TDTP, an error in COPY), a timestamp with an offset (a ``timestamp`` column would drop
it: it is sent in UTC), a fraction beyond microseconds; or the schema has BLOB
fields (base64 -> ``\\x`` hex), NoDate or non-standard infinity markers, naive
timestamps in a non-UTC zone, or a v1.4 dictionary (tokens expand to their values).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from tdtp.packet import BLOB, DECIMAL, REAL, TEXT, TIMESTAMP, Field, RowError, Schema
from tdtp.sinks.copy_check import ColumnCheck, copy_value
from tdtp.values import NULL_SENTINEL, split_raw, unescape_value

COPY_NULL = "\\N"
_PG_INF = {"inf", "+inf", "infinity", "+infinity"}
_PG_NEG_INF = {"-inf", "-infinity"}
_UTC_NAMES = {"UTC", "Z", "GMT", "+00:00", "+00"}
_OFFSET_RE = re.compile(r"^[+-]\d{2}:?\d{2}$")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a schema needs beyond copying text through, worked out once per schema."""

    bulk: bool  # whole-string conversion possible for clean lines
    marker_re: re.Pattern[str] | None  # whole-field shared Null marker
    marker: str | None
    check: ColumnCheck  # the TDTP value rules (and empty = NULL) over a clean group's columns
    blob_idx: tuple[int, ...]
    convs: tuple[_FieldConv, ...]  # per-value converters (the slow path)
    needs_utc_session: bool  # naive timestamps meant as UTC
    tokens: dict[str, str]  # v1.4 schema dictionary: a whole value equal to a token is its full value


@dataclass(frozen=True, slots=True)
class _FieldConv:
    field: Field
    specials: dict[str, str]  # unescaped value -> COPY text
    empty_is_null: bool
    blob: bool
    convert: Callable[[str], str] | None  # checks a value text; returns what COPY gets


def _field_conv(f: Field) -> _FieldConv:
    sv = f.specials
    specials: dict[str, str] = {}
    if sv.no_date is not None:
        specials[sv.no_date] = COPY_NULL  # no column type has "no date"; NULL is the nearest
    if sv.nan is not None:
        specials[sv.nan] = "NaN"
    if sv.neg_infinity is not None:
        specials[sv.neg_infinity] = "-Infinity"
    if sv.infinity is not None:
        specials[sv.infinity] = "Infinity"
    if sv.null is not None:
        specials[sv.null] = COPY_NULL
    empty_is_null = "" not in specials and f.type != TEXT and not (f.type == BLOB and sv.null is not None)
    return _FieldConv(
        field=f, specials=specials, empty_is_null=empty_is_null, blob=f.type == BLOB, convert=copy_value(f)
    )


@lru_cache(maxsize=256)
def plan_for(schema: Schema) -> _Plan:
    convs = tuple(_field_conv(f) for f in schema.fields)
    markers = {f.specials.null for f in schema.fields}
    # One marker shared by every field (or none at all, the legacy form) allows the
    # whole-string path; fields that disagree would need per-column replacement.
    marker = next(iter(markers)) if len(markers) == 1 else None
    bulk = len(markers) == 1 and (marker is None or not any(c in marker for c in "|\\\n\r"))
    for f in schema.fields:
        sv = f.specials
        if sv.no_date is not None:
            bulk = False
        if f.type in (REAL, DECIMAL):
            if sv.infinity is not None and sv.infinity.lower() not in _PG_INF:
                bulk = False
            if sv.neg_infinity is not None and sv.neg_infinity.lower() not in _PG_NEG_INF:
                bulk = False
            if sv.nan is not None and sv.nan.lower() != "nan":
                bulk = False
        elif sv.infinity is not None or sv.neg_infinity is not None or sv.nan is not None:
            bulk = False
    if any(_zoned_naive(f) for f in schema.fields) or schema.dictionary:
        bulk = False
    marker_re = None
    if marker is not None and marker != "":
        # Literal first, then the lookbehind: the engine jumps between candidates
        # (a leading lookbehind is ~10x slower on a 2 MB part).
        lit = re.escape(marker)
        marker_re = re.compile(lit + r"(?<=(?<![^|\n])" + lit + r")(?![^|\n])")
    elif marker == "":
        bulk = False
    bulk_markers = [frozenset(c.specials) if bulk else frozenset() for c in convs]
    empty_null = {i for i, c in enumerate(convs) if c.empty_is_null}
    return _Plan(
        bulk=bulk,
        marker_re=marker_re,
        marker=marker,
        check=ColumnCheck(schema.fields, bulk_markers, empty_null),
        blob_idx=tuple(i for i, f in enumerate(schema.fields) if f.type == BLOB),
        convs=convs,
        needs_utc_session=any(
            f.type == TIMESTAMP and f.subtype.lower() != "time" and f.timezone.strip().upper() in _UTC_NAMES
            for f in schema.fields
        ),
        tokens=dict(schema.dictionary),
    )


def needs_utc_session(schema: Schema) -> bool:
    """True when naive timestamps in these lines mean UTC: load them with TimeZone=UTC."""
    return plan_for(schema).needs_utc_session


def lines_to_copy(schema: Schema, lines: list[str], *, where: str = "") -> str:
    """COPY text (each row ending in LF) for a part's row lines.

    ``where`` (e.g. ``"part 3"``) prefixes the row location of errors.  Row order is
    kept within the clean and the per-value groups, not across them (a table is a set).
    """
    if not lines:
        return ""
    plan = plan_for(schema)
    if not plan.bulk:
        return "".join(_convert_line(plan, line, i, where) + "\n" for i, line in enumerate(lines))
    text = "\n".join(lines)
    rows: list[int] | None = None  # the clean group's row numbers, when not all rows
    dirty: list[int] = []
    if "\\" in text or (not plan.check.columns and text.count("\n") != len(lines) - 1):
        rows = []
        for i, line in enumerate(lines):  # inline checks: this loop runs once per row
            if "\\" in line or "\n" in line:
                dirty.append(i)
            else:
                rows.append(i)
        text = "\n".join([lines[i] for i in rows])
    nclean = len(lines) - len(dirty)
    flagged = plan.check.flag(text, nclean, where, rows)
    if flagged:
        clean_idx = rows if rows is not None else range(len(lines))
        dirty += [clean_idx[k] for k in flagged]
        keep = [clean_idx[k] for k in range(nclean) if k not in flagged]
        text = "\n".join([lines[i] for i in keep])
        nclean = len(keep)
    out = _bulk(plan, text) + "\n" if nclean else ""
    return out + "".join(_convert_line(plan, lines[i], i, where) + "\n" for i in sorted(dirty))


def text_to_copy(schema: Schema, text: str, nrows: int, *, where: str = "") -> str:
    """:func:`lines_to_copy` for ``nrows`` row lines already joined by LF (none holding a raw LF).

    A decoded part's rows are one text (:class:`tdtp.packet.RowText`); the usual
    chunk, with no backslash and every value as COPY takes it, is checked and
    converted as that text, never split into a string per line.  Any other chunk
    takes :func:`lines_to_copy`.
    """
    if not nrows:
        return ""
    plan = plan_for(schema)
    if plan.bulk and "\\" not in text and not plan.check.flag(text, nrows, where):
        return _bulk(plan, text) + "\n"
    return lines_to_copy(schema, text.split("\n"), where=where)


def _zoned_naive(f: Field) -> bool:
    """A TIMESTAMP field whose naive texts are in a zone other than UTC: converted per value."""
    tz = f.timezone.strip()
    return (
        f.type == TIMESTAMP
        and f.subtype.lower() != "time"
        and tz.upper() not in _UTC_NAMES
        and _OFFSET_RE.match(tz) is not None
    )


def _bulk(plan: _Plan, text: str) -> str:
    """Escape-free lines joined by LF -> COPY text (without the final LF)."""
    if "\r" in text:
        text = text.replace("\r", "\\r")
    if plan.marker_re is not None and plan.marker is not None and plan.marker in text:
        text = plan.marker_re.sub(lambda _m: COPY_NULL, text)
    if plan.blob_idx:
        rows = text.split("\n")
        for r, line in enumerate(rows):
            vals = line.split("|")
            for i in plan.blob_idx:
                if i < len(vals) and vals[i] != COPY_NULL:
                    vals[i] = _blob_hex(plan.convs[i].field, vals[i], r)
            rows[r] = "|".join(vals)
        text = "\n".join(rows)
    return text


def _convert_line(plan: _Plan, line: str, index: int, where: str) -> str:
    raw = split_raw(line)
    if len(raw) != len(plan.convs):
        loc = f"{where} row {index + 1}".strip()
        raise RowError(f"row has {len(raw)} fields, expected {len(plan.convs)}", where=loc)
    out = []
    for conv, field_text in zip(plan.convs, raw, strict=True):
        if field_text == NULL_SENTINEL:
            out.append(COPY_NULL)
            continue
        value = unescape_value(field_text)
        special = conv.specials.get(value)
        if special is not None:
            out.append(special)
            continue
        if plan.tokens:
            value = plan.tokens.get(value, value)
        if value == "" and conv.empty_is_null:
            out.append(COPY_NULL)
        elif conv.blob:
            out.append(_blob_hex(conv.field, value, index, where))
        else:
            if conv.convert is not None:
                try:
                    value = conv.convert(value)
                except RowError as exc:
                    raise exc.at(f"{where} row {index + 1}".strip()) from None
            out.append(_copy_escape(value))
    return "|".join(out)


def _copy_escape(value: str) -> str:
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "|" in value:
        value = value.replace("|", "\\|")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    return value


def _blob_hex(field: Field, value: str, index: int, where: str = "") -> str:
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        loc = f"{where} row {index + 1} field {field.name!r}".strip()
        raise RowError(f"{value[:40]!r} is not valid base64 for a BLOB: {exc}", where=loc) from exc
    return "\\\\x" + data.hex()
