"""The TDTP value rules on the PostgreSQL COPY path, checked a column at a time.

``tdtp.sinks.copy_text`` hands most value texts to COPY unparsed, and PostgreSQL's
input functions accept more than TDTP does (`` 1`` and ``yes`` as booleans, ``2025-1-5``
or ``Jan 5 2025`` as dates, ``0x10`` as a float, ``24:00:00`` as a time...).  So every
typed column of the part is checked against ``tdtp.values.valid`` here, the rules the
decoder and the SQLite sink follow, before its text goes to COPY (issue 12, item 7).

Checking one value at a time in Python would cost more than the whole conversion, so a
column is checked in tiers, each taken only when the one before cannot vouch for it:

1. whole-column string operations (the column's values joined by line feeds): the
   characters a number may hold, the exact shape ``9999-99-99T99:99:99Z`` of a
   fixed-width date or timestamp, the set of booleans;
2. one regular expression over the joined column (dates and timestamps of varying width);
3. each distinct value through ``copy_value``, the per-value rule: invalid texts raise a
   RowError naming row, field and text; valid texts COPY would read differently (a
   timestamp with an offset, empty = NULL, a fraction longer than microseconds) mark
   their rows for the per-value path, which converts them.

Tiers 1-2 are sound only because PostgreSQL refuses on its own what they let through
without checking: out-of-range integers and floats, impossible calendar dates, a lone
sign.  Those still fail, with the server's message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from tdtp.packet import BLOB, BOOLEAN, DATE, DECIMAL, INTEGER, REAL, TEXT, TIMESTAMP, Field, RowError
from tdtp.values import text_to_value, valid, value_to_text

_ZERO = timedelta(0)
_NUMBER_CHARS = b"0123456789+-.eE\n"
_WHITESPACE_ETC = (" ", "\t", "\r", "\x0b", "\x0c")
# Tier 2: the forms COPY may get as they are (hours 00-23 and seconds 00-59: PostgreSQL
# also takes 24:00:00 and :60, which TDTP does not).
_CLOCK = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]"
_AS_IS_FORM = {
    DATE: r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    TIMESTAMP: rf"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}(?:[T ]{_CLOCK}:[0-5][0-9](?:\.[0-9]{{1,6}})?Z?)?",
    "time": rf"{_CLOCK}(?::[0-5][0-9](?:\.[0-9]{{1,6}})?)?",
}
# Tier 1: fixed-width shapes ("9" = an ASCII digit) that need no range check beyond the server's.
_SHAPES = {
    DATE: ("9999-99-99",),
    TIMESTAMP: ("9999-99-99T99:99:99Z", "9999-99-99T99:99:99", "9999-99-99 99:99:99", "9999-99-99"),
    "time": ("99:99:99",),
}


def copy_value(field: Field) -> Callable[[str], str] | None:
    """Unescaped value text (not a marker, not empty) -> the text COPY gets, after the TDTP
    check; None for types COPY reads exactly (TEXT) or converts elsewhere (BLOB).

    Returns its argument itself when it goes as it is.  Timestamps with an offset, or
    naive ones in a field with a zone, become UTC with ``Z``: a ``timestamp`` column
    would drop the offset (issue 12, item 6), and ``Z`` means the same instant in a
    ``timestamptz`` column whatever the session's TimeZone.  Fractions beyond
    microseconds are cut as the decoder cuts them (PostgreSQL would round).
    """
    if field.type in (TEXT, BLOB):
        return None
    if field.type == TIMESTAMP:

        def when(s: str) -> str:
            v = text_to_value(field, s)
            if isinstance(v, datetime) and v.utcoffset() not in (None, _ZERO):
                return value_to_text(field, v)
            if isinstance(v, (datetime, time)) and valid.long_fraction(s):
                return value_to_text(field, v)
            return s

        return when

    def checked(s: str) -> str:
        text_to_value(field, s)
        return s

    return checked


@dataclass(frozen=True, slots=True)
class _Column:
    """One column the check looks at: its place, its rule, and what the bulk path handles."""

    index: int
    field: Field
    kind: str  # INTEGER, REAL (also DECIMAL), BOOLEAN, DATE, TIMESTAMP, "time", or BLOB (empties only)
    markers: frozenset[str]  # marker texts the bulk conversion handles itself
    convert: Callable[[str], str] | None
    pattern: re.Pattern[str] | None  # tier 2


def _kind(field: Field) -> str:
    if field.type == DECIMAL:
        return REAL
    if field.type == TIMESTAMP and field.subtype.lower() == "time":
        return "time"
    return field.type


class ColumnCheck:
    """The typed columns of one schema, checked over a part's escape-free row text."""

    def __init__(self, fields: Sequence[Field], markers: Sequence[frozenset[str]], empty_null: set[int]) -> None:
        self.nfields = len(fields)
        cols = []
        for i, (f, m) in enumerate(zip(fields, markers, strict=True)):
            if f.type == TEXT or (f.type == BLOB and i not in empty_null):
                continue
            kind = _kind(f)
            form = _AS_IS_FORM.get(kind)
            pattern = re.compile(rf"(?:{form}\n)*{form}") if form else None
            cols.append(_Column(i, f, kind, m, copy_value(f), pattern))
        self.columns = tuple(cols)

    def flag(self, text: str, nrows: int, where: str, rows: Sequence[int] | None = None) -> set[int]:
        """Rows (0-based, of ``text``) that must take the per-value path; RowError for an invalid value.

        ``text``: ``nrows`` lines joined by LF, no backslash.  A raw LF inside a line
        counts as a separator here, so it shows as a wrong number of values (every row
        then goes per line, where it is a line feed); the only way to hide it, a short
        line elsewhere, leaves rows COPY refuses.  ``rows`` maps the lines to the
        caller's row numbers for error messages.
        """
        if not self.columns or nrows == 0:
            return set()
        flat = text.replace("\n", "|").split("|") if self.nfields > 1 else text.split("\n")
        if len(flat) != nrows * self.nfields:
            return set(range(nrows))  # a line with too many or too few fields: per line, which names it
        flagged: set[int] = set()
        for col in self.columns:
            values = flat[col.index :: self.nfields]
            if not _vouched(col, values):
                flagged |= _per_value(col, values, where, rows)
        return flagged


