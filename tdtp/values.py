"""Row lines and typed values: the TDTP text of one ``<R>`` and the Python values in it.

A *row line* (see ``tdtp.packet``) is the value-escaped text of a row: values
joined by ``|`` with ``\\``, ``|`` and line feed escaped.  This module converts
between row lines, lists of value texts, and Python values per field type
(TDTP_FORMAT.md §2–3).  It knows nothing about XML; ``tdtp.codec`` does.

NULL inside row lines built by this project's sources is the whole field
``\\N`` (``NULL_SENTINEL``).  Value escaping doubles every real backslash, so no
real string can produce it; the part builder later swaps in the part's declared
Null marker.  Decoders accept it too, so sentinel lines decode without a swap.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final

from tdtp.packet import (
    BLOB,
    BOOLEAN,
    DATE,
    DECIMAL,
    DEFAULT_INF_MARKER,
    DEFAULT_NAN_MARKER,
    DEFAULT_NEG_INF_MARKER,
    DEFAULT_NO_DATE_MARKER,
    DEFAULT_NULL_MARKER,
    INTEGER,
    REAL,
    TEXT,
    TIMESTAMP,
    Field,
    RowError,
    Schema,
)

NULL_SENTINEL: Final = "\\N"


class _NoDate:
    """Type of ``NO_DATE``: TDTP's "no date" special value, distinct from NULL."""

    _instance: _NoDate | None = None

    def __new__(cls) -> _NoDate:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_DATE"

    def __reduce__(self) -> str:  # pickles as the module attribute, so it stays a singleton
        return "NO_DATE"


NO_DATE: Final = _NoDate()

# --------------------------------------------------------------------------- escaping

# Characters XML 1.0 cannot carry at all (TAB, LF, CR are fine), plus lone surrogates.
_XML_ILLEGAL = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
XML_ILLEGAL_RE: Final = re.compile(f"[{_XML_ILLEGAL}]")
# One search answers "does this string need escaping or refusing?" on the hot path.
_NEEDS_WORK_RE = re.compile(f"[\\\\|\n{_XML_ILLEGAL}]")
# Left-to-right scan of a row line: an escape pair, or a separator.
_SCAN_RE = re.compile(r"\\(.)|\|", re.DOTALL)
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def escape_value(s: str) -> str:
    """Value-escape one text (``\\`` → ``\\\\``, ``|`` → ``\\|``, LF → ``\\n``); nothing else."""
    if "\\" in s:
        s = s.replace("\\", "\\\\")
    if "|" in s:
        s = s.replace("|", "\\|")
    if "\n" in s:
        s = s.replace("\n", "\\n")
    return s


def _unescape_pair(m: re.Match[str]) -> str:
    c = m.group(1)
    return "\n" if c == "n" else c


def unescape_value(s: str) -> str:
    """Reverse of ``escape_value`` for one field; a lone trailing backslash stays."""
    if "\\" not in s:
        return s
    return _UNESCAPE_RE.sub(_unescape_pair, s)


def split_raw(line: str) -> list[str]:
    """Split a row line on unescaped ``|`` but keep each field escaped.

    Decoders need the raw field to tell ``NULL_SENTINEL`` from a real ``N``.
    """
    if "\\" not in line:
        return line.split("|")
    out: list[str] = []
    start = 0
    for m in _SCAN_RE.finditer(line):
        if m.group(1) is None:
            out.append(line[start : m.start()])
            start = m.end()
    out.append(line[start:])
    return out


def split_row(line: str) -> list[str]:
    """Split a row line into unescaped value texts (TDTP_FORMAT.md §3 read rules)."""
    if "\\" not in line:
        return line.split("|")
    out: list[str] = []
    buf: list[str] = []
    start = 0
    for m in _SCAN_RE.finditer(line):
        buf.append(line[start : m.start()])
        c = m.group(1)
        if c is None:
            out.append("".join(buf))
            buf = []
        else:
            buf.append("\n" if c == "n" else c)
        start = m.end()
    buf.append(line[start:])
    out.append("".join(buf))
    return out


