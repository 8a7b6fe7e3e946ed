"""Schema evolution: an export's fields against the target table's columns, and what a policy does.

Every part carries its full schema, so the importer knows how an export differs from
its target before the first row lands.  :func:`compare` says how, as data
(:class:`SchemaChange`): columns the export adds, columns of the target it does not
carry (dropped), columns whose type must widen to take the export's values, columns
left out (``discard_columns``), and what no policy may do (``refused``).

Policies (``tdtp import --schema``, ``schema:`` in the tables file):

- ``evolve`` (default): new columns are added (nullable), types widen where the
  target can hold both the old and the new values exactly; a dropped column stays
  and gets NULLs.
- ``freeze``: any difference refuses the export.
- ``discard_columns``: the target is never changed; the export's columns it lacks
  are left out of the rows, a type it would have to widen is refused.

A widening is lossless by construction: integer types -> bigint -> numeric -> text,
a numeric with more integer digits or scale, varchar(n) -> a longer varchar or text,
real -> double precision, uuid/json -> text.  A column that already takes the values
is no difference: an unbounded text column takes any value as its text, timestamp and
timestamptz take each other's (TDTP timestamps are UTC instants), so do json and jsonb.
Anything else that changed type
(boolean <-> integer, timestamp <-> date, a text column whose values become numbers
under a numeric target ...) would lose or reinterpret values: it is refused under
every policy, as are a changed key in upsert mode and a NOT NULL column the rows do
not carry.

SQLite stores values by affinity, not declared type: a text value needs a
TEXT-affinity column (an INTEGER one turns ``'007'`` into 7), a decimal of more than
15 digits a TEXT-affinity ``DECIMAL_TEXT`` column; a length is never enforced.
So in SQLite ``varchar(20) -> text`` needs nothing, while ``integer -> text``
rebuilds the table (see :mod:`tdtp.importer.evolve`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tdtp.packet import DECIMAL, INTEGER, TEXT, Field, Schema
from tdtp.sinks.ddl import (
    PG_MAX_NUMERIC_PRECISION,
    PG_TEXT_SUBTYPES,
    SQLITE,
    SQLITE_DECIMAL_TEXT,
    SQLITE_EXACT_DECIMAL_DIGITS,
    pg_type,
    sqlite_type,
)

EVOLVE = "evolve"
FREEZE = "freeze"
DISCARD_COLUMNS = "discard_columns"
POLICIES = (EVOLVE, FREEZE, DISCARD_COLUMNS)

#: The words every refusal of an export's schema starts with (status, Dagster and tests find it by them).
REFUSED = "schema change refused"


@dataclass(frozen=True)
class Column:
    """A target column as the catalog reports it."""

    name: str
    type: str
    not_null: bool = False
    has_default: bool = False


@dataclass
class SchemaChange:
    """How one export's schema differs from its target table, and what the policy makes of it.

    ``added`` / ``dropped`` / ``discarded``: ``[name, type]``; ``widened``:
    ``[name, old type, new type]``; ``refused``: one phrase per incompatible change.
    """

    policy: str = EVOLVE
    added: list[list[str]] = field(default_factory=list)
    dropped: list[list[str]] = field(default_factory=list)
    widened: list[list[str]] = field(default_factory=list)
    discarded: list[list[str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.dropped or self.widened or self.discarded or self.refused)

    @property
    def needs_ddl(self) -> bool:
        """The target table itself changes (columns added or retyped)."""
        return bool(self.added or self.widened)

    @property
    def discarded_names(self) -> list[str]:
        return [name for name, _ in self.discarded]

    def describe(self) -> str:
        """``added b (bigint); widened a: integer -> bigint; dropped c (text)``, or ``no change``."""
        bits = [f"added {n} ({t})" for n, t in self.added]
        bits += [f"widened {n}: {old} -> {new}" for n, old, new in self.widened]
        bits += [f"dropped {n} ({t})" for n, t in self.dropped]
        bits += [f"discarded {n} ({t})" for n, t in self.discarded]
        bits += self.refused
        return "; ".join(bits) or "no change"

    def refusal(self, table: str) -> str:
        """One line when the export may not land (incompatible, or frozen and different); "" otherwise."""
        if self.refused:
            return f"{REFUSED} for {table!r}: " + "; ".join(self.refused)
        if self.policy == FREEZE and self.changed:
            return f"{REFUSED} for {table!r} (schema: freeze): {self.describe()}"
        return ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "added": [list(x) for x in self.added],
            "dropped": [list(x) for x in self.dropped],
            "widened": [list(x) for x in self.widened],
            "discarded": [list(x) for x in self.discarded],
            "refused": list(self.refused),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SchemaChange:
        return cls(
            policy=str(doc.get("policy", EVOLVE)),
            added=[list(x) for x in doc.get("added", [])],
            dropped=[list(x) for x in doc.get("dropped", [])],
            widened=[list(x) for x in doc.get("widened", [])],
            discarded=[list(x) for x in doc.get("discarded", [])],
            refused=[str(x) for x in doc.get("refused", [])],
        )


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"unknown schema policy {policy!r}; use one of {', '.join(POLICIES)}")
    return policy


# ------------------------------------------------------------------ fields as data


def fields_doc(schema: Schema) -> list[list[Any]]:
    """The attributes :func:`compare` needs of each field (JSON-ready), to compare again at publish."""
    return [[f.name, f.type, f.length, f.precision, f.scale, f.key, f.subtype, f.timezone] for f in schema.fields]


def schema_from_doc(doc: list[list[Any]]) -> Schema:
    fields = [
        Field(name=n, type=t, length=ln, precision=p, scale=s, key=k, subtype=sub, timezone=tz)
        for n, t, ln, p, s, k, sub, tz in doc
    ]
    return Schema(tuple(fields))


# ---------------------------------------------------------------------- comparing


def natural_type(dialect: str, f: Field) -> str:
    """The column type the importer gives a field of this kind (as when it creates a table)."""
    return sqlite_type(f) if dialect == SQLITE else pg_type(f)


def compare(
    schema: Schema,
    columns: list[Column],
    *,
    dialect: str,
    policy: str = EVOLVE,
    mode: str = "replace",
    primary_key: list[str] | None = None,
) -> SchemaChange:
    """How ``schema`` (an export's fields) differs from ``columns`` (its existing target table)."""
    change = SchemaChange(policy=check_policy(policy))
    have = {c.name: c for c in columns}
    carried = set(schema.names)
    widen = _sqlite_widening if dialect == SQLITE else _pg_widening
    for f in schema.fields:
        natural = natural_type(dialect, f)
        col = have.get(f.name)
        if col is None:
            if policy == DISCARD_COLUMNS:
                change.discarded.append([f.name, natural])
            else:
                change.added.append([f.name, natural])
            continue
        verdict = widen(col.type, f)
        if verdict is None:
            continue
        if verdict.startswith("!"):
            change.refused.append(f"column {f.name}: {col.type} -> {natural}: {verdict[1:]}")
        elif policy == DISCARD_COLUMNS:
            change.refused.append(
                f"column {f.name}: {col.type} -> {natural}: the target would have to widen it to {verdict} "
                "(schema: discard_columns never changes the target)"
            )
        else:
            change.widened.append([f.name, col.type, verdict])
    key = list(primary_key or [])
    for col in columns:
        if col.name in carried:
            continue
        change.dropped.append([col.name, col.type])
        if col.name in key:
            change.refused.append(f"column {col.name} ({col.type}): a key column of the target, not in the export")
        elif col.not_null and not col.has_default:
            change.refused.append(
                f"column {col.name} ({col.type}): NOT NULL in the target without a default, not in the export"
            )
    keys = schema.key_names
    if mode == "upsert" and keys and key and set(keys) != set(key):
        change.refused.append(
            f"key changed in upsert mode: the target's primary key is ({', '.join(key)}), "
            f"the export's key fields are ({', '.join(keys)})"
        )
    return change


# --------------------------------------------------------------- type lattice

_INT_BITS = {"smallint": 16, "int2": 16, "integer": 32, "int": 32, "int4": 32, "bigint": 64, "int8": 64}
_INT_DIGITS = {16: 5, 32: 10, 64: 19}
_PG_ALIASES = {
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
    "bool": "boolean",
    "float4": "real",
    "float8": "double precision",
    "varchar": "character varying",
}
_PARAMS = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


@dataclass(frozen=True)
class _Kind:
    """A column type in the lattice: ``int`` (bits), ``numeric`` (integer digits, scale; -1: any),
    ``float`` (bits), ``text`` (max length, 0: any) or ``other`` (compared by name)."""

    kind: str
    size: int = 0
    scale: int = 0
    name: str = ""


def _pg_kind(typ: str) -> _Kind:
    t = " ".join(typ.strip().lower().split())
    base = t.split("(", 1)[0].strip()
    m = _PARAMS.search(t)
    if base in _INT_BITS:
        return _Kind("int", _INT_BITS[base])
    if base in ("numeric", "decimal"):
        if m is None:
            return _Kind("numeric", -1)
        p, s = int(m.group(1)), int(m.group(2) or 0)
        return _Kind("numeric", p - s, s)
    if base in ("real", "float4"):
        return _Kind("float", 32)
    if base in ("double precision", "float8"):
        return _Kind("float", 64)
    if base == "text":
        return _Kind("text", 0)
    if base in ("character varying", "varchar"):
        return _Kind("text", int(m.group(1)) if m else 0)
    return _Kind("other", name=_PG_ALIASES.get(t, t))


def _digits(k: _Kind) -> tuple[int, int]:
    return (_INT_DIGITS[k.size], 0) if k.kind == "int" else (k.size, k.scale)


def _merged_numeric(a: _Kind, b: _Kind) -> tuple[int, int] | None:
    """(precision, scale) holding both, or None: only an unconstrained numeric does."""
    if a.size < 0 or b.size < 0:
        return None
    (ai, as_), (bi, bs) = _digits(a), _digits(b)
    i, s = max(ai, bi), max(as_, bs)
    return (i + s, s) if i + s <= PG_MAX_NUMERIC_PRECISION else None


def _holds(t: _Kind, n: _Kind) -> bool:
    """A numeric/int target ``t`` holds every value of ``n`` exactly."""
    if t.kind == "numeric" and t.size < 0:
        return True
    if n.kind == "numeric" and n.size < 0:
        return False
    (ti, ts), (ni, ns) = _digits(t), _digits(n)
    return ti >= ni and ts >= ns


_NUMBERS = ("int", "numeric")
# Types that take each other's TDTP text as the same values: TDTP timestamps are UTC instants
# (the publish reads them with TimeZone UTC), json and jsonb both take any JSON text.
_PG_ALIKE = (
    {"timestamp without time zone", "timestamp with time zone"},
    {"json", "jsonb"},
)
_SQLITE_ALIKE = ({"TIMESTAMP", "TIMESTAMPTZ", "DATETIME"},)
_CHAR = re.compile(r"character\((\d+)\)")


def _pg_widening(target_type: str, f: Field) -> str | None:
    """None: the column takes the field's values as they are; a type: widen to it; ``!why``: refused."""
    t, n = _pg_kind(target_type), _pg_kind(pg_type(f))
    if t == n or (t.kind == "text" and t.size == 0):  # an unbounded text column takes any value's text
        return None
    if any(t.name in alike and n.name in alike for alike in _PG_ALIKE):
        return None
    char = _CHAR.fullmatch(t.name)
    if char and f.type == TEXT and 0 < f.length <= int(char.group(1)):
        return None  # char(n) holds what fits (a change of it would trim trailing spaces: refused)
    if t.kind == "int" and n.kind == "int":
        return None if t.size >= n.size else pg_type(f)
    if t.kind in _NUMBERS and n.kind in _NUMBERS:
        if _holds(t, n):
            return None
        merged = _merged_numeric(t, n)
        return "numeric" if merged is None else f"numeric({merged[0]},{merged[1]})"
    if t.kind == "float" and n.kind == "float":
        return None if t.size >= n.size else "double precision"
    if t.kind == "text" and (f.type == TEXT or n.kind in _NUMBERS):
        if t.size == 0 or (n.kind == "text" and 0 < n.size <= t.size):
            return None
        return pg_type(f) if n.kind == "text" and n.size > 0 else "text"
    if f.type == TEXT and (t.kind in _NUMBERS or t.name in PG_TEXT_SUBTYPES or t.name == "jsonb"):
        return "text"
    return "!no lossless widening"


def _sqlite_affinity(declared: str) -> str:
    """SQLite's affinity rules (datatype3.html §3.1), in its order."""
    u = declared.upper()
    if "INT" in u:
        return "INTEGER"
    if "CHAR" in u or "CLOB" in u or "TEXT" in u:
        return "TEXT"
    if "BLOB" in u or not u.strip():
        return "BLOB"
    if "REAL" in u or "FLOA" in u or "DOUB" in u:
        return "REAL"
    return "NUMERIC"


def _sqlite_kind(declared: str) -> _Kind:
    u = declared.strip().upper()
    base = u.split("(", 1)[0].strip()
    m = _PARAMS.search(u)
    if "DECIMAL" in base or "NUMERIC" in base:
        if m is None:
            return _Kind("numeric", -1)
        p, s = int(m.group(1)), int(m.group(2) or 0)
        return _Kind("numeric", p - s, s, name=_sqlite_affinity(u))
    affinity = _sqlite_affinity(u)
    if affinity == "INTEGER" and base not in ("BOOLEAN", "BOOL"):
        return _Kind("int", 64)
    if affinity == "TEXT" and base not in ("DATE", "DATETIME", "TIMESTAMP", "TIMESTAMPTZ", "TIME"):
        return _Kind("text", int(m.group(1)) if m else 0)
    if affinity == "REAL":
        return _Kind("float", 64)
    return _Kind("other", name=base)


def _sqlite_widening(target_type: str, f: Field) -> str | None:
    """As :func:`_pg_widening`, by what SQLite stores exactly (affinity), not by declared type."""
    natural = sqlite_type(f)
    if target_type.strip().upper() == natural.upper() or not target_type.strip():
        return None  # the same, or a column without a declared type: it stores values as they come
    t, n = _sqlite_kind(target_type), _sqlite_kind(natural)
    text_affinity = _sqlite_affinity(target_type) == "TEXT"
    if t.kind == "text" or (t.kind == "numeric" and text_affinity and f.type in (TEXT, INTEGER, DECIMAL)):
        return None  # TEXT affinity keeps text, and numbers as their text, exactly; lengths are not enforced
    if any(t.name in alike and n.name in alike for alike in _SQLITE_ALIKE):
        return None
    if t.kind == "int" and n.kind == "int":
        return None
    if t.kind in _NUMBERS and n.kind in _NUMBERS:
        if t.kind == "numeric" and (t.size < 0 or n.kind == "int"):
            return None  # NUMERIC affinity keeps integers exactly
        if t.kind == "numeric" and n.size >= 0 and sum(_digits(n)) <= SQLITE_EXACT_DECIMAL_DIGITS:
            return None
        merged = _merged_numeric(t, n)
        if merged is None:
            return SQLITE_DECIMAL_TEXT
        return sqlite_type(Field(name=f.name, type=DECIMAL, precision=merged[0], scale=merged[1]))
    if t.kind == "float" and n.kind == "float":
        return None
    if f.type == TEXT and (t.kind in _NUMBERS or t.name in ("UUID", "JSON", "JSONB")):
        return "TEXT"
    return "!no lossless widening"
