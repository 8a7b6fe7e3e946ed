"""Row lines and typed values (docs/format.md §2–3): escaping, splitting, rendering, parsing."""

from __future__ import annotations

import enum
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdtp.packet import Field, RowError, Schema, SpecialValues
from tdtp.parts import resolve_null_lines
from tdtp.values import (
    NO_DATE,
    NULL_SENTINEL,
    RowDecoder,
    RowEncoder,
    escape_value,
    join_row,
    schema_for_export,
    split_raw,
    split_row,
    text_to_value,
    value_to_text,
)

# Text XML 1.0 can carry, biased towards the characters escaping is about.
XML_CHARS = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters="".join(map(chr, [*range(0, 9), 11, 12, *range(14, 32)])) + "\ufffe\uffff",
)
TEXT = st.text(alphabet=st.one_of(st.sampled_from("|\\\nN\r\t&<>"), XML_CHARS), max_size=30)


# ----------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a|b", "a\\|b"),
        ("C:\\dir", "C:\\\\dir"),
        ("one\ntwo", "one\\ntwo"),
        ("tab\tcr\r&<>", "tab\tcr\r&<>"),  # nothing else is value-escaped
        ("\\|\n", "\\\\\\|\\n"),
    ],
)
def test_escape_value(raw: str, escaped: str) -> None:
    assert escape_value(raw) == escaped


@pytest.mark.parametrize(
    ("line", "values"),
    [
        ("1|john|", ["1", "john", ""]),
        (
            "2|path\\|to\\|file|C:\\\\dir|line one\\nline two|",
            ["2", "path|to|file", "C:\\dir", "line one\nline two", ""],
        ),
        ("a\\\\|b", ["a\\", "b"]),  # escaped backslash, then a separator
        ("\\x\\y", ["xy"]),  # backslash + other character -> that character
        ("end\\", ["end\\"]),  # lone trailing backslash stays
        ("", [""]),
    ],
)
def test_split_row_read_rules(line: str, values: list[str]) -> None:
    assert split_row(line) == values


def test_split_raw_keeps_fields_escaped() -> None:
    assert split_raw("a\\|b|\\N|c\\\\") == ["a\\|b", "\\N", "c\\\\"]


@given(st.lists(TEXT, min_size=1, max_size=6))
def test_join_then_split_round_trips(values: list[str]) -> None:
    line = join_row([escape_value(v) for v in values])
    assert split_row(line) == values
    assert "\n" not in line


@given(TEXT)
def test_escape_never_produces_the_null_sentinel(s: str) -> None:
    assert escape_value(s) != NULL_SENTINEL
    assert NULL_SENTINEL not in split_raw(escape_value(s))


# ----------------------------------------------------------------------------- rendering

