"""Hostile parts stop at the decoder (issue 12, the decoder's cases): bombs refused in
bounded memory, every limit of ``DecodeLimits``, typed errors for bad field
attributes, UTF-8 only, and ``require_hashes``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from tdtp.codec import DecodeLimits, decode_packet, decode_values, encode_packet
from tdtp.packet import (
    Field,
    Header,
    IntegrityError,
    LimitExceeded,
    Packet,
    PacketFormatError,
    Schema,
    SchemaError,
)
from tdtp.values import schema_for_export, text_to_value
from tests.fuzz.bombs import rle_frame, rows_frame, with_rows_payload

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = schema_for_export(Schema((Field("id", "INTEGER"), Field("note", "TEXT"))))
MiB = 2**20


def part(rows: list[str], *, compress: str = "zstd", hashes: bool = False, schema: Schema = SCHEMA) -> bytes:
    header = Header("t", "REF-2026-0000b0b0-P1", part_number=1, total_parts=1)
    return encode_packet(Packet(header, schema, rows), compress=compress, hashes=hashes)


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


# ============================================================================ 1: bombs


def _decode_in_child(data: bytes) -> dict:
    """Decode ``data`` in a fresh process; its error and peak RSS (the whole process)."""
    # ru_maxrss survives exec, so a child forked from a big test process would report the
    # parent's size: reset the high-water mark (clear_refs 5) and read VmHWM instead.
    script = (
        "import json, re, sys\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "from tdtp.codec import decode_packet\n"
        "data = sys.stdin.buffer.read()\n"
        "try:\n"
        "    decode_packet(data, where='bomb.xml')\n"
        "    out = {'error': None, 'message': ''}\n"
        "except Exception as exc:\n"
        "    out = {'error': type(exc).__name__, 'message': str(exc)}\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
        "out['peak_mb'] = int(hwm) / 1024\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=data, capture_output=True, cwd=ROOT, timeout=120, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize("content_size", [False, True], ids=["size unstated", "size stated"])
def test_9kb_part_claiming_200_mib_is_refused_in_bounded_memory(content_size: bool) -> None:
    frame = rle_frame([(b"a", 200 * MiB)], content_size=content_size)
    bomb = with_rows_payload(part(["1|x"]), frame)  # no RecordsInPart: nothing tells the size
    assert len(bomb) < 10_000
    result = _decode_in_child(bomb)
    assert result["error"] == "LimitExceeded", result
    assert result["message"].startswith("bomb.xml: part 1: Data: decompressed data")
    assert "exceeds the limit of 33554432 bytes (DecodeLimits.max_decoded_bytes = 32 MiB" in result["message"]
    assert result["peak_mb"] < 150, result  # the interpreter itself is ~25 MB of it


def test_row_bomb_is_refused_whatever_records_in_part_says() -> None:
    frame = rle_frame([(b"\n", 2 * MiB)])  # 2,097,153 empty rows in 0.1 KB
    for records in (None, 2 * MiB + 1):
        bomb = with_rows_payload(part(["1|x"]), frame, records=records)
        with pytest.raises(LimitExceeded, match=r"row count exceeds the limit of 1000000 rows") as info:
            decode_packet(bomb, where="rows.xml")
        assert info.value.limit == "max_rows" and info.value.value == 1_000_000
        assert one_line(info.value).startswith("rows.xml: part 1: Data: ")
    one_field = schema_for_export(Schema((Field("note", "TEXT"),)))
    ok = with_rows_payload(part(["x"], schema=one_field), frame)
    assert len(decode_packet(ok, limits=DecodeLimits(max_rows=3 * MiB)).rows) == 2 * MiB + 1


def test_valid_rows_past_the_decoded_cap_are_refused_and_a_raised_cap_reads_them() -> None:
    frame = rows_frame(b"1|" + b"x" * 99, 400_000)  # 40 MB of valid rows
    bomb = with_rows_payload(part(["1|x"]), frame)
    with pytest.raises(LimitExceeded, match="max_decoded_bytes"):
        decode_packet(bomb)
    packet = decode_packet(bomb, limits=DecodeLimits(max_decoded_bytes=64 * MiB))
    assert len(packet.rows) == 400_000


def test_frame_without_a_size_decodes_and_truncation_is_caught() -> None:
    rows = [f"{i}|note {i}" for i in range(5000)]
    frame = zstandard.ZstdCompressor(write_content_size=False).compress("\n".join(rows).encode())
    data = with_rows_payload(part(["1|x"]), frame)
    assert decode_packet(data).rows == rows
    with pytest.raises(PacketFormatError, match="zstd"):
        decode_packet(with_rows_payload(part(["1|x"]), frame[:-10]))


def test_whole_message_bomb_is_refused_at_the_xml_cap() -> None:
    with pytest.raises(
        LimitExceeded, match=r"decompressed message exceeds .*DecodeLimits\.max_xml_bytes = 64 MiB"
    ):
        decode_packet(rle_frame([(b" ", 100 * MiB)]))


# ============================================================================ each limit


def test_every_limit_is_configurable_and_named() -> None:
    rows = [f"{i}|{'v' * 50}" for i in range(100)]
    cases = {
        "max_xml_bytes": (part(rows, compress=""), DecodeLimits(max_xml_bytes=1000)),
        "max_decoded_bytes": (part(rows, compress=""), DecodeLimits(max_decoded_bytes=1000)),
        "max_rows": (part(rows, compress=""), DecodeLimits(max_rows=99)),
        "max_value_bytes": (part(rows), DecodeLimits(max_value_bytes=49)),
        "max_xml_tags": (part(rows, compress=""), DecodeLimits(max_xml_tags=150)),
        "max_depth": (part(rows).replace(b"<Header>", b"<Header>" + b"<a>" * 8 + b"</a>" * 8), DecodeLimits(max_depth=9)),
    }  # fmt: skip
    for limit, (data, limits) in cases.items():
        assert decode_packet(data).rows == rows, limit  # the defaults take it
        with pytest.raises(LimitExceeded) as info:
            decode_packet(data, where="p.xml", limits=limits)
        text = one_line(info.value)
        assert info.value.limit == limit, text
        assert f"(DecodeLimits.{limit}" in text and "raise it" in text, text
        assert text.startswith("p.xml: "), text


def test_value_limit_names_row_and_field() -> None:
    data = part(["1|short", "2|" + "y" * 2000])
    with pytest.raises(
        LimitExceeded, match=r"^p: part 1: Data: row 2: field 'note': value exceeds the limit of 1000"
    ):
        decode_packet(data, where="p", limits=DecodeLimits(max_value_bytes=1000))


def test_depth_of_data_and_of_other_sections() -> None:
    deep = b"<a>" * 70 + b"</a>" * 70
    for place in (b"<Header>", b"<Schema>", b"<Data>"):
        data = part(["1|x"], compress="").replace(place, place + deep, 1)
        with pytest.raises(LimitExceeded, match="element nesting exceeds the limit of 64 levels"):
            decode_packet(data)
        decode_packet(data, limits=DecodeLimits(max_depth=100))


def test_compact_expansion_is_held_to_the_decoded_cap() -> None:
    fixed = Schema((Field("big", "TEXT", fixed=True), Field("n", "INTEGER")))
    data = part([f"{'z' * 1000}|1", *(f"|{i}" for i in range(2, 3000))], compress="", schema=fixed)
    data = data.replace(b"<Data>", b'<Data compact="true">', 1)
    assert len(decode_packet(data).rows) == 2999
    with pytest.raises(LimitExceeded, match="expanded compact rows"):
        decode_packet(data, limits=DecodeLimits(max_decoded_bytes=MiB))


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        DecodeLimits(max_rows=0)
    with pytest.raises(AttributeError):
        DecodeLimits().max_rows = 5  # type: ignore[misc]


# ============================================================================ 3: typed errors


@pytest.mark.parametrize("zone", ["+25:00", "-24:00", "+03:60", "+99:99"])
def test_impossible_timezone_is_a_schema_error_naming_field_and_zone(zone: str) -> None:
    schema = Schema((Field("ts", "TIMESTAMP", timezone=zone),))
    data = part(["2025-01-15T10:00:00"], schema=schema)
    with pytest.raises(SchemaError) as info:
        decode_packet(data, where="tz.xml")
    assert one_line(info.value) == (
        f"tz.xml: part 1: Schema: field 'ts': timezone '{zone}' is not an offset within ±23:59"
    )
    with pytest.raises(SchemaError, match="field 'ts'"):
        text_to_value(schema.fields[0], "2025-01-15T10:00:00")


def test_possible_timezones_still_read() -> None:
    schema = Schema((Field("ts", "TIMESTAMP", timezone="+23:59"), Field("u", "TIMESTAMP", timezone="Local")))
    packet = decode_packet(part(["2025-01-15T10:00:00|2025-01-15T10:00:00"], schema=schema))
    (a, b), = decode_values(packet)  # fmt: skip
    assert a.utcoffset() is not None and b.tzinfo is None


# ============================================================================ 4: UTF-8 only


def _latin1(data: bytes) -> bytes:
    return data.decode("utf-8").encode("latin-1")


@pytest.mark.parametrize(
    "declared",
    [b'encoding="ISO-8859-1"', b"encoding='latin1'", b'encoding = "UTF-16"', b'encoding="us-ascii"'],
)
def test_declared_encoding_other_than_utf8_is_refused(declared: bytes) -> None:
    data = part(["1|caf\u00e9"], compress="").replace(b'encoding="UTF-8"', declared)
    with pytest.raises(PacketFormatError, match="only UTF-8 packets are accepted") as info:
        decode_packet(_latin1(data) if b"8859" in declared else data, where="enc.xml")
    assert one_line(info.value).startswith("enc.xml: the XML declaration says encoding")


def test_bytes_that_are_not_utf8_are_refused() -> None:
    plain = part(["1|caf\u00e9 \U0001f600"], compress="")
    for data in (
        _latin1(part(["1|caf\u00e9"], compress="")),
        plain.replace("\u00e9".encode(), b"\xed\xa0\x80"),
    ):
        with pytest.raises(
            PacketFormatError, match=r"^x: not UTF-8 .*only UTF-8 packets are accepted"
        ) as info:
            decode_packet(data, where="x")
        one_line(info.value)
    compressed = with_rows_payload(part(["1|x"]), zstandard.compress("1|caf\u00e9".encode("latin-1")))
    with pytest.raises(PacketFormatError, match="decompressed rows are not UTF-8"):
        decode_packet(compressed)
    utf16 = "\ufeff".encode("utf-16-le") + plain.decode().encode("utf-16-le")
    with pytest.raises(PacketFormatError, match="only UTF-8"):
        decode_packet(utf16)


def test_utf8_in_any_spelling_and_a_bom_are_read() -> None:
    data = part(["1|caf\u00e9"], compress="")
    for variant in (data.replace(b"UTF-8", b"utf-8"), b"\xef\xbb\xbf" + data):
        assert decode_packet(variant).rows == ["1|caf\u00e9"]


# ============================================================================ require_hashes


def test_require_hashes_refuses_a_part_without_them() -> None:
    assert decode_packet(part(["1|x"], hashes=True), require_hashes=True).hash_status == "ok"
    for data in (part(["1|x"]), part(["1|x"], compress="")):
        with pytest.raises(IntegrityError, match="no v1.4 xxh3 hashes, and hashes are required") as info:
            decode_packet(data, where="h.xml", require_hashes=True)
        assert one_line(info.value).startswith("h.xml: part 1: ")
        assert decode_packet(data).hash_status == "none"


def test_xml_errors_are_one_line() -> None:
    data = part(["1|x"], compress="").replace(b"</R>", b"\x00</R>")
    with pytest.raises(PacketFormatError, match="not well-formed XML") as info:
        decode_packet(data)
    one_line(info.value)
