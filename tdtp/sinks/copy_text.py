"""TDTP row lines -> PostgreSQL COPY text (FORMAT text, DELIMITER '|'), a part at a time.

The two formats are almost the same: both escape ``\\``, ``|`` and line feed with a
backslash, and ``\\N`` as a whole field is NULL in COPY as in our row lines.  So a part
is converted with a handful of whole-string operations on the joined text, not per
value (docs/architecture.md, Principles: "move bytes, not Python objects"):

- Null markers that are whole fields become ``\\N`` (one regex over the part; with no
  backslash in the part every ``|`` is a delimiter, so the regex is exact);
- raw carriage returns become ``\\r`` (COPY would read a raw CR as end of line);
- booleans ``1``/``0``, RFC 3339 timestamps with ``Z``, ``INF``/``-INF``/``NaN`` and
  decimals are accepted by PostgreSQL's input functions as they are.

A line takes the per-value path only when it must: it contains a backslash (TDTP's
``\\`` + other character means that character, but COPY gives ``\\b``, ``\\t``,
``\\N``, ``\\.``, octal... meanings of their own; and an escaped pipe right before a
marker is text, not a delimiter), a raw line feed (Go's file export writes them), or
an empty non-TEXT field (NULL in TDTP, an error in COPY); or the schema has BLOB
fields (base64 -> ``\\x`` hex), NoDate or non-standard infinity markers, naive
timestamps in a non-UTC zone, or a v1.4 dictionary (tokens expand to their values).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from functools import lru_cache

from tdtp.packet import BLOB, DECIMAL, REAL, TEXT, TIMESTAMP, Field, RowError, Schema
from tdtp.values import NULL_SENTINEL, split_raw, unescape_value

COPY_NULL = "\\N"
_PG_INF = {"inf", "+inf", "infinity", "+infinity"}
_PG_NEG_INF = {"-inf", "-infinity"}
_UTC_NAMES = {"UTC", "Z", "GMT", "+00:00", "+00"}
_OFFSET_RE = re.compile(r"^[+-]\d{2}:?\d{2}$")
# A zone at the end of a timestamp's time part (after the date, whose '-' would confuse it).
_HAS_ZONE = re.compile(r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)$")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a schema needs beyond copying text through, worked out once per schema."""

    bulk: bool  # whole-string conversion possible for clean lines
    marker_re: re.Pattern[str] | None  # whole-field shared Null marker
    marker: str | None
    empty_null_idx: tuple[int, ...]  # fields that read an empty value as NULL
    empty_probes: tuple[str, ...]  # substrings that betray such an empty field in escape-free text
    empty_at_start: tuple[str, ...]  # ... at the start of the text
    empty_at_end: tuple[str, ...]  # ... at its end
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
    zone_suffix: str  # appended to naive timestamps ("" = leave them)


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
    suffix = ""
    tz = f.timezone.strip()
    if (
        f.type == TIMESTAMP
        and f.subtype.lower() != "time"
        and tz.upper() not in _UTC_NAMES
        and _OFFSET_RE.match(tz)
    ):
        suffix = tz
    return _FieldConv(
        field=f, specials=specials, empty_is_null=empty_is_null, blob=f.type == BLOB, zone_suffix=suffix
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
    if any(c.zone_suffix for c in convs) or schema.dictionary:
        bulk = False
    marker_re = None
    if marker is not None and marker != "":
        # Literal first, then the lookbehind: the engine jumps between candidates
        # (a leading lookbehind is ~10x slower on a 2 MB part).
        lit = re.escape(marker)
        marker_re = re.compile(lit + r"(?<=(?<![^|\n])" + lit + r")(?![^|\n])")
    elif marker == "":
        bulk = False
    empty_idx = tuple(i for i, c in enumerate(convs) if c.empty_is_null)
    probes, at_start, at_end = _empty_probes(empty_idx, len(convs))
    return _Plan(
        bulk=bulk,
        marker_re=marker_re,
        marker=marker,
        empty_null_idx=empty_idx,
        empty_probes=probes,
        empty_at_start=at_start,
        empty_at_end=at_end,
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
    if (
        text.count("\n") == len(lines) - 1
        and "\\" not in text
        and not (plan.empty_null_idx and _has_empty_field(plan, text))
    ):
        return _bulk(plan, text) + "\n"
    clean: list[str] = []
    dirty: list[str] = []
    empty_idx = plan.empty_null_idx
    for i, line in enumerate(lines):  # inline checks: this loop runs once per row
        if (
            "\\" in line
            or "\n" in line
            or (
                empty_idx
                and ("||" in line or line[:1] == "|" or line[-1:] == "|" or not line)
                and _empty_in(line, empty_idx)
            )
        ):
            dirty.append(_convert_line(plan, line, i, where))
        else:
            clean.append(line)
    out = _bulk(plan, "\n".join(clean)) + "\n" if clean else ""
    return out + "".join(d + "\n" for d in dirty)


def _empty_probes(idx: tuple[int, ...], nfields: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The substrings that show an empty field at one of ``idx`` in escape-free lines joined by LF.

    Every '|' is a delimiter there, so an empty middle field is "||", an empty first
    field a line starting with '|', an empty last one a line ending with '|', and the
    only field of a one-field schema an empty line.  Only the probes the schema needs
    are kept: each is a full scan of the part's text, and for a typical schema (an
    integer key first, a text column last) two scans instead of seven is most of the
    conversion's cost saved.  A line with too few fields is left to COPY, which
    refuses it naming the line.
    """
    if not idx:
        return (), (), ()
    if nfields == 1:
        return ("\n\n",), ("\n",), ("\n",)
    probes: list[str] = []
    at_start: list[str] = []
    at_end: list[str] = []
    if any(0 < i < nfields - 1 for i in idx):
        probes.append("||")
    if 0 in idx:
        probes.append("\n|")
        at_start.append("|")
    if nfields - 1 in idx:
        probes.append("|\n")
        at_end.append("|")
    return tuple(probes), tuple(at_start), tuple(at_end)


def _has_empty_field(plan: _Plan, text: str) -> bool:
    """Any empty field that reads as NULL in escape-free lines joined by LF?"""
    if text == "":
        return True  # one row whose only field is empty
    return (
        any(p in text for p in plan.empty_probes)
        or (bool(plan.empty_at_start) and text.startswith(plan.empty_at_start))
        or (bool(plan.empty_at_end) and text.endswith(plan.empty_at_end))
    )


def _empty_in(line: str, idx: tuple[int, ...]) -> bool:
    """Is a field that reads empty as NULL empty on this escape-free line?"""
    values = line.split("|")
    return any(i < len(values) and values[i] == "" for i in idx)


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
            if conv.zone_suffix and len(value) > 10 and not _HAS_ZONE.search(value, 10):
                value += conv.zone_suffix
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
