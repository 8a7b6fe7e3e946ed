"""Special values: what a field's markers stand for, and the markers our writers declare.

A field's ``<SpecialValues>`` (docs/format.md §2) maps marker texts to NULL, the
infinities, NaN and "no date".  Readers take the markers from the field's own
declaration (``special_values``); writers declare the same set on every field
(``schema_for_export``).  ``NO_DATE`` is the Python value of "no date", which is not
NULL and has no other Python equivalent.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from typing import Any, Final

from tdtp.packet import (
    BLOB,
    DECIMAL,
    DEFAULT_INF_MARKER,
    DEFAULT_NAN_MARKER,
    DEFAULT_NEG_INF_MARKER,
    DEFAULT_NULL_MARKER,
    REAL,
    TEXT,
    Field,
    Schema,
)


class NoDate:
    """Type of ``NO_DATE``: TDTP's "no date" special value, distinct from NULL."""

    _instance: NoDate | None = None

    def __new__(cls) -> NoDate:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_DATE"

    def __reduce__(self) -> str:  # pickles as the module attribute, so it stays a singleton
        return "NO_DATE"


NO_DATE: Final = NoDate()


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