def join_row(values: Sequence[str]) -> str:
    """Join already-escaped value texts into a row line."""
    return "|".join(values)


# --------------------------------------------------------------------------- rendering


def _where(field: Field) -> str:
    return f"field {field.name!r}"


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _check_text(field: Field, s: str) -> None:
    m = XML_ILLEGAL_RE.search(s)
    if m is not None:
        raise RowError(
            f"value holds character U+{ord(m.group()):04X}, which XML 1.0 cannot carry "
            "(carry the column as BLOB)",
            where=_where(field),
        )


def _float_text(f: float) -> str:
    """Shortest round-trip decimal without exponent, as Go's FormatFloat(f, 'f', -1)."""
    r = repr(f)
    if "e" in r:
        r = format(Decimal(r), "f")
    if r.endswith(".0"):
        r = r[:-2]
    return r


def _datetime_text(dt: datetime) -> str:
    """RFC 3339 with trimmed fraction; aware values are converted to UTC and end in Z."""
    zone = ""
    if dt.utcoffset() is not None:
        dt = dt.astimezone(UTC)
        zone = "Z"
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if dt.microsecond:
        text += "." + f"{dt.microsecond:06d}".rstrip("0")
    return text + zone


def _time_text(t: time) -> str:
    text = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if t.microsecond:
        text += "." + f"{t.microsecond:06d}".rstrip("0")
    off = t.utcoffset()
    if off is not None:
        text += _offset_text(off)
    return text


def _offset_text(off: timedelta) -> str:
    minutes = int(off.total_seconds()) // 60
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


Renderer = Callable[[Any], str]


@lru_cache(maxsize=4096)
def _renderers(field: Field, escaped: bool = True) -> dict[type, Renderer]:
    """Per-field table: exact Python type -> function giving the value text.

    ``escaped`` tables give row-ready (value-escaped) text.  Built once per column so
    the encoder does one dict lookup and one call per value.
    """
    esc: Callable[[str], str] = escape_value if escaped else _identity
    sv = field.specials
    inf = esc(sv.infinity if sv.infinity is not None else DEFAULT_INF_MARKER)
    ninf = esc(sv.neg_infinity if sv.neg_infinity is not None else DEFAULT_NEG_INF_MARKER)
    nan = esc(sv.nan if sv.nan is not None else DEFAULT_NAN_MARKER)
    nodate = esc(sv.no_date if sv.no_date is not None else DEFAULT_NO_DATE_MARKER)

    def r_str(s: str) -> str:
        if _NEEDS_WORK_RE.search(s) is None:
            return s
        _check_text(field, s)
        return esc(s)

    def r_float(f: float) -> str:
        if f != f:
            return nan
        if f == math.inf:
            return inf
        if f == -math.inf:
            return ninf
        return _float_text(f)

    def r_decimal(d: Decimal) -> str:
        if d.is_finite():
            return format(d, "f")
        if d.is_nan():
            return nan
        return inf if d > 0 else ninf

    def r_bool(b: bool) -> str:
        return "1" if b else "0"

    def r_datetime(dt: datetime) -> str:
        try:
            return _datetime_text(dt)
        except OverflowError as exc:
            raise RowError(f"timestamp {dt!r} is out of range in UTC", where=_where(field)) from exc

    def r_bytes(b: bytes | bytearray | memoryview) -> str:
        return base64.b64encode(b).decode("ascii")

    def r_json(v: Any) -> str:
        return r_str(json.dumps(v, ensure_ascii=False))

    return {
        type(None): lambda _v: NULL_SENTINEL,
        str: r_str,
        int: int.__repr__,
        bool: r_bool,
        float: r_float,
        Decimal: r_decimal,
        datetime: r_datetime,
        date: date.isoformat,
        time: _time_text,
        bytes: r_bytes,
        bytearray: r_bytes,
        memoryview: r_bytes,
        uuid.UUID: str,
        dict: r_json,
        list: r_json,
        _NoDate: lambda _v: nodate,
    }


