"""Sources: schema discovery, row lines, both PostgreSQL paths, filters, files, errors.

Every test reads real data: a PostgreSQL schema of its own, SQLite and files in
tmp_path.  The "every type" table holds the values that break naive exporters:
delimiters, backslashes, line breaks, the marker text itself, the sentinel text
itself, empty vs NULL, float specials and 38-digit decimals.
"""

from __future__ import annotations

import gzip
import json
import math
import sqlite3
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tdtp.packet import (
    BLOB,
    BOOLEAN,
    DATE,
    DECIMAL,
    INTEGER,
    REAL,
    TEXT,
    TIMESTAMP,
    RowError,
    SchemaError,
    TdtpError,
)
from tdtp.parts import resolve_null_lines
from tdtp.sources import PartitionFilter, Source, SourceError, open_source
from tdtp.sources.files import SAMPLE_ROWS
from tdtp.urls import parse_url, redact, scheme_of
from tdtp.values import NULL_SENTINEL, RowDecoder, RowEncoder, split_row

HOSTILE_TEXT = [
    "a|b", "back\\slash", "line\nfeed", "cr\rreturn", "tab\there", "ünïcödé 名前 🎉",
    "quote's \"double\"", "[NULL]", "\\N", "", "trailing\\", "\\|[NULL]", "|", "\\", "N",
    "\\\\N", "&<>", " padded ", "INF", "0000-00-00",
]  # fmt: skip
FLOATS = [0.0, -0.0, 1e21, 1e-7, 1.5, math.inf, -math.inf, math.nan, 1e15, 123456789012345.6,
          5e-324, 1.7976931348623157e308, -2.5, 0.1, 1e16, 0.0001, 9.999e-05]  # fmt: skip
DECIMALS = [Decimal("1234567890123456789012345678.1234567890"), Decimal("-0.0000000001"), Decimal("0E-10"),
            Decimal("99999999999999999999999999999999999999"), Decimal("1.5")]  # fmt: skip
BLOBS = [b"", b"\x00\x01\x00", bytes(range(256)), b"x" * 100]
EVERY_TYPE_DDL = """
    id int8 PRIMARY KEY, i2 int2, i4 int4, f8 float8, f4 float4, n38 numeric(38,10), n numeric,
    t text, vc varchar(40), b bool, d date, ts timestamp, tstz timestamptz, tm time,
    bl bytea, u uuid, j jsonb, js json, ip inet
"""
N_ROWS = 60


def every_type_rows() -> list[tuple]:
    rows = []
    for i in range(N_ROWS):
        if i == 0:  # all NULL but the key
            rows.append((0,) + (None,) * 18)
            continue
        text = HOSTILE_TEXT[i % len(HOSTILE_TEXT)]
        f = FLOATS[i % len(FLOATS)]
        micro = [0, 500000, 123456, 1][i % 4]
        naive = datetime(2026, 1, 5, 13, 0, 0, micro) + timedelta(hours=i)
        aware = naive.replace(tzinfo=timezone(timedelta(hours=(i % 5) - 2)))
        rows.append(
            (
                i, i % 300 - 150, -(i * 1000), f, float(FLOATS[(i + 3) % len(FLOATS)]) if i % 3 else 1.1,
                DECIMALS[i % len(DECIMALS)] if DECIMALS[i % len(DECIMALS)].adjusted() < 28 else Decimal("1.25"),
                DECIMALS[(i + 1) % len(DECIMALS)], text, text[:40], i % 2 == 0, date(2026, 1, 1) + timedelta(days=i),
                naive, aware, time(i % 24, 30, 15, micro), BLOBS[i % len(BLOBS)], uuid.UUID(int=i),
                json.dumps({"k": text, "n": [i, None]}), json.dumps([text]), f"10.0.{i}.1",
            )
        )  # fmt: skip
    return rows


