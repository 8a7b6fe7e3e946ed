"""What TDTP text is valid, per type: the one definition every reader and target follows.

The decoder (``tdtp.values.parse``), the SQLite sink and the PostgreSQL COPY path
(``tdtp.sinks.copy_check``) all accept and refuse the same value texts because they
all ask this module.  Before it existed each target used its own input functions:
Python's ``int``/``float``/``date.fromisoformat`` accept ``1_000``, Arabic-Indic
digits, ``1e999`` (as infinity) and ISO week dates, PostgreSQL's accept `` 1`` and
``yes`` for a boolean and ``2025-1-5`` for a date (issue 12, item 7).

The rules (docs/format.md §2; special-value markers are matched before any of them):

- INTEGER  ``[+-]?digits``, ASCII digits, within 64 bits (Go's ``ParseInt(s, 10, 64)``).
- REAL     ``[+-]?(digits[.digits]|.digits)[(e|E)[+-]digits]``, ASCII; the value must be
           finite and a non-zero text must not round to zero: infinity and NaN only via
           the field's declared markers.
- DECIMAL  the same syntax, exact; no ``NaN``/``sNaN``/``Infinity`` words.
- BOOLEAN  ``1``, ``0``, ``t``, ``f``, ``true``, ``false``, in any case; nothing around them.
- DATE     ``YYYY-MM-DD``, a real calendar date, optionally followed by a time as in
           TIMESTAMP (the date part is the value).
- TIMESTAMP ``YYYY-MM-DD``, optionally ``T`` or space and ``HH:MM:SS``, a fraction of 1-9
           digits and a zone ``Z``, ``±HH``, ``±HHMM`` or ``±HH:MM``; hours 00-23, minutes
           and seconds 00-59.  Subtype ``time``: ``HH:MM[:SS[.fraction]]``, no zone.

Every function raises ``ValueError`` with the reason; callers turn it into a RowError
naming row and field.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from typing import Final

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
BOOLEAN_TEXT: Final = {"1": True, "0": False, "t": True, "f": False, "true": True, "false": False}

INTEGER_RE: Final = re.compile(r"[+-]?[0-9]+")
NUMBER_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NONZERO_MANTISSA = re.compile(r"[1-9]")
_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_CLOCK = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]"
_FRACTION = r"(?:\.(?P<fraction>[0-9]{1,9}))?"
_ZONE = r"(?P<zone>Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?"
TIMESTAMP_RE: Final = re.compile(rf"{_DATE}(?:[T ]{_CLOCK}:[0-5][0-9]{_FRACTION}{_ZONE})?")
TIME_RE: Final = re.compile(rf"{_CLOCK}(?::[0-5][0-9]{_FRACTION})?")
MAX_FRACTION_DIGITS: Final = 6  # what Python and PostgreSQL keep; longer fractions are cut to it


def integer(text: str) -> int:
    """An INTEGER text's value; ValueError for other syntax or beyond 64 bits."""
    if not (text.isdigit() and text.isascii()) and INTEGER_RE.fullmatch(text) is None:
        raise ValueError("expected ASCII digits with an optional sign")
    value = int(text)
    if len(text) > 18 and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("out of the 64-bit range")
    return value


def real(text: str) -> float:
    """A REAL text's value: finite, not a non-zero text that underflows to zero."""
    if NUMBER_RE.fullmatch(text) is None:
        raise ValueError("expected a decimal number with an optional exponent")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("out of the 64-bit float range (infinity needs the field's marker)")
    if value == 0.0 and _NONZERO_MANTISSA.search(text.partition("e")[0].partition("E")[0]):
        raise ValueError("too small for a 64-bit float (it would read as 0)")
    return value


def decimal(text: str) -> Decimal:
    """A DECIMAL text's exact value (NaN and infinities only via the field's markers)."""
    if NUMBER_RE.fullmatch(text) is None:
        raise ValueError("expected a decimal number with an optional exponent")
    return Decimal(text)


def boolean(text: str) -> bool:
    """A BOOLEAN text's value."""
    v = BOOLEAN_TEXT.get(text)
    if v is None:
        v = BOOLEAN_TEXT.get(text.lower()) if text.isascii() else None
        if v is None:
            raise ValueError("expected 1/0/true/false/t/f")
    return v


def timestamp(text: str) -> datetime:
    """A TIMESTAMP text's value: naive, or aware when the text carries a zone."""
    if TIMESTAMP_RE.fullmatch(text) is None:
        raise ValueError("expected YYYY-MM-DD[THH:MM:SS[.fraction][zone]]")
    return datetime.fromisoformat(text)  # the calendar date exists (ValueError otherwise)


def date_(text: str) -> date:
    """A DATE text's value: the date part of ``YYYY-MM-DD`` or of a timestamp text."""
    if len(text) == 10:
        if TIMESTAMP_RE.fullmatch(text) is None:
            raise ValueError("expected YYYY-MM-DD")
        return date.fromisoformat(text)
    return timestamp(text).date()


def time_of_day(text: str) -> time:
    """A time-of-day text's value (TIMESTAMP subtype ``time``)."""
    if TIME_RE.fullmatch(text) is None:
        raise ValueError("expected HH:MM[:SS[.fraction]]")
    return time.fromisoformat(text)


def long_fraction(text: str) -> bool:
    """Does a valid timestamp or time text carry more fraction digits than are kept?"""
    dot = text.find(".")
    if dot < 0:
        return False
    end = dot + 1
    while end < len(text) and text[end].isdigit():
        end += 1
    return end - dot - 1 > MAX_FRACTION_DIGITS