def _identity(s: str) -> str:
    return s


# Order matters: bool before int, datetime before date (subclasses).
_BASES: tuple[type, ...] = (
    type(None), bool, str, int, float, Decimal, datetime, date, time,
    bytes, bytearray, memoryview, uuid.UUID, dict, list, _NoDate,
)  # fmt: skip


def _resolve(table: dict[type, Renderer], field: Field, tp: type) -> Renderer:
    """Find a renderer for a subclass (e.g. IntEnum, a str subclass) and cache it."""
    for base in _BASES:
        if issubclass(tp, base):
            fn = table[base]
            table[tp] = fn
            return fn
    raise RowError(f"cannot write a Python {tp.__name__} value", where=_where(field))


def value_to_text(field: Field, value: Any) -> str:
    """Render one non-NULL Python value as its TDTP text (not value-escaped).

    Refuses characters XML 1.0 cannot carry with a RowError naming the field.
    """
    if value is None:
        raise RowError("NULL has no text of its own; use the field's Null marker", where=_where(field))
    table = _renderers(field, False)
    fn = table.get(type(value)) or _resolve(table, field, type(value))
    return fn(value)


def value_renderer(field: Field) -> Callable[[Any], str]:
    """One Python value of ``field`` -> its row-ready (value-escaped) text; None -> the NULL sentinel."""
    table = _renderers(field)

    def render(value: Any) -> str:
        fn = table.get(type(value)) or _resolve(table, field, type(value))
        return fn(value)

    return render