def _float4_ok(v: float) -> float:
    """float4 cannot hold every double: keep specials, clamp the rest into range."""
    if math.isnan(v) or math.isinf(v) or v == 0:
        return v
    return v if 1e-30 < abs(v) < 1e30 else 2.5


def make_every_type(conn: psycopg.Connection, schema: str) -> str:
    """Create the "every type" table in ``schema``; returns the name a source takes."""
    table = f'{schema}."every type"'
    conn.execute(f"CREATE TABLE {table} ({EVERY_TYPE_DDL})")
    rows = [r if r[0] == 0 else r[:4] + (_float4_ok(r[4]),) + r[5:] for r in every_type_rows()]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES ({', '.join(['%s'] * 19)})", rows)
    return f"{schema}.every type"


@pytest.fixture()
def every_type(pg_conn: psycopg.Connection, pg_schema: str) -> str:
    """A table of every type, hostile values and NULLs."""
    return make_every_type(pg_conn, pg_schema)


# --------------------------------------------------------------------------- URLs


def test_urls_parse_paths_and_schemes() -> None:
    assert parse_url("sqlite:///data/x.db").path == "data/x.db"
    assert parse_url("sqlite:////srv/x.db").path == "/srv/x.db"
    assert parse_url("postgres://u@h:5432/db").scheme == "postgresql"
    gz = parse_url("jsonl:///out/rows.jsonl.gz")
    assert (gz.scheme, gz.path, gz.gzip) == ("jsonl", "out/rows.jsonl.gz", True)
    with pytest.raises(TdtpError, match=r"unknown URL scheme 'mysql'.*sqlite://.*postgresql://.*csv://"):
        parse_url("mysql://u:pw@h/db")
    with pytest.raises(TdtpError, match="three slashes"):
        parse_url("csv://relative.csv")
    # The scheme alone, for any URL (tdtp copy picks the drivers to load before its lander forks).
    assert [scheme_of(u) for u in ("Postgres://u@h/db", "rabbitmq://h/q", "spool:///d/s", "x.db")] == [
        "postgresql",
        "rabbitmq",
        "spool",
        "",
    ]


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://app:s3cr3t@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert "hunter2" not in redact("postgresql://u@h/db?sslmode=require&password=hunter2")
    assert redact("sqlite:///a.db") == "sqlite:///a.db"


# --------------------------------------------------------------------------- PostgreSQL


def test_pg_schema_discovery(pg_url: str, every_type: str) -> None:
    with open_source(pg_url, table=every_type) as src:
        assert isinstance(src, Source)
        assert src.name == every_type
        f = {fl.name: fl for fl in src.schema.fields}
    assert [f[n].type for n in ("id", "i2", "i4", "f8", "f4", "n38", "n", "t", "b", "d", "bl")] == [
        INTEGER, INTEGER, INTEGER, REAL, REAL, DECIMAL, DECIMAL, TEXT, BOOLEAN, DATE, BLOB,
    ]  # fmt: skip
    assert f["id"].key and not f["i2"].key
    assert (f["n38"].precision, f["n38"].scale) == (38, 10) and f["n"].precision == 0
    assert f["vc"].length == 40
    assert (f["tstz"].type, f["tstz"].timezone, f["tstz"].subtype) == (TIMESTAMP, "UTC", "timestamptz")
    assert (f["ts"].type, f["ts"].timezone) == (TIMESTAMP, "")
    assert (f["tm"].type, f["tm"].subtype) == (TIMESTAMP, "time")
    assert [(f[n].type, f[n].subtype) for n in ("u", "j", "js", "ip")] == [
        (TEXT, "uuid"), (TEXT, "jsonb"), (TEXT, "json"), (TEXT, "inet"),
    ]  # fmt: skip
    assert f["f8"].specials.null == "[NULL]" and f["f8"].specials.infinity == "INF"


