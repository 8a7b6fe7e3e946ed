"""Mutation families that work on a part's XML: header numbers, RecordsInPart, schema
attributes, row arity, huge attributes, nesting, entities and DTDs, structure,
hashes, the compact format, and packets re-encoded with bad content ("forged":
through our own encoder, so v1.4 hashes are valid over the bad content).

Each family is ``f(rng, base) -> bytes``.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from tdtp.codec import encode_packet
from tdtp.packet import Packet, Schema
from tests.fuzz.bases import Base


def _sub(body: bytes, pattern: bytes, repl: bytes, flags: int = 0) -> bytes:
    return re.sub(pattern, lambda _m: repl, body, count=1, flags=flags)


_NUMBERS = [b"0", b"-1", b"1", b"2", b"4", b"99999999999999999999", b"1e3", b" 2 ", b"0x10", "\u0663".encode(),
            b"9" * 5000, b"", b"abc", b"+1", b"1.0", b"2147483648", b"-0", b"&#49;"]  # fmt: skip


def header_numbers(rng: random.Random, base: Base) -> bytes:
    tag = rng.choice([b"PartNumber", b"TotalParts"])
    value = rng.choice(_NUMBERS)
    body = base.body
    if b"<" + tag + b">" in body and rng.random() < 0.8:
        return _sub(
            body, b"<" + tag + b">[^<]*</" + tag + b">", b"<" + tag + b">" + value + b"</" + tag + b">"
        )
    return body.replace(b"</MessageID>", b"</MessageID><" + tag + b">" + value + b"</" + tag + b">", 1)


def records(rng: random.Random, base: Base) -> bytes:
    body = base.body
    n = len(base.packet.rows)
    value = rng.choice([b"", b"0", str(n + 1).encode(), str(max(n - 1, 0)).encode(), b"-3", b"1000001",
                        b"999999999999", b"x", str(n).encode() + b" "])  # fmt: skip
    has = b"<RecordsInPart>" in body
    how = rng.randrange(4)
    if how == 0 and has:
        return _sub(body, rb"<RecordsInPart>[^<]*</RecordsInPart>", b"")
    if how == 1 and has:
        return body.replace(b"<RecordsInPart>", b"<RecordsInPart>1</RecordsInPart><RecordsInPart>", 1)
    if has:
        return _sub(
            body, rb"<RecordsInPart>[^<]*</RecordsInPart>", b"<RecordsInPart>" + value + b"</RecordsInPart>"
        )
    return body.replace(b"</MessageID>", b"</MessageID><RecordsInPart>" + value + b"</RecordsInPart>", 1)


_TYPES = [b"MONEY", b"integer", b"Int", b"", b"VARCHAR", b"TIMESTAMP", b"DATETIME", b"BLOB", b"DECIMAL", b"BOOL",
          b"TEXT ", b"\xc3\xa9", b"DATE"]  # fmt: skip
_ZONES = [b"+25:00", b"-24:00", b"+23:59", b"+03:75", b"UTC", b"Local", b"Europe/Moscow", b"+0300", b"-99:99",
          "\u0660\u0663:\u0660\u0660".encode(), b"+03:00", b"Z", b"", b"+3:00"]  # fmt: skip
_INTS = [b"-1", b"x", b"1e9", b"99999999999999999999999", b"", b" 3 ", b"0"]
_BOOLS = [b"true", b"yes", b"2", b"T", b"", b"tRUE"]


def schema_attrs(rng: random.Random, base: Base) -> bytes:
    body = base.body
    fields = list(re.finditer(rb"<Field [^>]*>", body))
    m = rng.choice(fields)
    tag = m.group(0)
    how = rng.randrange(10)
    if how == 0:
        new = re.sub(rb'type="[^"]*"', b'type="' + rng.choice(_TYPES) + b'"', tag)
    elif how == 1:
        new = tag[:-1] + b' timezone="' + rng.choice(_ZONES) + b'">'
        new = re.sub(rb'type="[^"]*"', b'type="TIMESTAMP"', new) if rng.random() < 0.7 else new
    elif how == 2:
        new = (
            tag[:-1]
            + b" "
            + rng.choice([b"length", b"precision", b"scale"])
            + b'="'
            + rng.choice(_INTS)
            + b'">'
        )
    elif how == 3:
        new = (
            tag[:-1] + b" " + rng.choice([b"key", b"readonly", b"fixed"]) + b'="' + rng.choice(_BOOLS) + b'">'
        )
    elif how == 4:
        new = re.sub(
            rb'name="[^"]*"', b'name="' + rng.choice([b"", b" ", b"id", b"a&#9;b", b"x" * 300]) + b'"', tag
        )
    elif how == 5:
        new = tag[:-1] + b' subtype="' + rng.choice([b"time", b"uuid", b"TIME", b"json"]) + b'">'
    elif how == 6:  # a schema with no fields, or very many
        if rng.random() < 0.5:
            return re.sub(rb"<Field .*?</Field>", b"", body, flags=re.S)
        extra = b"".join(
            b'<Field name="f%d" type="TEXT"></Field>' % i for i in range(rng.choice((100, 5000)))
        )
        return body.replace(b"</Schema>", extra + b"</Schema>", 1)
    elif how == 7:  # special-value markers
        marker = rng.choice([b"", b"1", b"[NULL]", b"x" * 100, b"&amp;", b"0000-00-00"])
        kind = rng.choice([b"Null", b"Infinity", b"NaN", b"NoDate", b"NegInfinity", b"Bogus"])
        return body.replace(tag, tag + b"<SpecialValues><" + kind + b' marker="' + marker + b'"></' + kind
                            + b"></SpecialValues>", 1)  # fmt: skip
    elif how == 8:  # dictionary entries
        short = rng.choice([b"@A", b"@1", b"A", b"@a_b", b"", b"@" + b"x" * 200])
        full = rng.choice([b"", b"full", b"x" * 1000, b"[NULL]"])
        entry = b'<Entry short="' + short + b'" full="' + full + b'"></Entry>'
        return body.replace(
            b"</Schema>", b"<Dictionary>" + entry * rng.randint(1, 3) + b"</Dictionary></Schema>", 1
        )
    else:  # duplicate a field
        return body.replace(tag, tag.replace(b"<Field ", b"<Field ", 1) + b"</Field>" + tag, 1)
    return body.replace(tag, new, 1)


def arity(rng: random.Random, base: Base) -> bytes:
    """Rows with fields added or missing; forged (re-encoded, so hashes hold) or byte-level."""
    rows = list(base.packet.rows)
    i = rng.randrange(len(rows))
    how = rng.randrange(5)
    if how == 0:
        rows[i] = rows[i] + "|extra"
    elif how == 1:
        rows[i] = rows[i].rsplit("|", 1)[0]
    elif how == 2:
        rows[i] = ""
    elif how == 3:
        rows[i] = "|" * rng.choice((0, 3, 50))
    else:
        if base.compressed:
            return base.body
        return (
            base.body.replace(b"</R>", b"|</R>", 1) if rng.random() < 0.5 else base.body.replace(b"|", b"", 1)
        )
    return encode_packet(replace(base.packet, rows=rows), **base.encode_options)  # type: ignore[arg-type]


_BAD_VALUES = ["abc", "1e999", "NaN", "", "[NULL]", "2025-02-30", "2025-01-15T25:00:00", "9" * 400, "-", "١٢٣",
               "1_000", "0x1F", " 1", "t", "yes", "=", "!!", "\\N", "\\", "sNaN", "Infinity", "2025-W03-1"]  # fmt: skip


def forged_values(rng: random.Random, base: Base) -> bytes:
    """Values that do not parse as their field's type, in a part re-encoded so its hashes hold."""
    packet = base.packet
    rows = list(packet.rows)
    i = rng.randrange(len(rows))
    fields = rows[i].split("|")
    if fields:
        fields[rng.randrange(len(fields))] = rng.choice(_BAD_VALUES).replace("|", "")
    rows[i] = "|".join(fields)
    schema = packet.schema
    if rng.random() < 0.3:  # and a field attribute no reader can use
        j = rng.randrange(len(schema.fields))
        f = schema.fields[j]
        bad = replace(f, timezone=rng.choice(["+25:00", "-30:00", "+03:99", "Mars/Base"]))
        bad = replace(bad, type=rng.choice([bad.type, "TIMESTAMP"]))
        schema = Schema(schema.fields[:j] + (bad,) + schema.fields[j + 1 :], schema.dictionary)
    try:
        return encode_packet(Packet(packet.header, schema, rows, packet.version), **base.encode_options)  # type: ignore[arg-type]
    except Exception:  # the encoder refused the forgery: send the untouched part
        return base.body


