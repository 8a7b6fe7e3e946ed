"""The schema-change lattice (tdtp.sinks.schema_change): what widens, what fits, what is refused."""

from __future__ import annotations

import pytest

from tdtp.packet import DECIMAL, INTEGER, TEXT, Field, Schema
from tdtp.sinks.schema_change import Column, compare


def _one(dialect: str, target_type: str, field: Field) -> tuple[list, list]:
    change = compare(Schema((field,)), [Column(field.name, target_type)], dialect=dialect)
    return change.widened, change.refused


@pytest.mark.parametrize(
    ("target", "field", "widened_to"),
    [
        ("numeric(10,2)", Field("x", DECIMAL, precision=18, scale=4), "numeric(18,4)"),
        ("numeric(10,4)", Field("x", DECIMAL, precision=12, scale=0), "numeric(16,4)"),
        ("numeric(18,4)", Field("x", DECIMAL, precision=10, scale=2), None),
        ("integer", Field("x", INTEGER), "bigint"),
        ("smallint", Field("x", DECIMAL, precision=8, scale=2), "numeric(8,2)"),
        ("bigint", Field("x", DECIMAL, precision=10, scale=2), "numeric(21,2)"),
        ("bigint", Field("x", DECIMAL), "numeric"),
        ("numeric", Field("x", INTEGER), None),
        ("character varying(20)", Field("x", TEXT), "text"),
        ("character varying(20)", Field("x", TEXT, length=50), "varchar(50)"),
        ("character varying(50)", Field("x", TEXT, length=20), None),
        ("text", Field("x", INTEGER), None),
        ("bigint", Field("x", TEXT), "text"),
        ("uuid", Field("x", TEXT), "text"),
        ("real", Field("x", "REAL"), "double precision"),
        ("text", Field("x", "BOOLEAN"), None),
        ("timestamp with time zone", Field("x", "TIMESTAMP"), None),
        ("timestamp without time zone", Field("x", "TIMESTAMP", subtype="timestamptz"), None),
        ("jsonb", Field("x", TEXT, subtype="json"), None),
        ("character(3)", Field("x", TEXT, length=2), None),
    ],
)
def test_postgresql_widens_only_losslessly(target: str, field: Field, widened_to: str | None) -> None:
    widened, refused = _one("postgresql", target, field)
    assert refused == []
    assert widened == ([] if widened_to is None else [["x", target, widened_to]])


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ("boolean", Field("x", INTEGER)),
        ("bigint", Field("x", "REAL")),
        ("timestamp without time zone", Field("x", "DATE")),
        ("character(3)", Field("x", TEXT)),
        ("date", Field("x", TEXT)),
    ],
)
def test_postgresql_refuses_what_would_lose_or_reinterpret_values(target: str, field: Field) -> None:
    widened, refused = _one("postgresql", target, field)
    assert widened == [] and len(refused) == 1 and "no lossless widening" in refused[0]


@pytest.mark.parametrize(
    ("target", "field", "widened_to"),
    [
        ("INTEGER", Field("x", TEXT), "TEXT"),
        ("VARCHAR(5)", Field("x", TEXT), None),
        ("DECIMAL(10,2)", Field("x", DECIMAL, precision=18, scale=4), "DECIMAL_TEXT(18,4)"),
        ("DECIMAL(10,2)", Field("x", DECIMAL, precision=12, scale=4), None),
        ("INTEGER", Field("x", DECIMAL, precision=10, scale=2), "DECIMAL_TEXT(21,2)"),
        ("DECIMAL_TEXT(20,2)", Field("x", INTEGER), None),
        ("TEXT", Field("x", INTEGER), None),
        ("TEXT", Field("x", "BOOLEAN"), None),
        ("TIMESTAMPTZ", Field("x", "TIMESTAMP"), None),
        ("", Field("x", "BOOLEAN"), None),
    ],
)
def test_sqlite_widens_by_what_its_affinity_stores_exactly(target: str, field: Field, widened_to: str | None) -> None:
    widened, refused = _one("sqlite", target, field)
    assert refused == []
    assert widened == ([] if widened_to is None else [["x", target, widened_to]])


def test_policies_and_the_incompatible_changes_of_every_policy() -> None:
    schema = Schema((Field("id", INTEGER, key=True), Field("a", TEXT), Field("b", INTEGER)))
    columns = [Column("id", "bigint", True), Column("a", "text"), Column("c", "text", not_null=True)]
    change = compare(schema, columns, dialect="postgresql", primary_key=["id"])
    assert change.added == [["b", "bigint"]] and change.dropped == [["c", "text"]]
    assert change.refused == ["column c (text): NOT NULL in the target without a default, not in the export"]
    assert change.refusal("t").startswith("schema change refused for 't': column c")
    columns[2] = Column("c", "text", not_null=True, has_default=True)
    frozen = compare(schema, columns, dialect="postgresql", policy="freeze", primary_key=["id"])
    assert frozen.refusal("t") == "schema change refused for 't' (schema: freeze): added b (bigint); dropped c (text)"
    discard = compare(schema, columns, dialect="postgresql", policy="discard_columns", primary_key=["id"])
    assert discard.discarded == [["b", "bigint"]] and discard.added == [] and discard.refusal("t") == ""
    rekeyed = compare(schema, columns, dialect="postgresql", mode="upsert", primary_key=["a"])
    assert "key changed in upsert mode" in rekeyed.refusal("t")
    narrow = compare(Schema((Field("id", TEXT),)), [Column("id", "bigint")], dialect="postgresql", policy="discard_columns")
    assert "discard_columns never changes the target" in narrow.refusal("t")