def test_pg_fast_and_cursor_paths_give_identical_lines(pg_url: str, every_type: str) -> None:
    with open_source(pg_url, table=every_type, batch_rows=7) as fast:
        fast_lines = list(fast.lines())
    with open_source(pg_url, table=every_type, batch_rows=7, fast=False) as slow:
        slow_lines = list(slow.lines())
    assert len(fast_lines) == N_ROWS
    assert sorted(fast_lines) == sorted(slow_lines)


def test_pg_lines_decode_to_the_stored_values(pg_url: str, every_type: str) -> None:
    with open_source(pg_url, table=every_type) as src:
        # As the part builder does: the NULL sentinel becomes a marker no value equals.
        lines, schema = resolve_null_lines(list(src.lines()), src.schema)
    assert schema.fields[0].specials.null not in ("[NULL]", None)  # "[NULL]" is a value here
    decoder = RowDecoder(schema)
    by_id = {row[0]: row for row in map(decoder.decode, lines)}
    names = schema.names
    expected = {r[0]: r for r in every_type_rows()}
    col = {n: i for i, n in enumerate(names)}
    assert by_id[0][1:] == (None,) * 18
    for i in range(1, N_ROWS):
        got, want = by_id[i], expected[i]
        assert got[col["t"]] == want[7], i  # hostile text exact, "[NULL]" and "\\N" included
        assert got[col["n"]] == want[6] and str(got[col["n"]]) == str(want[6])  # exact digits
        assert got[col["bl"]] == want[14]
        assert got[col["tstz"]] == want[12]
        assert got[col["ts"]] == want[11] and got[col["ts"]].tzinfo is None
        assert got[col["b"]] is want[9]
        f8 = got[col["f8"]]
        assert (math.isnan(f8) and math.isnan(want[3])) or f8 == want[3]


def test_pg_text_forms(pg_url: str, pg_conn: psycopg.Connection, pg_schema: str) -> None:
    """The wire forms docs/format.md asks for, straight from the server."""
    pg_conn.execute(f"CREATE TABLE {pg_schema}.forms (f float8, ts timestamptz, b bool, bl bytea)")
    pg_conn.execute(
        f"INSERT INTO {pg_schema}.forms VALUES (1e21, '2026-01-05 13:00:00.5+02', true, %s),"
        " (1e-7, '2026-01-05 13:00:00+00', false, NULL), ('-Infinity', NULL, NULL, '')",
        (b"y" * 100,),
    )
    with open_source(pg_url, table=f"{pg_schema}.forms") as src:
        lines = list(src.lines())
    assert lines[0].split("|")[:3] == ["1000000000000000000000", "2026-01-05T11:00:00.5Z", "1"]
    assert "\n" not in lines[0] and lines[0].split("|")[3].endswith("=")  # base64, one line
    assert lines[1] == f"0.0000001|2026-01-05T13:00:00Z|0|{NULL_SENTINEL}"
    assert lines[2] == f"-INF|{NULL_SENTINEL}|{NULL_SENTINEL}|"


@pytest.mark.parametrize("fast", [True, False])
def test_pg_xml_illegal_characters_name_row_and_column(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, fast: bool
) -> None:
    pg_conn.execute(f"CREATE TABLE {pg_schema}.ctl (id int, a text, note text)")
    pg_conn.execute(
        f"INSERT INTO {pg_schema}.ctl VALUES (1, 'x|y', 'fine\tand\rok'), (2, 'a|b', %s)", ("bad\x0bvt",)
    )
    with (
        open_source(pg_url, query=f"SELECT * FROM {pg_schema}.ctl ORDER BY id", fast=fast) as src,
        pytest.raises(RowError, match=r"row 2.*'note'|'note'.*row 2") as err,
    ):
        list(src.lines())
    assert "U+000B" in str(err.value)
    pg_conn.execute(f"UPDATE {pg_schema}.ctl SET note = %s WHERE id = 2", ("soh\x01",))
    with (
        open_source(pg_url, table=f"{pg_schema}.ctl", columns=["note"], fast=fast) as src,
        pytest.raises(RowError, match="U\\+0001"),
    ):
        list(src.lines())
    pg_conn.execute(f"DELETE FROM {pg_schema}.ctl WHERE id = 2")
    with open_source(pg_url, table=f"{pg_schema}.ctl", columns=["note"], fast=fast) as src:
        assert list(src.lines()) == ["fine\tand\rok"]  # TAB and CR are raw in TDTP