def _vouched(col: _Column, values: list[str]) -> bool:
    """Tiers 1 and 2: may the whole column go to COPY as it is?

    The plain checks run first, on the column as it is; markers (which never pass them)
    are looked for only when they fail, since each look is a scan of the column.
    """
    if col.kind == BOOLEAN:
        return all(v in valid.BOOLEAN_TEXT or v in col.markers for v in set(values))  # "" is in neither
    joined = "\n".join(values)
    if _plain(col, joined, len(values)):
        return True
    present = [m for m in col.markers if m in joined]
    if not present:
        return False
    stand_in = next((v for v in values if v not in col.markers), None)
    if stand_in is None:
        return True  # markers only
    padded = "\n" + joined + "\n"
    for m in present:
        old, new = "\n" + m + "\n", "\n" + stand_in + "\n"
        padded = padded.replace(old, new).replace(old, new)  # twice: adjacent markers share a LF
    return _plain(col, padded[1:-1], len(values))


def _plain(col: _Column, joined: str, n: int) -> bool:
    if col.kind in (INTEGER, REAL, BLOB):  # variable width: an empty value shows as a doubled LF
        if joined[:1] in ("\n", "") or joined[-1:] == "\n" or "\n\n" in joined:
            return False
        if col.kind == BLOB:
            return True  # BLOB texts are checked where they are converted
        return _numbers(joined)
    if _fixed_shape(joined, n, _SHAPES[col.kind]):
        return True
    return col.pattern is not None and col.pattern.fullmatch(joined) is not None


def _numbers(joined: str) -> bool:
    """Only the characters of a decimal number: PostgreSQL's bigint, float and numeric
    input then take exactly TDTP's syntax (no whitespace, no NaN/Infinity words, no hex
    floats, no ``1_000``); what else those characters can spell (``1.5`` for a bigint,
    ``1e999``, ``--1``) the server refuses itself."""
    return joined.isascii() and not joined.encode("ascii").translate(None, _NUMBER_CHARS)


def _fixed_shape(joined: str, n: int, shapes: tuple[str, ...]) -> bool:
    """Is every value of exactly one of ``shapes`` ("9" = ASCII digit)?  Seconds of 60 and
    the hour 24:00:00, which PostgreSQL takes, are left to the next tier."""
    first = joined[: joined.find("\n")] if n > 1 else joined
    shape = next((s for s in shapes if len(s) == len(first)), None)
    width = len(first) + 1
    if shape is None or len(joined) != n * width - 1 or not joined.isascii():
        return False
    if n > 1 and joined[len(first) :: width] != "\n" * (n - 1):
        return False
    separators = "".join(c for c in shape if c != "9")
    for pos, c in enumerate(shape):
        if c != "9" and joined[pos::width] != c * n:
            return False
    rest = joined.encode("ascii").translate(None, b"0123456789")
    if rest != ((separators + "\n") * n)[:-1].encode("ascii"):
        return False
    if len(shape) >= 19:  # a time of day: 9999-99-99T99:99:99
        seconds = joined[17::width]
        if any(d in seconds for d in "6789") or "24:00:00" in joined:
            return False
    elif shape == "99:99:99" and (any(d in joined[6::width] for d in "6789") or "24:00:00" in joined):
        return False
    return True


def _per_value(col: _Column, values: list[str], where: str, rows: Sequence[int] | None) -> set[int]:
    """Tier 3: each distinct value by the rule; the rows of those COPY cannot take as they are."""
    convert = col.convert
    needs_work: set[str] = set()
    for v in set(values):
        if v in col.markers:
            continue
        if v == "":
            needs_work.add(v)
            continue
        if convert is None:
            continue
        try:
            if convert(v) is not v:
                needs_work.add(v)
        except RowError as exc:
            at = values.index(v)
            row = rows[at] if rows is not None else at
            raise exc.at(f"{where} row {row + 1}".strip()) from None
    if not needs_work:
        return set()
    return {r for r, v in enumerate(values) if v in needs_work}