class RowEncoder:
    """Python rows -> row lines for one schema; NULL becomes ``NULL_SENTINEL``.

    This is the slow path (SQLite/CSV/JSON sources), so each column gets a table of
    renderers keyed by exact Python type, built once.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._fields = schema.fields
        self._tables = [_renderers(f) for f in schema.fields]
        self._n = len(schema.fields)

    def encode(self, row: Sequence[Any]) -> str:
        if len(row) != self._n:
            raise RowError(f"row has {len(row)} values, the schema has {self._n} fields")
        try:
            return "|".join([t[type(v)](v) for t, v in zip(self._tables, row, strict=True)])
        except KeyError:
            pass
        out = []
        for t, f, v in zip(self._tables, self._fields, row, strict=True):
            fn = t.get(type(v)) or _resolve(t, f, type(v))
            out.append(fn(v))
        return "|".join(out)


# --------------------------------------------------------------------------- parsing

_MISS: Final = object()
_BOOL_TEXT = {"1": True, "0": False, "true": True, "false": False, "t": True, "f": False}
_OFFSET_RE = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def _bad(field: Field, text: str, what: str, exc: Exception | None = None) -> RowError:
    detail = f": {exc}" if exc is not None and str(exc) else ""
    return RowError(f"{_short(text)} is not a valid {what}{detail}", where=_where(field))


def _field_zone(field: Field) -> timezone | None:
    """Zone a naive timestamp of this field is in: UTC or a fixed offset; None for Local/none."""
    tz = field.timezone.strip()
    if tz.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = _OFFSET_RE.match(tz)
    if m:
        delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return timezone(-delta if m.group(1) == "-" else delta)
    return None


Parser = Callable[[str], Any]


def _base_parser(field: Field) -> Parser:
    """Text -> value for the field's type, without special values."""
    t = field.type

    if t == INTEGER:

        def p_int(s: str) -> int:
            try:
                return int(s)
            except ValueError as exc:
                raise _bad(field, s, "INTEGER") from exc

        return p_int
    if t == REAL:

        def p_real(s: str) -> float:
            try:
                return float(s)
            except ValueError as exc:
                raise _bad(field, s, "REAL") from exc

        return p_real
    if t == DECIMAL:

        def p_dec(s: str) -> Decimal:
            try:
                return Decimal(s)
            except InvalidOperation as exc:
                raise _bad(field, s, "DECIMAL") from exc

        return p_dec
    if t == BOOLEAN:

        def p_bool(s: str) -> bool:
            v = _BOOL_TEXT.get(s)
            if v is None:
                v = _BOOL_TEXT.get(s.lower())
                if v is None:
                    raise _bad(field, s, "BOOLEAN (1/0/true/false/t/f)")
            return v

        return p_bool
    if t == DATE:

        def p_date(s: str) -> date:
            try:
                if len(s) > 10 and s[10] in "T ":
                    return datetime.fromisoformat(s).date()
                return date.fromisoformat(s)
            except ValueError as exc:
                raise _bad(field, s, "DATE") from exc

        return p_date
    if t == TIMESTAMP and field.subtype.lower() == "time":

        def p_time(s: str) -> time:
            try:
                return time.fromisoformat(s)
            except ValueError as exc:
                raise _bad(field, s, "time of day") from exc

        return p_time
    if t == TIMESTAMP:
        zone = _field_zone(field)

        def p_ts(s: str) -> datetime:
            try:
                dt = datetime.fromisoformat(s)
            except ValueError as exc:
                raise _bad(field, s, "TIMESTAMP") from exc
            if zone is not None and dt.tzinfo is None:
                dt = dt.replace(tzinfo=zone)
            return dt

        return p_ts
    if t == BLOB:

        def p_blob(s: str) -> bytes:
            try:
                return base64.b64decode(s, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _bad(field, s, "BLOB (base64)", exc) from exc

        return p_blob
    if t == TEXT:
        return str
    raise RowError(f"unknown type {t!r}", where=_where(field))


# Value texts already in the form TDTP writes (see the functions below).  ASCII
# digits only: other digits parse, but render as ASCII.
_TIMESTAMP_FORM = re.compile(r"\d{4}-\d{2}-\d{2}([T ])\d{2}:\d{2}:\d{2}(?:\.\d{0,5}[1-9])?Z?", re.ASCII)
_DATE_FORM = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DECIMAL_FORM = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?", re.ASCII)


def timestamp_as_written(text: str) -> str | None:
    """The text TDTP writes for a zone-less field's timestamp ``text``, when it is already
    in that form (RFC 3339 without a zone or in UTC, the fraction trimmed; SQLite's space
    between date and time is taken as the T); None otherwise, impossible dates included.

    Equal to parsing and rendering the value again, without doing either: SQLite sources
    and targets keep such texts as they are.
    """
    m = _TIMESTAMP_FORM.fullmatch(text)
    if m is None:
        return None
    try:
        datetime.fromisoformat(text)  # the calendar date and the time exist
    except ValueError:
        return None
    return text if m.group(1) == "T" else f"{text[:10]}T{text[11:]}"


def date_as_written(text: str) -> str | None:
    """``text`` when it already is a DATE as TDTP writes it (ISO, a real calendar date); else None."""
    if _DATE_FORM.fullmatch(text) is None:
        return None
    try:
        date.fromisoformat(text)
    except ValueError:
        return None
    return text


def decimal_as_written(text: str) -> str | None:
    """``text`` when it already is a DECIMAL as TDTP writes it (plain digits, no exponent,
    no leading zeros); else None."""
    return text if _DECIMAL_FORM.fullmatch(text) is not None else None


def written_form(field: Field) -> Callable[[str], str | None] | None:
    """The ``*_as_written`` check that applies to values of ``field``, if any.

    Only zone-less timestamps qualify: a naive text in a field with a zone means a
    moment that TDTP writes in UTC, so its text changes.
    """
    if field.type == DECIMAL:
        return decimal_as_written
    if field.type == DATE:
        return date_as_written
    if field.type == TIMESTAMP and field.subtype.lower() != "time" and not field.timezone.strip():
        return timestamp_as_written
    return None


def special_values(field: Field) -> dict[str, Any]:
    """Marker text -> value (None for NULL) for this field, from the field's own declaration only."""
    sv = field.specials
    special: dict[str, Any] = {}
    is_dec = field.type == DECIMAL
    if sv.no_date is not None:
        special[sv.no_date] = NO_DATE
    if sv.nan is not None:
        special[sv.nan] = Decimal("NaN") if is_dec else math.nan
    if sv.neg_infinity is not None:
        special[sv.neg_infinity] = Decimal("-Infinity") if is_dec else -math.inf
    if sv.infinity is not None:
        special[sv.infinity] = Decimal("Infinity") if is_dec else math.inf
    if sv.null is not None:
        special[sv.null] = None
    if "" not in special and field.type != TEXT and not (field.type == BLOB and sv.null is not None):
        # Legacy convention (and the only sensible reading): empty is NULL for non-TEXT
        # types.  BLOB with a Null marker keeps "" as the empty byte string.
        special[""] = None
    return special


@lru_cache(maxsize=4096)
def _field_parser(field: Field, tokens: tuple[tuple[str, str], ...] = ()) -> Parser:
    special = special_values(field)
    base = _base_parser(field)
    if not tokens:
        if field.type == TEXT:
            return lambda s: special.get(s, s)

        def parse(s: str) -> Any:
            v = special.get(s, _MISS)
            return base(s) if v is _MISS else v

        return parse

    token_map = dict(tokens)

    def parse_tok(s: str) -> Any:
        v = special.get(s, _MISS)
        if v is not _MISS:
            return v
        return base(token_map.get(s, s))

    return parse_tok


def text_to_value(field: Field, text: str) -> Any:
    """Parse one unescaped value text of ``field`` into its Python value (RowError if bad)."""
    return _field_parser(field)(text)


class RowDecoder:
    """Row lines -> tuples of Python values for one schema (markers, tokens, sentinel)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._parsers = [_field_parser(f, schema.dictionary) for f in schema.fields]
        self._n = len(schema.fields)

    def decode(self, line: str) -> tuple[Any, ...]:
        if "\\" not in line:
            texts = line.split("|")
            if len(texts) != self._n:
                raise self._arity(len(texts))
            return tuple([p(s) for p, s in zip(self._parsers, texts, strict=True)])
        raw = split_raw(line)
        if len(raw) != self._n:
            raise self._arity(len(raw))
        return tuple(
            None if s == NULL_SENTINEL else p(unescape_value(s))
            for p, s in zip(self._parsers, raw, strict=True)
        )

    def _arity(self, got: int) -> RowError:
        return RowError(f"row has {got} fields, expected {self._n} ({', '.join(self.schema.names)})")


def schema_for_export(schema: Schema) -> Schema:
    """The schema our writers declare: Null marker on every field, INF/-INF/NaN on REAL.

    Declaring markers on every field removes the legacy NULL-vs-empty ambiguity for
    any reader, Go's included.
    """
    fields = []
    for f in schema.fields:
        sv = replace(f.specials, null=DEFAULT_NULL_MARKER)
        if f.type == REAL:
            sv = replace(
                sv, infinity=DEFAULT_INF_MARKER, neg_infinity=DEFAULT_NEG_INF_MARKER, nan=DEFAULT_NAN_MARKER
            )
        fields.append(f.with_specials(sv))
    return Schema(tuple(fields), schema.dictionary)


LINES_PER_BLOCK_BYTES = 64 * 1024


def lines_to_blocks(lines: Iterable[str]) -> Iterator[bytes]:
    """Group row lines into UTF-8 blocks of whole lines, each line ending in LF.

    Blocks are what the part builder consumes (see ``tdtp.parts``); sources that
    produce row lines one at a time are adapted here, in ~64 KiB steps so the
    first part is not held back.
    """
    group: list[str] = []
    size = 0
    for line in lines:
        group.append(line)
        size += len(line) + 1
        if size >= LINES_PER_BLOCK_BYTES:
            group.append("")
            yield "\n".join(group).encode("utf-8")
            group, size = [], 0
    if group:
        group.append("")
        yield "\n".join(group).encode("utf-8")