@pytest.fixture()
def events(pg_conn: psycopg.Connection, pg_schema: str) -> str:
    pg_conn.execute(
        f"CREATE TABLE {pg_schema}.events (id int, at timestamptz, local_at timestamp, region text)"
    )
    rows = [
        (1, "2026-01-04T23:59:59.999999Z", "eu"),
        (2, "2026-01-05T00:00:00Z", "us"),
        (3, "2026-01-05T13:30:00+00:00", "eu"),
        (4, "2026-01-05T15:59:59-08:00", "apac"),  # 23:59:59 UTC
        (5, "2026-01-06T00:00:00Z", "eu"),
        (6, "2026-01-05T14:00:00+01:00", "eu"),  # 13:00 UTC
    ]
    with pg_conn.cursor() as cur:
        for i, at, region in rows:
            cur.execute(
                f"INSERT INTO {pg_schema}.events VALUES (%s, %s::timestamptz, %s::timestamptz AT TIME ZONE 'UTC', %s)",
                (i, at, at, region),
            )
    return f"{pg_schema}.events"


def _ids(src: Source) -> list[int]:
    return sorted(int(line.split("|")[0]) for line in src.lines())


@pytest.mark.parametrize("fast", [True, False])
def test_pg_partition_filters(pg_url: str, events: str, fast: bool) -> None:
    def ids(partition: PartitionFilter, where: str | None = None) -> list[int]:
        with open_source(pg_url, table=events, partition=partition, where=where, fast=fast) as src:
            return _ids(src)

    assert ids(PartitionFilter("at", "day", "2026-01-05")) == [2, 3, 4, 6]
    assert ids(PartitionFilter("local_at", "day", "2026-01-05")) == [2, 3, 4, 6]
    assert ids(PartitionFilter("at", "hour", "2026-01-05T13")) == [3, 6]
    assert ids(PartitionFilter("region", "value", "eu")) == [1, 3, 5, 6]
    assert ids(PartitionFilter("region", "value", "eu"), where="id > 2 AND region LIKE 'e%'") == [3, 5, 6]
    assert ids(PartitionFilter("region", "value", "x'; DROP TABLE x; --")) == []


def test_pg_partition_errors(pg_url: str, events: str) -> None:
    with pytest.raises(TdtpError, match="not a valid day"):
        PartitionFilter("at", "day", "2026-13-01")
    with pytest.raises(SchemaError, match="'nope'"):
        open_source(pg_url, table=events, partition=PartitionFilter("nope", "value", "x"))


def test_pg_query_and_columns(pg_url: str, events: str) -> None:
    with open_source(pg_url, query=f"SELECT id, region AS r FROM {events} WHERE id < 4 ORDER BY id;") as src:
        assert src.name == "query" and src.schema.names == ["id", "r"]
        assert list(src.lines()) == ["1|eu", "2|us", "3|eu"]
    with open_source(pg_url, table=events, columns=["region", "id"], where="id = 2") as src:
        assert list(src.lines()) == ["us|2"]
    with pytest.raises(SchemaError, match="more than once"):
        open_source(pg_url, query=f"SELECT id, id FROM {events}")
    with pytest.raises(SchemaError, match="'missing'"):
        open_source(pg_url, table=events, columns=["id", "missing"])


