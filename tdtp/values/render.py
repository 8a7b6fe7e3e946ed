"""Python values -> TDTP value texts, per field type (docs/format.md §2).

Sources that give Python objects (SQLite, CSV, JSON, PostgreSQL's typed fetch) turn
each value into its text here: one renderer per (field, exact Python type), built once
per column and cached, so the encoder does one dict lookup and one call per value.
Texts that XML 1.0 cannot carry are refused with a RowError naming the field.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from tdtp.packet import (
    DECIMAL,
    DEFAULT_INF_MARKER,
    DEFAULT_NAN_MARKER,
    DEFAULT_NEG_INF_MARKER,
    DEFAULT_NO_DATE_MARKER,
    Field,
    RowError,
    Schema,
)
from tdtp.values.rowtext import NEEDS_WORK_RE, NULL_SENTINEL, XML_ILLEGAL_RE, escape_value, field_where
from tdtp.values.specials import NoDate


def _check_text(field: Field, s: str) -> None:
    m = XML_ILLEGAL_RE.search(s)
    if m is not None:
        raise RowError(
            f"value holds character U+{ord(m.group()):04X}, which XML 1.0 cannot carry "
            "(carry the column as BLOB)",
            where=field_where(field),
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
    # TDTP's DECIMAL carries NaN and infinities only as markers its field declares
    # (tdtp/values/valid.py): without one, such a value has no text (None) and is refused.
    exact = field.type == DECIMAL
    inf = _marker(sv.infinity, DEFAULT_INF_MARKER, esc, exact)
    ninf = _marker(sv.neg_infinity, DEFAULT_NEG_INF_MARKER, esc, exact)
    nan = _marker(sv.nan, DEFAULT_NAN_MARKER, esc, exact)
    nodate = esc(sv.no_date if sv.no_date is not None else DEFAULT_NO_DATE_MARKER)

    def r_str(s: str) -> str:
        if NEEDS_WORK_RE.search(s) is None:
            return s
        _check_text(field, s)
        return esc(s)

    def special(value: object, marker: str | None) -> str:
        if marker is None:
            raise RowError(
                f"value {value} cannot travel as DECIMAL: TDTP's DECIMAL has no NaN or infinity "
                "(select the column as double precision: REAL carries them)",
                where=field_where(field),
            )
        return marker

    def r_float(f: float) -> str:
        if f != f:
            return special(f, nan)
        if f == math.inf:
            return special(f, inf)
        if f == -math.inf:
            return special(f, ninf)
        return _float_text(f)

    def r_decimal(d: Decimal) -> str:
        if d.is_finite():
            return format(d, "f")
        if d.is_nan():
            return special(d, nan)
        return special(d, inf) if d > 0 else special(d, ninf)

    def r_bool(b: bool) -> str:
        return "1" if b else "0"

    def r_datetime(dt: datetime) -> str:
        try:
            return _datetime_text(dt)
        except OverflowError as exc:
            raise RowError(f"timestamp {dt!r} is out of range in UTC", where=field_where(field)) from exc

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
        NoDate: lambda _v: nodate,
    }


def _marker(declared: str | None, default: str, esc: Callable[[str], str], exact: bool) -> str | None:
    """A special value's text: the field's marker, else the default one (None for DECIMAL)."""
    if declared is not None:
        return esc(declared)
    return None if exact else esc(default)


def _identity(s: str) -> str:
    return s


# Order matters: bool before int, datetime before date (subclasses).
_BASES: tuple[type, ...] = (
    type(None), bool, str, int, float, Decimal, datetime, date, time,
    bytes, bytearray, memoryview, uuid.UUID, dict, list, NoDate,
)  # fmt: skip


def _resolve(table: dict[type, Renderer], field: Field, tp: type) -> Renderer:
    """Find a renderer for a subclass (e.g. IntEnum, a str subclass) and cache it."""
    for base in _BASES:
        if issubclass(tp, base):
            fn = table[base]
            table[tp] = fn
            return fn
    raise RowError(f"cannot write a Python {tp.__name__} value", where=field_where(field))


def value_to_text(field: Field, value: Any) -> str:
    """Render one non-NULL Python value as its TDTP text (not value-escaped).

    Refuses characters XML 1.0 cannot carry with a RowError naming the field.
    """
    if value is None:
        raise RowError("NULL has no text of its own; use the field's Null marker", where=field_where(field))
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
