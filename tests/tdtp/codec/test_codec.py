"""Packets to bytes and back (docs/format.md §1–4): Go's layout, hand-written Go-style
fixtures, hostile and broken input."""

from __future__ import annotations

import base64
import math
import re
import time as clock
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import xxhash
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tdtp.codec import (
    decode_packet,
    decode_values,
    encode_packet,
    export_message_id,
    part_checksum,
    part_message_id,
    peek_header,
    utc_timestamp,
)
from tdtp.packet import (
    Field,
    Header,
    IntegrityError,
    Packet,
    PacketFormatError,
    RowError,
    Schema,
    SchemaError,
)
from tdtp.values import NULL_SENTINEL, RowEncoder, schema_for_export, split_raw

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def load(name: str) -> tuple[Packet, list[tuple]]:
    packet = decode_packet(fixture(name), where=name)
    return packet, decode_values(packet)


def with_null_marker(rows: list[str], marker: str = "[NULL]") -> list[str]:
    """What the part builder does: swap the sentinel for the declared Null marker."""
    return ["|".join(marker if f == NULL_SENTINEL else f for f in split_raw(r)) for r in rows]


def same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN (float or Decimal)."""
    if isinstance(a, float | Decimal) and isinstance(b, float | Decimal) and a != a and b != b:
        return type(a) is type(b)
    return a == b and type(a) is type(b)


UTC3 = timezone(timedelta(hours=3))

# ============================================================================ round trip

ALL_TYPES = schema_for_export(
    Schema(
        (
            Field("i", "INTEGER", key=True),
            Field("t", "TEXT", length=-1),
            Field("r", "REAL"),
            Field("d", "DECIMAL", precision=38, scale=20),
            Field("b", "BOOLEAN"),
            Field("day", "DATE"),
            Field("ts", "TIMESTAMP", timezone="UTC"),
            Field("naive", "TIMESTAMP"),
            Field("at", "TIMESTAMP", subtype="time"),
            Field("bin", "BLOB", length=-1),
        )
    )
)
_XML_CHARS = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters="".join(map(chr, [*range(0, 9), 11, 12, *range(14, 32)])) + "\ufffe\uffff",
)
_TEXT = st.text(alphabet=st.one_of(st.sampled_from("|\\\n\r\t&<>N]["), _XML_CHARS), max_size=20).filter(
    lambda s: s != "[NULL]"
)
_DECIMAL = st.builds(
    lambda i, s: Decimal(i).scaleb(-s), st.integers(-(10**38) + 1, 10**38 - 1), st.integers(0, 20)
)
_OFFSET = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-14 * 60, 14 * 60))
_AWARE = st.builds(
    lambda dt, tz: dt.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    _OFFSET,
)
ROW = st.tuples(
    st.none() | st.integers(-(2**63), 2**63 - 1),
    st.none() | _TEXT,
    st.none() | st.floats(),
    st.none() | _DECIMAL,
    st.none() | st.booleans(),
    st.none() | st.dates(),
    st.none() | _AWARE,
    st.none() | st.datetimes(),
    st.none() | st.times(),
    st.none() | st.binary(max_size=12),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, max_size=6))
@example(
    [
        (
            -(2**63), "a|b\\c\nd\r\te&<>]]>\\N \u00e9\U0001f600", math.nan,
            Decimal("-12345678901234567890.123456789012345678"), True, date(1, 1, 1),
            datetime(2025, 1, 15, 23, 30, 0, 1, tzinfo=UTC3), datetime(9999, 12, 31, 23, 59, 59, 999999),
            time(0, 0), b"\x00\xff|\\\n",
        ),
        (None, "", math.inf, None, False, None, None, None, time(23, 59, 59, 999999), b""),
        (0, None, -math.inf, Decimal("0E-20"), None, date(9999, 12, 31), None, None, None, None),
    ]
)  # fmt: skip
def test_values_round_trip_through_every_encoding(rows: list[tuple]) -> None:
    enc = RowEncoder(ALL_TYPES)
    lines = with_null_marker([enc.encode(r) for r in rows])
    header = Header("everything", "REF-2026-0badc0de-P1", part_number=1, total_parts=1)
    packet = Packet(header, ALL_TYPES, lines)
    for options in ({}, {"compress": "zstd"}, {"hashes": True}, {"compress": "zstd", "hashes": True}):
        back = decode_packet(encode_packet(packet, **options))
        assert back.rows == lines, options
        assert back.hash_status == ("ok" if options.get("hashes") else "none")
        values = decode_values(back)
        assert len(values) == len(rows)
        for want, got in zip(rows, values, strict=True):
            for a, b in zip(want, got, strict=True):
                assert same(a, b), (options, a, b)


def test_null_is_not_the_empty_string() -> None:
    schema = schema_for_export(Schema((Field("t", "TEXT"), Field("u", "TEXT"))))
    lines = with_null_marker([RowEncoder(schema).encode((None, "")), RowEncoder(schema).encode(("", None))])
    back = decode_packet(encode_packet(Packet(Header("t", "REF-2026-00000001"), schema, lines)))
    assert decode_values(back) == [(None, ""), ("", None)]


def test_sentinel_rows_decode_without_a_marker_swap() -> None:
    schema = Schema((Field("n", "INTEGER"), Field("t", "TEXT")))
    line = RowEncoder(schema).encode((None, None))
    back = decode_packet(encode_packet(Packet(Header("t", "REF-2026-00000001"), schema, [line])))
    assert decode_values(back) == [(None, None)]


# ============================================================================ layout


def _packet(rows: list[str], **header: object) -> Packet:
    schema = schema_for_export(Schema((Field("id", "INTEGER", key=True), Field("name", "TEXT", length=100))))
    h = Header("users", "REF-2026-c4d49ebd-P1", timestamp="2026-02-23T10:41:47.819124576Z", **header)
    return Packet(h, schema, rows)


def test_encode_uses_gos_layout() -> None:
    data = encode_packet(_packet(["1|a &amp <b>\r", "2|[NULL]"], part_number=1, total_parts=3))
    text = data.decode()
    decl, body = text.split("\n", 1)
    assert decl == '<?xml version="1.0" encoding="UTF-8"?>'
    assert "\n" not in body
    assert "/>" not in body
    assert body.startswith(
        '<DataPacket protocol="TDTP" version="1.3.1"><Header><Type>reference</Type>'
        "<TableName>users</TableName><MessageID>REF-2026-c4d49ebd-P1</MessageID>"
        "<PartNumber>1</PartNumber><TotalParts>3</TotalParts><RecordsInPart>2</RecordsInPart>"
        "<Timestamp>2026-02-23T10:41:47.819124576Z</Timestamp></Header><Schema>"
        '<Field name="id" type="INTEGER" key="true"><SpecialValues><Null marker="[NULL]"></Null>'
        '</SpecialValues></Field><Field name="name" type="TEXT" length="100">'
    )
    assert body.endswith("<Data><R>1|a &amp;amp &lt;b&gt;&#xD;</R><R>2|[NULL]</R></Data></DataPacket>")


def test_zero_rows_write_empty_data_and_no_records_in_part() -> None:
    text = encode_packet(_packet([], part_number=1, total_parts=1), compress="zstd").decode()
    assert "<Data></Data>" in text
    assert "RecordsInPart" not in text
    assert decode_packet(text.encode()).rows == []


def test_special_values_written_in_spec_order() -> None:
    schema = schema_for_export(Schema((Field("r", "REAL"),)))
    text = encode_packet(Packet(Header("t", "REF-2026-00000001"), schema, ["INF"])).decode()
    assert (
        '<SpecialValues><Null marker="[NULL]"></Null><Infinity marker="INF"></Infinity>'
        '<NegInfinity marker="-INF"></NegInfinity><NaN marker="NaN"></NaN></SpecialValues>'
    ) in text


def test_compressed_data_is_one_zstd_frame_with_checksum() -> None:
    rows = [f"{i}|name {i}" for i in range(50)]
    text = encode_packet(_packet(rows), compress="zstd").decode()
    m = re.search(r'<Data compression="zstd" checksum="([0-9a-f]{16})"><R>([A-Za-z0-9+/=]+)</R></Data>', text)
    assert m, text[-300:]
    assert xxhash.xxh3_64_hexdigest(m.group(2).encode()) == m.group(1)
    payload = zstandard.ZstdDecompressor().decompress(base64.b64decode(m.group(2)))
    assert payload.decode() == "\n".join(rows)


def test_hashes_follow_section_4() -> None:
    packet = _packet(["1|a", "2|b"])
    text = encode_packet(packet, hashes=True).decode()
    salt = b"REF-2026-c4d49ebd-P1"
    schema_el = re.search(r"<Schema[^>]*>.*</Schema>", text).group(0)
    stored_schema = re.search(r'<Schema xxh3="([0-9a-f]{32})">', schema_el).group(1)
    schema_hex = xxhash.xxh3_128_hexdigest(salt + re.sub(r' xxh3="[0-9a-f]+"', "", schema_el).encode())
    data_hex = xxhash.xxh3_128_hexdigest(salt + b"1|a\n2|b\n")
    packet_hex = xxhash.xxh3_128_hexdigest(f"{schema_hex}|{data_hex}".encode())
    assert stored_schema == schema_hex
    assert f'<Data xxh3="{data_hex}">' in text
    assert text.split("\n", 1)[1].startswith(
        f'<DataPacket protocol="TDTP" version="1.4" xxh3="{packet_hex}">'
    )


def test_rows_with_raw_line_feeds_still_encode() -> None:
    back = decode_packet(encode_packet(_packet(["1|two\nlines", "2|x"])))
    assert back.rows == ["1|two\\nlines", "2|x"]


def test_extras_survive_a_round_trip() -> None:
    packet, _ = load("tdtp_root.xml")
    text = encode_packet(packet).decode()
    assert text.index("<Query") < text.index("<Schema>")
    again = decode_packet(text.encode())
    assert again.extras == packet.extras
    assert 'operator="gt"' in again.extras["Query"]
    assert again.header.in_reply_to == "REQ-2026-87654321"


def test_whole_message_zstd_is_decompressed_first() -> None:
    data = zstandard.ZstdCompressor(level=3).compress(fixture("plain_multitype.xml"))
    assert decode_packet(data).rows == decode_packet(fixture("plain_multitype.xml")).rows
    assert peek_header(data).message_id == "REF-2026-c4d49ebd-P1"


def test_peek_header_reads_no_data() -> None:
    data = fixture("compressed.xml")
    cut = data[: data.index(b"<Data compression") + 30]  # Data truncated: a full decode would fail
    header = peek_header(cut)
    assert (header.table_name, header.part_number, header.total_parts) == ("greek", 2, 3)
    with pytest.raises(PacketFormatError):
        decode_packet(cut)


# ============================================================================ bad input


def _edit(name: str, old: str, new: str) -> bytes:
    raw = fixture(name).decode()
    assert old in raw
    return raw.replace(old, new, 1).encode()


def _recompress(name: str, payload_b64: str) -> bytes:
    raw = fixture(name).decode()
    raw = re.sub(r"<R>.*</R>", f"<R>{payload_b64}</R>", raw)
    return re.sub(
        r'checksum="[0-9a-f]+"', f'checksum="{xxhash.xxh3_64_hexdigest(payload_b64.encode())}"', raw
    ).encode()


BAD_PACKETS = {
    "truncated": (fixture("plain_multitype.xml")[:-40], PacketFormatError, "not well-formed"),
    "records mismatch": (
        _edit("plain_multitype.xml", "<RecordsInPart>3<", "<RecordsInPart>5<"),
        IntegrityError,
        "part 1: Header: RecordsInPart says 5 rows, the part holds 3",
    ),
    "unknown type": (
        _edit("plain_multitype.xml", 'type="REAL"', 'type="MONEY"'),
        SchemaError,
        "Schema: field 'score': unknown type 'MONEY'",
    ),
    "part beyond total": (
        _edit("compressed.xml", "<PartNumber>2<", "<PartNumber>4<"),
        PacketFormatError,
        "PartNumber 4 is outside 1..TotalParts (3)",
    ),
    "wrong protocol": (_edit("tdtp_root.xml", 'protocol="TDTP"', 'protocol="XDTP"'), PacketFormatError, "protocol"),
    "no version": (_edit("tdtp_root.xml", 'TDTP" version="1.0"', 'TDTP" version=""'), PacketFormatError, "no version"),
    "empty field name": (_edit("tdtp_root.xml", 'name="login"', 'name=""'), SchemaError, "empty or missing name"),
    "control char in name": (
        _edit("tdtp_root.xml", 'name="login"', 'name="log&#9;in"'),
        SchemaError,
        "control character",
    ),
    "broken base64": (_recompress("compressed.xml", "!!not*base64!!"), PacketFormatError, "Data: compressed rows are not valid base64"),
    "broken zstd": (
        _recompress("compressed.xml", base64.b64encode(b"\x28\xb5\x2f\xfd" + b"\x00garbage" * 4).decode()),
        PacketFormatError,
        "zstd",
    ),
    "truncated zstd": (
        _recompress(
            "compressed.xml",
            base64.b64encode(
                zstandard.ZstdCompressor(write_content_size=False).compress(b"1|x|2\n" * 500)[:-8]
            ).decode(),
        ),
        PacketFormatError,
        "zstd",
    ),
    "checksum mismatch": (
        re.sub(rb'checksum="[0-9a-f]+"', b'checksum="0123456789abcdef"', fixture("compressed.xml")),
        IntegrityError,
        "part 2: Data: checksum mismatch",
    ),
    "xxh3 data mismatch": (_edit("hashes_v14.xml", "3|@C3|plain", "3|@C3|plain!"), IntegrityError, "xxh3 data hash mismatch"),
    "xxh3 schema mismatch": (_edit("hashes_v14.xml", 'name="city"', 'name="town"'), IntegrityError, "xxh3 schema hash mismatch"),
    "xxh3 incomplete": (
        re.sub(rb'<Data xxh3="[0-9a-f]+">', b"<Data>", fixture("hashes_v14.xml")),
        IntegrityError,
        "no data hash",
    ),
    "compact tail violated": (
        _edit("compact.xml", "<R>us|2025-01-02|4|40.00</R>", "<R>us||4|40.00</R>"),
        IntegrityError,
        "row 4: field 'day': compact tail row",
    ),
    "xxe": (
        b'<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<DataPacket protocol="TDTP" version="1.0"><Header><TableName>&xxe;</TableName></Header></DataPacket>',
        PacketFormatError,
        "DOCTYPE declaration refused",
    ),
    "billion laughs": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><DataPacket protocol="TDTP" version="1.0">&lol3;</DataPacket>',
        PacketFormatError,
        "DOCTYPE declaration refused",
    ),
    "bare entity declaration": (
        b'<!-- sneaky --><!ENTITY x "y"><DataPacket protocol="TDTP" version="1.0"></DataPacket>',
        PacketFormatError,
        "ENTITY declaration refused",
    ),
    "undeclared entity": (
        _edit("tdtp_root.xml", "<R>2|bob</R>", "<R>2|&bob;</R>"),
        PacketFormatError,
        "not well-formed",
    ),
    "utf-16": ("\ufeff".encode("utf-16-le") + fixture("tdtp_root.xml").decode().encode("utf-16-le"), PacketFormatError, "UTF-8"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_PACKETS))
def test_bad_packets_raise_typed_errors_naming_where(case: str) -> None:
    data, error, message = BAD_PACKETS[case]
    with pytest.raises(error) as info:
        decode_packet(data, where="in.xml")
    text = str(info.value)
    assert text.startswith("in.xml: "), text
    assert message in text, text
    assert "\n" not in text


def test_size_limit_is_checked_first() -> None:
    with pytest.raises(PacketFormatError, match="in.xml: packet of 1092 bytes exceeds the limit of 1000"):
        decode_packet(fixture("plain_multitype.xml"), where="in.xml", max_bytes=1000)


def test_zstd_bomb_is_capped() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"A" * 3_000_000)
    with pytest.raises(PacketFormatError, match="exceeds the limit of 1000000"):
        decode_packet(bomb, max_bytes=1_000_000)
    unknown = zstandard.ZstdCompressor(write_content_size=False).compress(b"A" * 3_000_000)
    with pytest.raises(PacketFormatError, match="exceeds the limit of 1000000"):
        decode_packet(unknown, max_bytes=1_000_000)
    payload = base64.b64encode(unknown).decode()
    with pytest.raises(PacketFormatError, match="Data: decompressed data exceeds"):
        decode_packet(_recompress("compressed.xml", payload), max_bytes=1_000_000)


def test_wrong_field_count_names_row() -> None:
    packet = decode_packet(_edit("plain_multitype.xml", "<R>2|path", "<R>2|extra|path"))
    with pytest.raises(RowError, match=r"^part 1: row 2: row has 9 fields, expected 8 \(id, name"):
        decode_values(packet)


def test_value_not_parsing_names_row_field_and_text() -> None:
    packet = decode_packet(_edit("plain_multitype.xml", "|1500.5|", "|15OO.5|"))
    with pytest.raises(RowError, match=r"^part 1: row 1: field 'score': '15OO.5' is not a valid REAL$"):
        decode_values(packet)


@pytest.mark.parametrize("compress", ["", "zstd"])
def test_control_character_refused_on_encode(compress: str) -> None:
    packet = _packet(["1|ok", "2|bad\x01value"], part_number=3, total_parts=4)
    with pytest.raises(
        RowError, match=r"^part 3: row 2: field 'name': value holds a character XML 1.0 cannot"
    ):
        encode_packet(packet, compress=compress)
    with pytest.raises(RowError, match="row 1: field 'name'"):
        encode_packet(_packet(["1|lone \ud800"]))


# ============================================================================ ids, times, checksums


def test_message_ids_and_timestamps() -> None:
    base = export_message_id()
    assert re.fullmatch(rf"REF-{datetime.now(UTC).year}-[0-9a-f]{{8}}", base)
    assert export_message_id("ERR").startswith("ERR-")
    part = part_message_id(base, 12)
    assert part == f"{base}-P12"
    assert Header("t", part).batch_id == base
    assert (
        utc_timestamp(datetime(2025, 1, 15, 13, 30, 0, 528770, tzinfo=UTC3)) == "2025-01-15T10:30:00.52877Z"
    )
    assert utc_timestamp(datetime(2025, 1, 15, 10, 30)) == "2025-01-15T10:30:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z", utc_timestamp())


def test_part_checksum() -> None:
    rows = ["1|a", "2|b"]
    assert part_checksum(rows) == xxhash.xxh3_64_intdigest(b"1|a\n2|b")
    assert part_checksum(rows) != part_checksum(rows[::-1])


def test_time_values_keep_microseconds() -> None:
    schema = Schema((Field("at", "TIMESTAMP", subtype="time"),))
    back = decode_packet(encode_packet(Packet(Header("t", "REF-2026-00000001"), schema, ["23:59:59.999999"])))
    assert decode_values(back) == [(time(23, 59, 59, 999999),)]


# ============================================================================ speed (printed)


def test_timing_of_a_19_mb_part(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints encode/decode times of a ~1.9 MB part; asserts only that it round-trips."""
    schema = schema_for_export(
        Schema(
            (
                Field("id", "INTEGER"),
                Field("email", "TEXT"),
                Field("bal", "DECIMAL"),
                Field("ts", "TIMESTAMP"),
            )
        )
    )
    rows = [
        f"{i}|user{i}@example.com \\| note {i}|{i * 7 % 100000}.25|2025-01-15T10:30:{i % 60:02d}Z"
        for i in range(25_000)
    ]
    packet = Packet(Header("bench", "REF-2026-00000001-P1", part_number=1, total_parts=1), schema, rows)
    timings = {}
    for label, options in (("plain", {}), ("zstd", {"compress": "zstd"})):
        t0 = clock.perf_counter()
        data = encode_packet(packet, **options)
        t1 = clock.perf_counter()
        back = decode_packet(data)
        t2 = clock.perf_counter()
        assert back.rows == rows
        timings[label] = (len(data), (t1 - t0) * 1000, (t2 - t1) * 1000)
    with capsys.disabled():
        for label, (size, enc_ms, dec_ms) in timings.items():
            print(
                f"\n[codec timing] {label}: {size / 1e6:.2f} MB, encode {enc_ms:.1f} ms, decode {dec_ms:.1f} ms"
            )
    assert 1_700_000 < timings["plain"][0] < 2_200_000


def test_encode_refuses_schemas_readers_would_refuse() -> None:
    for name in ("", "bad\x01name"):
        packet = Packet(Header("t", "REF-2026-00000001"), Schema((Field(name, "TEXT"),)), ["x"])
        with pytest.raises(SchemaError, match="name"):
            encode_packet(packet)


def test_dictionary_forces_v14_with_hashes() -> None:
    schema = Schema((Field("city", "TEXT"),), dictionary=(("@C1", "Saint Petersburg"),))
    data = encode_packet(Packet(Header("t", "REF-2026-00000001"), schema, ["@C1", "Oslo"]))
    assert b'version="1.4" xxh3="' in data
    back = decode_packet(data)
    assert back.hash_status == "ok"
    assert decode_values(back) == [("Saint Petersburg",), ("Oslo",)]