def test_pg_missing_table_names_it_and_hides_the_password(pg_url: str) -> None:
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:topsecret@")
    with pytest.raises(SourceError) as err:
        open_source(url, table="public.no_such_table")
    msg = str(err.value)
    assert "no_such_table" in msg and "***" in msg and "topsecret" not in msg


def test_pg_bad_query_is_a_source_error(pg_url: str) -> None:
    with pytest.raises(SourceError, match="the query"):
        open_source(pg_url, query="SELECT nope FROM nowhere")


def test_pg_source_is_read_only(pg_url: str, pg_conn: psycopg.Connection, pg_schema: str) -> None:
    pg_conn.execute(f"CREATE SEQUENCE {pg_schema}.seq")
    with (
        open_source(pg_url, query=f"SELECT nextval('{pg_schema}.seq') AS v") as src,
        pytest.raises(SourceError, match="read-only"),
    ):
        list(src.lines())


def test_pg_hostile_identifiers(pg_url: str, pg_conn: psycopg.Connection, pg_schema: str) -> None:
    table = 'we"ird; DROP TABLE x; --名前'
    pg_conn.execute(f'CREATE TABLE "{pg_schema}"."we""ird; DROP TABLE x; --名前" ("co""l;" int, "ключ" text)')
    pg_conn.execute(f'INSERT INTO "{pg_schema}"."we""ird; DROP TABLE x; --名前" VALUES (1, %s)', ("v",))
    for fast in (True, False):
        with open_source(pg_url, table=f"{pg_schema}.{table}", fast=fast) as src:
            assert src.schema.names == ['co"l;', "ключ"]
            assert list(src.lines()) == ["1|v"]
    with pytest.raises(SchemaError, match="control character"):
        open_source(pg_url, table=f"{pg_schema}.bad\x01name")


def test_pg_early_stop_leaves_the_connection_usable(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str
) -> None:
    pg_conn.execute(f"CREATE TABLE {pg_schema}.big AS SELECT g AS id FROM generate_series(1, 50000) g")
    with open_source(pg_url, table=f"{pg_schema}.big", batch_rows=100) as src:
        it = src.lines()
        assert next(it)
        it.close()
        assert sum(1 for _ in src.lines()) == 50000


# --------------------------------------------------------------------------- SQLite


def _sqlite_db(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, code VARCHAR(8), price DECIMAL(10,2),"
        " big DECIMAL_TEXT(38,10), score REAL, active BOOLEAN, born DATE, seen TIMESTAMP, seen_tz TIMESTAMPTZ,"
        " at TIME, raw BLOB, anything)"
    )
    conn.executemany(
        "INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (1, "a|b\\c\nd", "X1", 12.5, "1234567890123456789012345678.1234567890", 1.5, 1, "2026-01-05",
             "2026-01-05 13:00:00", "2026-01-05T13:00:00.25Z", "13:45:00", b"\x00\x01", 7),
            (2, "[NULL]", None, 3, "-0.0000000001", -math.inf, 0, None, "2026-01-05T14:00:00", None, None, b"", 8),
            (3, None, "", None, None, None, None, None, None, None, None, None, None),
        ],
    )  # fmt: skip
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_sqlite_types_and_values(tmp_path: Path) -> None:
    url = _sqlite_db(tmp_path / "src.db")
    with open_source(url, table="items", batch_rows=2) as src:
        f = {fl.name: fl for fl in src.schema.fields}
        lines = list(src.lines())
        rows = list(src.rows())
    assert [f[n].type for n in ("id", "name", "price", "big", "score", "active", "born", "seen", "raw", "anything")] == [
        INTEGER, TEXT, DECIMAL, DECIMAL, REAL, BOOLEAN, DATE, TIMESTAMP, BLOB, INTEGER,
    ]  # fmt: skip
    assert f["id"].key and (f["price"].precision, f["price"].scale) == (10, 2) and f["code"].length == 8
    assert (f["seen_tz"].timezone, f["at"].subtype) == ("UTC", "time")
    assert lines[0] == (
        "1|a\\|b\\\\c\\nd|X1|12.5|1234567890123456789012345678.1234567890|1.5|1|2026-01-05|"
        "2026-01-05T13:00:00|2026-01-05T13:00:00.25Z|13:45:00|AAE=|7"
    )
    assert lines[1].split("|")[1] == "[NULL]" and "|-INF|0|" in lines[1]
    assert lines[2] == "3|\\N||" + "|".join([NULL_SENTINEL] * 10)
    assert rows[0][3] == Decimal("12.5") and rows[0][9] == datetime(2026, 1, 5, 13, 0, 0, 250000, tzinfo=UTC)


