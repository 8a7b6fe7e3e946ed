"""What one part costs the importer's memory: about its row text, not a string per line.

A part of ~7 MiB of ordinary rows used to cost a worker ~13 MiB of line strings,
~14 MiB more for its checksum, and on SQLite ~40 MB of value tuples, pickled and
unpickled again in the writing process (bench/memory.py: +59 MB of peak RSS from
100k to 1M rows).  These tests hold the decode paths to a small multiple of the
row text with tracemalloc, which counts Python allocations exactly (no timing).
"""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdtp.codec import decode_packet, part_checksum
from tdtp.importer.work import PartJob, copy_chunks, decode_part
from tdtp.packet import DECIMAL, INTEGER, TEXT, TIMESTAMP, Field, RowText, Schema, line_chunks
from tdtp.parts import PartOptions, build_parts
from tdtp.sinks.sqlite import stored_rows
from tdtp.values import RowEncoder, schema_for_export

SCHEMA = schema_for_export(
    Schema(
        (
            Field("id", INTEGER, key=True),
            Field("created_at", TIMESTAMP),
            Field("amount", DECIMAL, precision=12, scale=2),
            Field("status", TEXT),
            Field("note", TEXT),
        )
    )
)


@pytest.fixture(scope="module")
def big_part() -> tuple[bytes, int]:
    """The body of one full part of ordinary rows (8 MiB decoded cap), and its row bytes."""
    enc = RowEncoder(SCHEMA)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = ("new", "paid", "shipped", "delivered", "returned")

    def blocks():
        for base in range(0, 200_000, 5_000):
            rows = (
                (i, start + timedelta(seconds=2 * i), Decimal(i % 100_000) / 100, statuses[i % 5],
                 None if i % 10 == 0 else f"order {i}")
                for i in range(base, base + 5_000)
            )  # fmt: skip
            yield "".join(enc.encode(r) + "\n" for r in rows).encode()

    parts = [
        p
        for p in build_parts(SCHEMA, blocks=blocks(), table="orders", options=PartOptions())
        if hasattr(p, "raw_bytes")
    ]
    part = max(parts, key=lambda p: p.raw_bytes)
    assert part.raw_bytes > 4 * 2**20  # a full part, the size every part of a big table has
    return part.body, part.raw_bytes


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_postgresql_worker_holds_about_the_row_text(big_part) -> None:
    body, raw = big_part
    job = PartJob(body=body, source="p")

    def work() -> None:
        part = decode_part(job, table_override=None, want_values=False)
        for _chunk in copy_chunks(part, "p"):
            pass

    peak = _peak(work)
    assert peak < 2.5 * raw, f"decode + COPY text peaked at {peak / raw:.1f}x the part's row text"


def test_a_sqlite_worker_and_writer_hold_about_the_row_text(big_part) -> None:
    body, raw = big_part
    job = PartJob(body=body, source="p")
    held = {}

    def work() -> None:
        held["part"] = decode_part(job, table_override=None, want_values=True)
        held["part"].lines = []  # as run_job does: the values carry the rows

    peak = _peak(work)
    assert peak < 2.5 * raw, f"decoding to stored values peaked at {peak / raw:.1f}x the part's row text"
    values = held["part"].values
    # What crosses to the writing process is bytes, far smaller than the rows as tuples.
    assert sum(map(len, values.blobs)) < raw / 2
    writer_peak = _peak(lambda: sum(1 for _ in values))
    assert writer_peak < raw / 2, f"the writer's pass peaked at {writer_peak / raw:.1f}x the row text"
    # And they are the same rows the list path stores.
    packet = decode_packet(body)
    assert list(values) == stored_rows(SCHEMA, packet.rows, where="part 1: ")
    assert held["part"].checksum == part_checksum(packet.rows)


lines_strategy = st.lists(
    # Row lines are UTF-8: no lone surrogates (the decoder refuses them before a RowText exists).
    st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=30),
    max_size=60,
)


@given(lines=lines_strategy, size=st.integers(1, 200), rows=st.integers(1, 20))
def test_row_text_splits_into_the_same_lines_in_any_chunking(lines: list[str], size: int, rows: int) -> None:
    data = "\n".join(lines).encode()
    text = RowText(data, len(lines)) if not data else RowText(data)
    assert len(text) == len(lines) and text == lines and list(text) == lines
    assert [line for chunk in text.chunks(size) for line in chunk] == lines
    starts = [(start, chunk) for start, chunk in line_chunks(text, rows)]
    assert [line for _s, chunk in starts for line in chunk] == lines
    assert all(lines[s : s + len(c)] == c for s, c in starts)
    assert part_checksum(text) == part_checksum(lines)
