"""A decoded part's rows converted as joined text (``text_to_copy``) give exactly what the
per-line converter (``lines_to_copy``) gives, and the same errors: the importer uses the
first for compressed parts (tdtp.importer.work.copy_chunks) and the second for lists."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdtp.packet import BOOLEAN, INTEGER, REAL, TEXT, TIMESTAMP, Field, RowError, RowText, Schema, text_chunks
from tdtp.sinks.copy_text import lines_to_copy, text_to_copy
from tdtp.values import schema_for_export

SCHEMA = schema_for_export(
    Schema((Field("id", INTEGER), Field("t", TEXT), Field("r", REAL), Field("b", BOOLEAN), Field("ts", TIMESTAMP)))
)
MARKER = SCHEMA.fields[0].specials.null

# Values as they stand in row text (already escaped), the odd ones included: markers inside
# values, escapes, CR, empty fields, values PostgreSQL reads but TDTP refuses.
INTS = st.sampled_from(["1", "-7", "9223372036854775807", MARKER, "", " 1", "1.5", "x"])
TEXTS = st.sampled_from(["a", "", MARKER, MARKER + "x", "x\\|y", "back\\\\slash", "cr\rx", "\\n", "ünï", "[NULL"])
REALS = st.sampled_from(["1.5", "INF", "-INF", "NaN", "1e3", MARKER, "", "--1"])
BOOLS = st.sampled_from(["1", "0", MARKER, "", "true"])
STAMPS = st.sampled_from(
    ["2025-01-15T14:30:00Z", "2025-01-15T14:30:00.123456Z", "2025-01-15T14:30:00+02:00", MARKER, "", "2025-1-5"]
)
ROW = st.tuples(INTS, TEXTS, REALS, BOOLS, STAMPS).map("|".join)


def _outcome(convert, *args):  # type: ignore[no-untyped-def]
    try:
        return convert(*args)
    except RowError as exc:
        return f"RowError: {exc}"


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=12))
def test_text_to_copy_agrees_with_lines_to_copy(lines: list[str]) -> None:
    expected = _outcome(lines_to_copy, SCHEMA, lines)
    got = _outcome(lambda: text_to_copy(SCHEMA, "\n".join(lines), len(lines)))
    if isinstance(expected, str) and expected.startswith("RowError"):
        assert isinstance(got, str) and got.startswith("RowError")
    else:
        # Row order may differ between the clean and the per-value group, as with lines_to_copy.
        assert sorted(got.splitlines()) == sorted(expected.splitlines())


def test_clean_text_is_converted_whole() -> None:
    lines = ["1|a|1.5|1|2025-01-15T14:30:00Z", f"2|{MARKER}|INF|0|{MARKER}", f"3|cr\rx|{MARKER}|{MARKER}|2025-01-15T14:30:00Z"]
    assert text_to_copy(SCHEMA, "\n".join(lines), 3) == (
        "1|a|1.5|1|2025-01-15T14:30:00Z\n2|\\N|INF|0|\\N\n3|cr\\rx|\\N|\\N|2025-01-15T14:30:00Z\n"
    )


def test_an_invalid_value_is_named_with_its_row() -> None:
    lines = ["1|a|1.5|1|2025-01-15T14:30:00Z", " 2|b|1.5|1|2025-01-15T14:30:00Z"]
    with pytest.raises(RowError, match=r"part 3 row 2.*'id'"):
        text_to_copy(SCHEMA, "\n".join(lines), 2, where="part 3")


@pytest.mark.parametrize("lines", [["a", "b", "c"], ["a", "", "", ""], ["", ""], ["x" * 5000, "y", "z" * 9000]])
def test_row_text_chunks_as_text_hold_every_line_once(lines: list[str]) -> None:
    rows = RowText("\n".join(lines).encode())
    chunks = list(text_chunks(rows, rows=1))
    assert [c[0] for c in chunks] == [sum(c[2] for c in chunks[:i]) for i in range(len(chunks))]
    assert [line for _start, text, count in chunks for line in text.split("\n")] == lines
    assert all(text.count("\n") + 1 == count for _start, text, count in chunks)
    assert list(rows.chunks(4096)) == [text.split("\n") for text, _count in rows.text_chunks(4096)]