def test_sqlite_bad_value_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER, born DATE)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "2026-01-05"), (2, "not a date")])
    conn.commit()
    conn.close()
    with (
        open_source(f"sqlite:///{path}", table="t") as src,
        pytest.raises(RowError, match=r"row 2 column 'born'"),
    ):
        list(src.lines())


def test_sqlite_partitions_and_query(tmp_path: Path) -> None:
    path = tmp_path / "ev.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ev (id INTEGER, at TIMESTAMP, region TEXT)")
    conn.executemany(
        "INSERT INTO ev VALUES (?, ?, ?)",
        [
            (1, "2026-01-04 23:59:59", "eu"),
            (2, "2026-01-05 00:00:00", "us"),
            (3, "2026-01-05T13:30:00Z", "eu"),
            (4, "2026-01-05T22:30:00-05:00", "eu"),  # 03:30 UTC on the 6th
            (5, "2026-01-05T13:59:59.5", "apac"),
        ],
    )
    conn.commit()
    conn.close()
    url = f"sqlite:///{path}"

    def ids(**kw: object) -> list[int]:
        with open_source(url, **kw) as src:  # type: ignore[arg-type]
            return _ids(src)

    assert ids(table="ev", partition=PartitionFilter("at", "day", "2026-01-05")) == [2, 3, 5]
    assert ids(table="ev", partition=PartitionFilter("at", "hour", "2026-01-05T13")) == [3, 5]
    assert ids(table="ev", partition=PartitionFilter("region", "value", "eu"), where="id > 1") == [3, 4]
    with open_source(url, query="SELECT id, region || '!' AS r, 2.5 AS x FROM ev WHERE id <= 2") as src:
        assert [(f.name, f.type) for f in src.schema.fields] == [("id", INTEGER), ("r", TEXT), ("x", REAL)]
        assert list(src.lines()) == ["1|eu!|2.5", "2|us!|2.5"]


def test_sqlite_missing_table_and_file(tmp_path: Path) -> None:
    url = _sqlite_db(tmp_path / "src.db")
    with pytest.raises(SourceError, match="'nope'.*does not exist"):
        open_source(url, table="nope")
    with pytest.raises(SourceError, match="missing.db"):
        open_source(f"sqlite:///{tmp_path / 'missing.db'}", table="t")


# --------------------------------------------------------------------------- files


def test_csv_types_nulls_and_quoted_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "id,name,joined,day,score,ok,code\n"
        '1,"multi\nline, ""quoted""|x",2026-01-05T13:00:00Z,2026-01-05,1.5,true,7\n'
        "2,,2026-01-05T14:00:00.25Z,,2,false,x9\n"
        "3,back\\slash,2026-01-06T00:00:00Z,2026-01-07,1e21,,\n",
        encoding="utf-8",
    )
    with open_source(f"csv:///{path}", batch_rows=1) as src:
        assert src.name == "people"
        types = [(f.name, f.type, f.timezone) for f in src.schema.fields]
        lines = list(src.lines())
    assert types == [
        ("id", INTEGER, ""), ("name", TEXT, ""), ("joined", TIMESTAMP, "UTC"), ("day", DATE, ""),
        ("score", REAL, ""), ("ok", BOOLEAN, ""), ("code", TEXT, ""),  # 7 and x9: ambiguous -> TEXT
    ]  # fmt: skip
    assert lines == [
        '1|multi\\nline, "quoted"\\|x|2026-01-05T13:00:00Z|2026-01-05|1.5|1|7',
        "2|\\N|2026-01-05T14:00:00.25Z|\\N|2|0|x9",
        "3|back\\\\slash|2026-01-06T00:00:00Z|2026-01-07|1000000000000000000000|\\N|\\N",
    ]


