"""Hand-written Go-style fixtures (tests/fixtures/) decode to the values Go meant (docs/format.md)."""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import xxhash

from tdtp.codec import (
    encode_packet,
)
from tdtp.values import NO_DATE
from tests.tdtp.codec.test_codec import fixture, load


def test_fixture_plain_multitype() -> None:
    packet, values = load("plain_multitype.xml")
    assert packet.header.records_in_part == 3 and packet.header.batch_id == "REF-2026-c4d49ebd"
    assert values == [
        (1, "john_doe", 1500.5, Decimal("1234567890123456789012345678.0123456789"), True,
         date(1990, 5, 17), datetime(2025, 1, 15, 10, 30, 0, 528770, tzinfo=UTC), b"hello"),
        (2, "path|to|file C:\\dir & <tag>", -0.000001, Decimal("-0.5"), False,
         date(2000, 2, 29), datetime(2025, 1, 15, 14, 30, tzinfo=UTC), None),
        (3, "line one\nline two\rend", 1e21, Decimal("0"), True,
         date(1970, 1, 1), datetime(2025, 6, 1, 9, 0, tzinfo=UTC), b"\x00\x01\x02\xff"),
    ]  # fmt: skip


def test_fixture_raw_linefeed_in_go_fast_path_output() -> None:
    packet, values = load("raw_linefeed.xml")
    assert all("\n" not in r for r in packet.rows)
    assert values == [(1, "first line\nsecond line"), (2, "back\\slash\nand\nescaped")]


def test_fixture_compressed() -> None:
    packet, values = load("compressed.xml")
    assert packet.compression == "zstd"
    assert (packet.header.part_number, packet.header.total_parts) == (2, 3)
    assert values == [(1, "alpha", 10.5), (2, "beta | gamma", -3.0), (3, "дельта\nepsilon", 0.0)]


def test_fixture_special_values() -> None:
    _, values = load("special_values.xml")
    assert values[0] == (1, math.inf, NO_DATE, None)
    assert values[1] == (2, -math.inf, None, "")
    assert values[2][0] == 3 and math.isnan(values[2][1]) and values[2][2:] == (date(2025, 1, 15), "NaN")
    assert values[3] == (4, None, date(2025, 1, 16), "~nil~")


def test_fixture_compact_with_carry_and_tail() -> None:
    packet, values = load("compact.xml")
    assert packet.compact
    assert values == [
        ("eu", date(2025, 1, 1), 1, Decimal("10.00")),
        ("eu", date(2025, 1, 2), 2, Decimal("20.00")),
        ("us", date(2025, 1, 2), 3, Decimal("30.00")),
        ("us", date(2025, 1, 2), 4, Decimal("40.00")),
    ]


def test_fixture_v14_hashes_match_section_4_computed_here() -> None:
    raw = fixture("hashes_v14.xml").decode()
    salt = re.search(r"<MessageID>(.*?)</MessageID>", raw).group(1).encode()
    schema_el = re.search(r"<Schema .*?</Schema>", raw).group(0)
    stored = dict(re.findall(r'<(DataPacket|Schema|Data)\b[^>]*? xxh3="([0-9a-f]{32})"', raw))
    schema_hex = xxhash.xxh3_128_hexdigest(salt + re.sub(r' xxh3="[0-9a-f]+"', "", schema_el).encode())
    rows = [html.unescape(r) for r in re.findall(r"<R>(.*?)</R>", raw)]
    data_hex = xxhash.xxh3_128_hexdigest(salt + "".join(r + "\n" for r in rows).encode())
    packet_hex = xxhash.xxh3_128_hexdigest(f"{schema_hex}|{data_hex}".encode())
    assert stored == {"DataPacket": packet_hex, "Schema": schema_hex, "Data": data_hex}

    packet, values = load("hashes_v14.xml")
    assert packet.hash_status == "ok" and packet.version == "1.4"
    assert packet.schema.names == ["id", "city", 'o\'brien "memo"']
    assert values == [
        (1, "Saint Petersburg", '{"a":1}'),
        (2, "Москва", "[NULL]"),  # no Null marker on that field: a real string
        (3, "@C3", "plain"),  # token not in the dictionary
        (4, "x@C1", "a|b & c"),  # substrings are never replaced
    ]
    # Our writer serializes that schema the way Go does: same hashes from the same content.
    again = encode_packet(packet, hashes=True).decode()
    assert f'<Schema xxh3="{schema_hex}">' in again and f'<Data xxh3="{data_hex}">' in again


def test_fixture_bare_field_and_aliases() -> None:
    packet, values = load("bare_field.xml")
    assert [f.type for f in packet.schema.fields] == [
        "INTEGER",
        "BOOLEAN",
        "TEXT",
        "TIMESTAMP",
        "REAL",
        "INTEGER",
    ]
    assert packet.schema.key_names == ["id"]
    h = packet.header
    assert (h.part_number, h.total_parts, h.records_in_part) == (0, 0, 0)
    assert values == [
        (7, True, "x", datetime(2025, 1, 15, 10, 30, tzinfo=UTC), 2.5, 9),
        (8, False, "", None, None, None),
    ]


def test_fixture_indented_with_bom_comments_cdata() -> None:
    packet, values = load("indented.xml")
    assert packet.header.table_name == "pretty"
    assert values == [(1, "a <b> & c"), (2, "textmore"), (3, "plain & <mixed>")]


def test_fixture_legacy_null_convention() -> None:
    _, values = load("legacy_null.xml")
    assert values == [(None, "", None, None, None), (5, "x", date(2025, 1, 1), b"\x01", 0.5)]


def test_fixture_tdtp_root_unknown_elements_ignored() -> None:
    packet, values = load("tdtp_root.xml")
    assert packet.header.type == "response" and packet.header.sender == "crm"
    assert set(packet.extras) == {"Query"}
    assert values == [(2, "bob")]