F_INT = Field("n", "INTEGER")
F_REAL = Field("r", "REAL")
F_DEC = Field("d", "DECIMAL", precision=38, scale=10)
F_BOOL = Field("b", "BOOLEAN")
F_DATE = Field("day", "DATE")
F_TS = Field("ts", "TIMESTAMP")
F_TS_UTC = Field("ts", "TIMESTAMP", timezone="UTC")
F_TIME = Field("at", "TIMESTAMP", subtype="time")
F_BLOB = Field("bin", "BLOB")
F_TEXT = Field("note", "TEXT")


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        (F_INT, -456, "-456"),
        (F_INT, 2**63 - 1, "9223372036854775807"),
        (F_REAL, 1e21, "1000000000000000000000"),
        (F_REAL, 1e-6, "0.000001"),
        (F_REAL, 3.0, "3"),
        (F_REAL, 0.1, "0.1"),
        (F_REAL, -0.0, "-0"),
        (F_REAL, 1.5e-7, "0.00000015"),
        (F_REAL, math.inf, "INF"),
        (F_REAL, -math.inf, "-INF"),
        (F_REAL, math.nan, "NaN"),
        (F_REAL.with_specials(SpecialValues(infinity="+Inf", nan="nan!")), math.inf, "+Inf"),
        (
            F_DEC,
            Decimal("12345678901234567890123456789.012345678"),
            "12345678901234567890123456789.012345678",
        ),
        (F_DEC, Decimal("1E+3"), "1000"),
        (F_DEC, Decimal("-0.00"), "-0.00"),
        (F_BOOL, True, "1"),
        (F_BOOL, False, "0"),
        (F_DATE, date(2025, 1, 15), "2025-01-15"),
        (F_DATE, date(1, 1, 1), "0001-01-01"),
        (F_TS, datetime(2025, 1, 15, 14, 30, 0, 528770, tzinfo=UTC), "2025-01-15T14:30:00.52877Z"),
        (F_TS, datetime(2025, 1, 15, 17, 30, tzinfo=timezone(timedelta(hours=3))), "2025-01-15T14:30:00Z"),
        (F_TS, datetime(2025, 1, 15, 14, 30, 0, 100000), "2025-01-15T14:30:00.1"),
        (F_TIME, time(9, 5, 7), "09:05:07"),
        (F_TIME, time(9, 5, 7, 250), "09:05:07.00025"),
        (F_BLOB, b"\x00\xffhi", "AP9oaQ=="),
        (F_BLOB, memoryview(b"ab"), "YWI="),
        (F_TEXT, "a|b\\c\nd", "a|b\\c\nd"),  # unescaped: escaping is the row's business
        (F_TEXT, uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (F_DATE, NO_DATE, "0000-00-00"),
    ],
)
def test_value_to_text(field: Field, value: object, text: str) -> None:
    assert value_to_text(field, value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_real_text_is_shortest_round_trip_without_exponent(f: float) -> None:
    text = value_to_text(F_REAL, f)
    assert "e" not in text.lower()
    assert float(text) == f
    assert math.copysign(1, float(text)) == math.copysign(1, f)


@pytest.mark.parametrize("bad", ["a\x00b", "bell\x07", "\x1b[0m", "x\ufffe", "lone \ud800"])
def test_control_characters_are_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(RowError, match="field 'note'"):
        value_to_text(F_TEXT, bad)
    with pytest.raises(RowError, match="field 'note'"):
        RowEncoder(Schema((F_INT, F_TEXT))).encode((1, bad))


def test_tab_cr_lf_are_fine() -> None:
    assert RowEncoder(Schema((F_TEXT,))).encode(("a\tb\rc\nd",)) == "a\tb\rc\\nd"


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        (F_INT, "-456", -456),
        (F_REAL, "1e+21", 1e21),
        (F_REAL, "1.5E-7", 1.5e-7),
        (
            F_DEC,
            "1234567890123456789012345678.0123456789",
            Decimal("1234567890123456789012345678.0123456789"),
        ),
        (F_BOOL, "1", True),
        (F_BOOL, "FALSE", False),
        (F_BOOL, "t", True),
        (F_BOOL, "F", False),
        (F_DATE, "2025-01-15", date(2025, 1, 15)),
        (F_TS, "2025-01-15T14:30:00Z", datetime(2025, 1, 15, 14, 30, tzinfo=UTC)),
        (F_TS, "2025-01-15 14:30:00", datetime(2025, 1, 15, 14, 30)),
        (F_TS, "2025-01-15T14:30:00", datetime(2025, 1, 15, 14, 30)),
        (F_TS, "2025-01-15T17:30:00+03:00", datetime(2025, 1, 15, 14, 30, tzinfo=UTC)),
        (F_TS, "2026-02-23T10:41:47.819124576Z", datetime(2026, 2, 23, 10, 41, 47, 819124, tzinfo=UTC)),
        (F_TS_UTC, "2025-01-15 14:30:00", datetime(2025, 1, 15, 14, 30, tzinfo=UTC)),
        (F_TIME, "09:05:07", time(9, 5, 7)),
        (F_TIME, "09:05:07.5", time(9, 5, 7, 500000)),
        (F_BLOB, "AP9oaQ==", b"\x00\xffhi"),
        (F_TEXT, "a|b", "a|b"),
    ],
)
def test_text_to_value(field: Field, text: str, value: object) -> None:
    got = text_to_value(field, text)
    assert got == value
    if isinstance(value, datetime):
        assert (got.tzinfo is None) == (value.tzinfo is None)


def test_naive_timestamp_in_a_utc_field_is_aware_utc() -> None:
    got = text_to_value(F_TS_UTC, "2025-01-15T14:30:00")
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_special_markers_come_from_the_field_not_constants() -> None:
    declared = F_REAL.with_specials(
        SpecialValues(null="~nil~", infinity="+Inf", neg_infinity="-Inf", nan="not-a-number")
    )
    assert text_to_value(declared, "+Inf") == math.inf
    assert text_to_value(declared, "-Inf") == -math.inf
    assert math.isnan(text_to_value(declared, "not-a-number"))
    assert text_to_value(declared, "~nil~") is None
    with pytest.raises(RowError, match="'not-a-number'"):
        text_to_value(F_REAL, "not-a-number")  # not declared on this field: just a bad REAL
    # "[NULL]" means NULL only where declared
    assert text_to_value(F_TEXT, "[NULL]") == "[NULL]"
    assert text_to_value(F_TEXT.with_specials(SpecialValues(null="[NULL]")), "[NULL]") is None