def _jsonl_rows(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": i, "tag": uuid.uuid4().hex + "|" + uuid.uuid4().hex, "at": f"2026-01-05T{i % 24:02d}:00:00Z",
         "nested": {"k": [i]}, "x": i / 4}
        for i in range(start, start + n)
    ]  # fmt: skip


def _write_jsonl(path: Path, rows: list[dict], mode: str = "w") -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, mode + "t", encoding="utf-8") as fh:  # type: ignore[operator]
        for r in rows:
            fh.write(json.dumps(r) + "\n")


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz", "rows.csv"])
def test_file_sources_stream(tmp_path: Path, name: str) -> None:
    """Rows appended after the first line was yielded still come out: the file is read as it goes."""
    path = tmp_path / name
    first = _jsonl_rows(4000)
    late = _jsonl_rows(3, start=100_000)
    if name.endswith(".csv"):
        path.write_text("id,tag\n" + "".join(f"{r['id']},{r['tag']}\n" for r in first), encoding="utf-8")
    else:
        _write_jsonl(path, first)
    scheme = "csv" if name.endswith(".csv") else "jsonl"
    with open_source(f"{scheme}:///{path}", batch_rows=50) as src:
        it = src.lines()
        head = next(it)
        if name.endswith(".csv"):
            with path.open("a", encoding="utf-8") as fh:
                fh.write("".join(f"{r['id']},{r['tag']}\n" for r in late))
        else:
            _write_jsonl(path, late, mode="a")
        ids = [int(head.split("|")[0])] + [int(line.split("|")[0]) for line in it]
        heights = [df.height for df in src.frames()]  # type: ignore[attr-defined]
    assert ids == list(range(4000)) + [100_000, 100_001, 100_002]
    assert max(heights) <= 50 and len(heights) > 50


def test_jsonl_gz_and_json_array_types(tmp_path: Path) -> None:
    rows = _jsonl_rows(25)
    rows[3]["tag"] = None
    _write_jsonl(tmp_path / "a.jsonl.gz", rows)
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    outputs = []
    for url in (f"jsonl:///{tmp_path / 'a.jsonl.gz'}", f"json:///{tmp_path / 'a.json'}"):
        with open_source(url, batch_rows=4) as src:
            assert [(f.name, f.type, f.subtype) for f in src.schema.fields] == [
                ("id", INTEGER, ""), ("tag", TEXT, ""), ("at", TIMESTAMP, ""), ("nested", TEXT, "json"), ("x", REAL, ""),
            ]  # fmt: skip
            assert src.schema.fields[2].timezone == "UTC"
            outputs.append(list(src.lines()))
            assert max(df.height for df in src.frames()) <= 4  # type: ignore[attr-defined]
    assert outputs[0] == outputs[1] and len(outputs[0]) == 25
    assert outputs[0][3].split("|")[1] == NULL_SENTINEL
    assert split_row(outputs[0][1])[2:] == ["2026-01-05T01:00:00Z", '{"k": [1]}', "0.25"]


