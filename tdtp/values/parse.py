"""TDTP value texts -> Python values, per field type, and checks of texts as written.

Readers (the importer, ``decode_values``, the SQLite sink) parse each unescaped value
text by its field: special-value markers first, then the type's own syntax
(docs/format.md §2), dictionary tokens (v1.4) expanded before parsing.  A text that
does not parse raises a RowError naming the field.  The ``*_as_written`` checks say
whether a text already is what TDTP writes, so SQLite paths can keep it without a
parse and a render.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Final

from tdtp.packet import (
    BLOB,
    BOOLEAN,
    DATE,
    DECIMAL,
    INTEGER,
    REAL,
    TEXT,
    TIMESTAMP,
    Field,
    RowError,
    Schema,
    SchemaError,
)
from tdtp.values import valid
from tdtp.values.rowtext import NULL_SENTINEL, field_where, split_raw, unescape_value
from tdtp.values.specials import special_values

_MISS: Final = object()
_OFFSET_RE = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _bad(field: Field, text: str, what: str, exc: Exception | None = None) -> RowError:
    detail = f": {exc}" if exc is not None and str(exc) else ""
    return RowError(f"{_short(text)} is not a valid {what}{detail}", where=field_where(field))


def _field_zone(field: Field) -> timezone | None:
    """Zone a naive timestamp of this field is in: UTC or a fixed offset; None for Local/none."""
    tz = field.timezone.strip()
    if tz.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = _OFFSET_RE.match(tz)
    if m:
        if int(m.group(2)) > 23 or int(m.group(3)) > 59:  # timezone() would raise a bare ValueError
            raise SchemaError(f"timezone {tz!r} is not an offset within ±23:59", where=field_where(field))
        delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return timezone(-delta if m.group(1) == "-" else delta)
    return None


Parser = Callable[[str], Any]


def _checked(field: Field, what: str, check: Callable[[str], Any]) -> Parser:
    """``check`` (a ``tdtp.values.valid`` rule) with its ValueError turned into a RowError."""

    def parse(s: str) -> Any:
        try:
            return check(s)
        except ValueError as exc:  # the reason stays on the chain: the message is the one readers know
            raise _bad(field, s, what) from exc

    return parse


def _base_parser(field: Field) -> Parser:
    """Text -> value for the field's type, without special values (rules: ``tdtp.values.valid``)."""
    t = field.type
    if t == INTEGER:
        return _checked(field, "INTEGER", valid.integer)
    if t == REAL:
        return _checked(field, "REAL", valid.real)
    if t == DECIMAL:
        return _checked(field, "DECIMAL", valid.decimal)
    if t == BOOLEAN:
        return _checked(field, "BOOLEAN (1/0/true/false/t/f)", valid.boolean)
    if t == DATE:
        return _checked(field, "DATE", valid.date_)
    if t == TIMESTAMP and field.subtype.lower() == "time":
        return _checked(field, "time of day", valid.time_of_day)
    if t == TIMESTAMP:
        zone = _field_zone(field)
        if zone is None:
            return _checked(field, "TIMESTAMP", valid.timestamp)

        def zoned(s: str) -> datetime:
            dt = valid.timestamp(s)
            return dt.replace(tzinfo=zone) if dt.tzinfo is None else dt

        return _checked(field, "TIMESTAMP", zoned)
    if t == BLOB:

        def p_blob(s: str) -> bytes:
            try:
                return base64.b64decode(s, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _bad(field, s, "BLOB (base64)", exc) from exc

        return p_blob
    if t == TEXT:
        return str
    raise RowError(f"unknown type {t!r}", where=field_where(field))


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