def huge_attributes(rng: random.Random, base: Base) -> bytes:
    size = rng.choice(
        (1000, 100_000, 2**20, 9 * 2**20, 17 * 2**20, 65 * 2**20 if rng.random() < 0.05 else 2**20)
    )
    blob = rng.choice([b"x", b"&amp;", b"\xc3\xa9", b"0"]) * (size // 5 + 1)
    blob = blob[:size]
    body = base.body
    how = rng.randrange(7)
    if how == 0:
        return body.replace(b"<Data", b'<Data junk="' + blob + b'"', 1)
    if how == 1:
        return re.sub(rb"<Field ", lambda _m: b'<Field note="' + blob + b'" ', body, count=1)
    if how == 2:
        return body.replace(b'protocol="TDTP"', b'protocol="TDTP" big="' + blob + b'"', 1)
    if how == 3:
        return _sub(body, rb"<TableName>[^<]*</TableName>", b"<TableName>" + blob + b"</TableName>")
    if how == 4:
        return body.replace(b"<Data", b'<Data compact="true" carry="' + blob + b'"', 1)
    if how == 5:
        return body.replace(b"<R>", b'<R a="' + blob + b'">', 1)
    return re.sub(rb'(checksum|xxh3)="[^"]*"', lambda m: m.group(1) + b'="' + blob + b'"', body, count=1)


def nesting(rng: random.Random, base: Base) -> bytes:
    depth = rng.choice((5, 60, 62, 63, 64, 65, 200, 255, 257, 3000, 100_000))
    nest = b"<a>" * depth + b"</a>" * depth
    if rng.random() < 0.1:
        nest = b"<a>" * depth  # never closed
    place = rng.choice([b"<Header>", b"<Schema>", b"<Data>", b"<Data ", b"</Data>", b"<R>", b"</Header>"])
    body = base.body
    if place == b"<Data ":
        return body.replace(b"</Data>", nest + b"</Data>", 1)
    if place.startswith(b"</"):
        return body.replace(place, place + nest, 1)
    return (
        body.replace(place, place + nest, 1)
        if place in body
        else body.replace(b"<Header>", b"<Header>" + nest)
    )


_DOCTYPES = [
    b'<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    b'<!DOCTYPE p [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>',
    b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    b'<!ENTITY xxe "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>',
    b'<!DOCTYPE p [<!ENTITY % pe SYSTEM "file:///etc/passwd"> %pe;]>',
    b'<!DOCTYPE p SYSTEM "http://127.0.0.1:9/p.dtd">',
    b"<!doctype p>",
    b'<!ENTITY xxe "x">',
    b"<!ELEMENT p ANY>",
    b"<![CDATA[x]]>",
]
_REFS = [b"&xxe;", b"&lol;", b"&#0;", b"&#x1F;", b"&#xD800;", b"&#x110000;", b"&#65;", b"&amp;amp;", b"&#99999999999;",
         b"&#x;", b"&", b"&lt;&gt;", b"&#xFFFE;", b"&#13;"]  # fmt: skip


def entities(rng: random.Random, base: Base) -> bytes:
    body = base.body
    if rng.random() < 0.6:
        decl = rng.choice(_DOCTYPES)
        head, _, rest = body.partition(b"\n")
        lead = rng.choice([b"", b"<!-- c -->", b"<?pi x?>", b"\n  ", b"\xef\xbb\xbf"])
        if lead == b"\xef\xbb\xbf":
            return lead + head + b"\n" + decl + rest
        ref = rng.choice(_REFS[:2]) if rng.random() < 0.7 else b""
        rest = rest.replace(b"</TableName>", ref + b"</TableName>", 1)
        return head + b"\n" + lead + decl + rest
    ref = rng.choice(_REFS)
    place = rng.choice([b"</TableName>", b"</R>", b"</Header>", b"</MessageID>"])
    return body.replace(place, ref + place, 1)


def structure(rng: random.Random, base: Base) -> bytes:
    body = base.body
    how = rng.randrange(14)
    section = rng.choice([b"Header", b"Schema", b"Data"])
    pat = b"<" + section + b"[ >].*?</" + section + b">"
    m = re.search(pat, body, flags=re.S)
    if how == 0 and m:
        return body.replace(m.group(0), b"", 1)
    if how == 1 and m:
        return body.replace(m.group(0), m.group(0) * 2, 1)
    if how == 2:
        return re.sub(rb"<DataPacket|<TDTP", b"<Other", body, count=1).replace(b"</DataPacket>", b"</Other>")
    if how == 3:
        return body.replace(b'protocol="TDTP"', rng.choice([b'protocol="tdtp"', b"", b'protocol=""']), 1)
    if how == 4:
        return re.sub(rb'version="[^"]*"', rng.choice([b'version=""', b'version="9.9"', b""]), body, count=1)
    if how == 5:
        return body.replace(b"</R>", b"<b>x</b></R>", 1)
    if how == 6:
        return body.replace(b"</R>", b"</R><R>1</R>", 1)
    if how == 7:
        comp = rng.choice([b"gzip", b"ZSTD", b" zstd ", b"", b"kanzi"])
        if b"compression=" in body:
            return re.sub(rb'compression="[^"]*"', b'compression="' + comp + b'"', body, count=1)
        return body.replace(b"<Data", b'<Data compression="' + comp + b'"', 1)
    if how == 8:
        return re.sub(rb"<R>([^<]*)</R>", lambda m: b"<R><![CDATA[" + m.group(1) + b"]]></R>", body, count=1)
    if how == 9:
        return body.replace(b"</R>", b"<!-- c --></R>", 1)
    if how == 10:
        return body.replace(b"<Schema", b"<Unknown><x/></Unknown><Schema", 1)
    if how == 11 and m:  # a section moved to the end
        return body.replace(m.group(0), b"", 1).replace(b"</DataPacket>", m.group(0) + b"</DataPacket>")
    if how == 12:
        return body.replace(b"<R>", b"<R/><R>", 1)
    return body.replace(b"</DataPacket>", b"</DataPacket><DataPacket/>", 1)


def hashes(rng: random.Random, base: Base) -> bytes:
    body = base.body
    attrs = list(re.finditer(rb' xxh3="([^"]*)"', body))
    how = rng.randrange(5)
    if attrs and how == 0:
        return re.sub(rb' xxh3="[^"]*"', b"", body)
    if attrs and how == 1:
        m = rng.choice(attrs)
        return body.replace(m.group(0), b"", 1)
    if attrs and how == 2:
        m = rng.choice(attrs)
        return body.replace(m.group(0), m.group(0).upper().replace(b"XXH3", b"xxh3"), 1)
    if attrs and how == 3:
        m = rng.choice(attrs)
        return body.replace(m.group(1), m.group(1)[: rng.randrange(33)], 1)
    fake = b' xxh3="' + rng.randbytes(16).hex().encode() + b'"'
    where = rng.choice([b"<Schema", b"<Data", b'protocol="TDTP"'])
    return body.replace(where, where + fake, 1)


def compact(rng: random.Random, base: Base) -> bytes:
    body = base.body
    attrs = rng.choice([b' compact="true"', b' compact="true" tail="true"', b' compact="1" carry="1|x"',
                        b' compact="maybe"', b' compact="true" carry="' + b"|" * 40 + b'"'])  # fmt: skip
    body = re.sub(rb' compact="[^"]*"', b"", body)
    body = body.replace(b"<Data", b"<Data" + attrs, 1)
    if rng.random() < 0.7:
        body = re.sub(rb"<Field ", b'<Field fixed="true" ', body, count=rng.randint(1, 3))
    if rng.random() < 0.2:  # a carried value repeated into many empty rows: expansion multiplies
        big = b"y" * (2**20)
        body = body.replace(b"<Data", b'<Data carry="' + big + b'"', 1)
        body = re.sub(
            rb"</R>.*</Data>", b"</R>" + b"<R></R>" * 100_000 + b"</Data>", body, count=1, flags=re.S
        )
    return body


def splice(rng: random.Random, base: Base, other: Base) -> bytes:
    """Two parts cut and joined: one's Header or Schema with the other's rows."""
    section = rng.choice([b"Header", b"Schema", b"Data"])
    pat = b"<" + section + b"[ >].*?</" + section + b">"
    a, b = re.search(pat, base.body, flags=re.S), re.search(pat, other.body, flags=re.S)
    if not a or not b:
        return base.body
    return base.body.replace(a.group(0), b.group(0), 1)