def test_file_filters_and_errors(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "e.jsonl", _jsonl_rows(48))
    url = f"jsonl:///{tmp_path / 'e.jsonl'}"
    with open_source(url, partition=PartitionFilter("at", "hour", "2026-01-05T05"), columns=["id"]) as src:
        assert list(src.lines()) == ["5", "29"]
    with open_source(url, where="id >= 46", columns=["id", "x"]) as src:
        assert list(src.lines()) == ["46|11.5", "47|11.75"]
    # A value that does not fit the type inferred from the sample is an error, not a NULL.
    (tmp_path / "bad.jsonl").write_text('{"n": 1}\n' * SAMPLE_ROWS + '{"n": "text"}\n', encoding="utf-8")
    with (
        open_source(f"jsonl:///{tmp_path / 'bad.jsonl'}", batch_rows=5000) as src,
        pytest.raises(RowError, match="bad.jsonl"),
    ):
        list(src.lines())
    with pytest.raises(SourceError, match="does not exist"):
        open_source(f"csv:///{tmp_path / 'nope.csv'}")
    (tmp_path / "obj.json").write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(SourceError, match="not a JSON array"):
        open_source(f"json:///{tmp_path / 'obj.json'}")


_SQLITE_FORMS: dict[str, list[object]] = {
    # column (declared type) -> values SQLite may hold there, in and out of TDTP form
    "n INTEGER": [0, -5, 2**63 - 1, 3.0, "42", " 7 ", None],
    "r REAL": [1.5, -0.0, 1e300, 1e-7, float("inf"), 3, "2.5", None],
    "d DECIMAL(12,2)": [12, 357.61, 1.0, 1e16, 1e-7, "12.50", "007.5", " 3.1 ", "-0.00", "1E+3", None],
    "b BOOLEAN": [0, 1, 1.0, "true", "0", None],
    "day DATE": ["2026-01-07", " 2026-01-07", "2026-01-07T10:00:00", "2026-W01-1", None],
    "ts TIMESTAMP": ["2026-01-07T10:00:00", "2026-01-07 10:00:00", "2026-01-07T10:00:00.5Z", "2026-01-07 10:00:00.500",
                     "2026-01-07T10:00:00+03:00", "2026-01-07T10:00:00.1234567", "2026-01-07", None],  # fmt: skip
    "tz TIMESTAMPTZ": ["2026-01-07 10:00:00", "2026-01-07T10:00:00Z", None],
    "t TEXT": ["plain", "pipe | back \\ slash", "line\nfeed", "", 12, 1.5, None],
}


@pytest.mark.parametrize("column", list(_SQLITE_FORMS))
def test_sqlite_lines_equal_typed_rows_rendered(tmp_path: Path, column: str) -> None:
    """The direct text path of the SQLite source writes exactly what typing each value and rendering it writes."""
    db = tmp_path / "forms.db"
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TABLE forms (id INTEGER PRIMARY KEY, {column})")
    conn.executemany("INSERT INTO forms VALUES (?, ?)", list(enumerate(_SQLITE_FORMS[column])))
    conn.commit()
    conn.close()
    with open_source(f"sqlite:///{db}", table="forms") as src:
        typed = [RowEncoder(src.schema).encode(row) for row in src.rows()]
    with open_source(f"sqlite:///{db}", table="forms") as src:
        direct = list(src.lines())
    assert direct == typed


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("n INTEGER", "x9", r"row 2 column 'v'.*does not fit type INTEGER"),
        ("day DATE", "2026-02-30", r"row 2 column 'v'.*DATE"),
        ("ts TIMESTAMP", "2026-01-07T25:00:00", r"row 2 column 'v'.*TIMESTAMP"),
    ],
)
def test_sqlite_lines_name_row_and_column_of_a_bad_value(tmp_path: Path, column: str, value: str, message: str) -> None:
    db = tmp_path / "bad.db"
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TABLE bad (id INTEGER PRIMARY KEY, v {column.split(' ', 1)[1]})")
    conn.executemany("INSERT INTO bad VALUES (?, ?)", [(1, None), (2, value)])
    conn.commit()
    conn.close()
    with open_source(f"sqlite:///{db}", table="bad") as src, pytest.raises(RowError, match=message):
        list(src.lines())