def test_no_date_marker() -> None:
    field = F_DATE.with_specials(SpecialValues(null="[NULL]", no_date="0000-00-00"))
    assert text_to_value(field, "0000-00-00") is NO_DATE
    assert text_to_value(field, "[NULL]") is None
    with pytest.raises(RowError, match="field 'day'"):
        text_to_value(F_DATE, "0000-00-00")


def test_legacy_null_convention_without_marker() -> None:
    assert text_to_value(F_INT, "") is None
    assert text_to_value(F_DATE, "") is None
    assert text_to_value(F_BLOB, "") is None
    assert text_to_value(F_TEXT, "") == ""
    # with a declared marker an empty BLOB is the empty byte string
    assert text_to_value(F_BLOB.with_specials(SpecialValues(null="[NULL]")), "") == b""


@pytest.mark.parametrize(
    ("field", "text"),
    [
        (F_INT, "12.5"),
        (F_REAL, "abc"),
        (F_DEC, "1,5"),
        (F_BOOL, "yes"),
        (F_DATE, "2025-13-01"),
        (F_TS, "yesterday"),
        (F_TIME, "25:00:00"),
        (F_BLOB, "abc"),
        (F_BLOB, "a b="),
    ],
)
def test_bad_text_raises_row_error_naming_field_and_text(field: Field, text: str) -> None:
    with pytest.raises(RowError) as info:
        text_to_value(field, text)
    msg = str(info.value)
    assert f"field {field.name!r}" in msg
    assert repr(text) in msg
    assert "\n" not in msg


def test_bad_text_is_truncated_in_the_message() -> None:
    with pytest.raises(RowError) as info:
        text_to_value(F_INT, "x" * 500)
    assert len(str(info.value)) < 200


# ----------------------------------------------------------------------------- rows

SCHEMA = Schema((F_INT, F_TEXT, F_REAL, F_DATE))


def test_row_encoder_writes_sentinel_for_null_and_escapes() -> None:
    enc = RowEncoder(SCHEMA)
    assert enc.encode((1, "a|b", 2.5, date(2025, 1, 2))) == "1|a\\|b|2.5|2025-01-02"
    assert enc.encode((None, None, None, None)) == "\\N|\\N|\\N|\\N"
    assert enc.encode((1, "\\N", None, None)) == "1|\\\\N|\\N|\\N"


def test_row_encoder_refuses_wrong_arity_and_unknown_types() -> None:
    enc = RowEncoder(SCHEMA)
    with pytest.raises(RowError, match="3 values, the schema has 4"):
        enc.encode((1, "a", 2.5))
    with pytest.raises(RowError, match="field 'note'.*object"):
        enc.encode((1, object(), 1.0, None))


def test_row_encoder_handles_subclasses() -> None:
    class Color(enum.IntEnum):
        RED = 7

    class Name(str):
        pass

    enc = RowEncoder(SCHEMA)
    assert enc.encode((Color.RED, Name("x|y"), 1, None)) == "7|x\\|y|1|\\N"


def test_row_decoder_sentinel_tokens_and_arity() -> None:
    schema = Schema((F_INT, F_TEXT, F_TEXT), dictionary=(("@W3", "Saint Petersburg"),))
    dec = RowDecoder(schema)
    assert dec.decode("\\N|\\\\N|@W3") == (None, "\\N", "Saint Petersburg")
    assert dec.decode("1|x@W3|@W4") == (1, "x@W3", "@W4")
    with pytest.raises(RowError, match="row has 2 fields, expected 3"):
        dec.decode("1|2")
    with pytest.raises(RowError, match="row has 4 fields, expected 3"):
        dec.decode("1|a\\|b|c|d")


def test_schema_for_export_declares_markers() -> None:
    exported = schema_for_export(Schema((F_INT, F_REAL, F_TEXT)))
    assert [f.specials.null for f in exported.fields] == ["[NULL]"] * 3
    real = exported.fields[1].specials
    assert (real.infinity, real.neg_infinity, real.nan) == ("INF", "-INF", "NaN")
    assert exported.fields[0].specials.infinity is None
    assert exported.names == ["n", "r", "note"]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.integers(-(2**63), 2**63 - 1),
            st.none() | TEXT,
            st.none() | st.floats(),
            st.none() | st.dates(),
        ),
        max_size=5,
    )
)
def test_encoder_decoder_round_trip(rows: list[tuple]) -> None:
    schema = schema_for_export(SCHEMA)
    enc = RowEncoder(schema)
    for row in rows:
        # As the part builder does: the NULL marker is one no value of the part spells.
        (line,), resolved = resolve_null_lines([enc.encode(row)], schema)
        back = RowDecoder(resolved).decode(line)
        for a, b in zip(row, back, strict=True):
            if isinstance(a, float) and math.isnan(a):
                assert isinstance(b, float) and math.isnan(b)
            else:
                assert a == b and type(a) is type(b)
