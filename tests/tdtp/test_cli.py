"""The `tdtp` command end to end: export -> part files -> import, inspect, and bad input.

Runs the real console entry point in a subprocess, against the real PostgreSQL and
SQLite, and compares target with source row for row (EXCEPT both ways in PostgreSQL).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

EVERY_TYPE_DDL = """
CREATE TABLE {t} (
    id bigint PRIMARY KEY,
    small smallint,
    amount numeric(38, 10),
    big numeric,
    score double precision,
    ratio real,
    name text,
    code varchar(20),
    flag boolean,
    day date,
    at timestamp,
    at_tz timestamptz,
    blob bytea,
    doc jsonb,
    uid uuid
)
"""

HOSTILE = [
    "plain",
    "",
    "pipe | and \\ backslash",
    "line\nfeed and\r\ncrlf",
    "tab\there",
    "unicode: ünïcödé ✓ 日本語 🚀",
    "[NULL]",
    "\\N",
    "<xml> & 'quotes' \"double\"",
    "trailing backslash \\",
    "|",
]


def run_tdtp(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tdtp.cli", *args], capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"tdtp {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def fill_every_type(conn: psycopg.Connection, table: str, n: int = 300) -> None:
    conn.execute(EVERY_TYPE_DDL.format(t=table))
    specials = ["NaN", "Infinity", "-Infinity", "0", "1e21", "1.5e-7", "-0.1"]
    with conn.cursor() as cur:
        for i in range(n):
            nul = i % 11 == 0
            cur.execute(
                f"INSERT INTO {table} VALUES (%s,%s,%s,%s,%s::float8,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (
                    i,
                    None if nul else i % 30000,
                    None if nul else f"{i % 100:02d}1234567890123456789012345.{i:010d}",
                    None if nul else f"-{i}.{'9' * (i % 40)}0",
                    None if nul else specials[i % len(specials)],
                    None if nul else i / 3,
                    None if i % 13 == 0 else HOSTILE[i % len(HOSTILE)],
                    None if nul else f"c{i}",
                    None if nul else i % 2 == 0,
                    None if nul else f"2026-01-{1 + i % 28:02d}",
                    None if nul else f"2026-02-03 04:05:{i % 60:02d}.{i:06d}",
                    None if nul else f"2026-02-03 04:05:06.{i % 1000:03d}+0{i % 9}:30",
                    None if nul else bytes([i % 256, 0, 10, 13, 124, 92]),
                    None if nul else json.dumps({"i": i, "s": HOSTILE[i % len(HOSTILE)]}),
                    None if nul else f"00000000-0000-0000-0000-{i:012d}",
                ),
            )


def assert_same_pg(conn: psycopg.Connection, a: str, b: str) -> None:
    for x, y in ((a, b), (b, a)):
        missing = conn.execute(
            f"SELECT count(*) FROM (SELECT * FROM {x} EXCEPT ALL SELECT * FROM {y}) d"
        ).fetchone()[0]
        assert missing == 0, f"{missing} rows of {x} are not in {y}"


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_postgres_export_files_import_reproduces_every_row(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path, mode: str
) -> None:
    src, dst = f"{pg_schema}.src", f"{pg_schema}.dst"
    fill_every_type(pg_conn, src)
    out = tmp_path / "parts"
    result = run_tdtp(
        "export",
        "--source",
        pg_url,
        "--table",
        src,
        "--to",
        str(out),
        "--mode",
        mode,
        "--part-bytes",
        "20000",
        "--quiet",
    )
    stats = json.loads(result.stdout)
    assert stats["rows"] == 300 and stats["parts"] > 1
    run_tdtp("import", "--from", str(out), "--target", pg_url, "--table", dst, "--quiet")
    assert_same_pg(pg_conn, src, dst)


def test_sqlite_round_trip_through_files(tmp_path: Path) -> None:
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price DECIMAL(10,2), score REAL, "
            "flag BOOLEAN, day DATE, at DATETIME, data BLOB)"
        )
        conn.executemany(
            "INSERT INTO items VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    i,
                    None if i % 9 == 0 else HOSTILE[i % len(HOSTILE)],
                    f"{i}.25",
                    None if i % 5 == 0 else i * 1.5,
                    i % 2,
                    f"2026-03-{1 + i % 28:02d}",
                    f"2026-03-01 10:00:{i % 60:02d}",
                    bytes([i % 256, 0, 1]),
                )
                for i in range(500)
            ],
        )
    out, target = tmp_path / "parts", tmp_path / "dst.db"
    run_tdtp(
        "export",
        "--source",
        f"sqlite:///{db}",
        "--table",
        "items",
        "--to",
        str(out),
        "--part-bytes",
        "8000",
        "--quiet",
    )
    run_tdtp("import", "--from", str(out), "--target", f"sqlite:///{target}", "--quiet")
    with sqlite3.connect(db) as a, sqlite3.connect(target) as b:
        src_rows = a.execute("SELECT id, name, score, flag, data FROM items ORDER BY id").fetchall()
        dst_rows = b.execute("SELECT id, name, score, flag, data FROM items ORDER BY id").fetchall()
    assert src_rows == dst_rows


def test_inspect_prints_one_json_line_per_part(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src = f"{pg_schema}.src"
    fill_every_type(pg_conn, src, n=200)
    out = tmp_path / "parts"
    run_tdtp(
        "export",
        "--source",
        pg_url,
        "--table",
        src,
        "--to",
        str(out),
        "--part-bytes",
        "15000",
        "--hashes",
        "--quiet",
    )
    files = sorted(out.glob("*.xml"))
    lines = run_tdtp("inspect", *map(str, files)).stdout.splitlines()
    assert len(lines) == len(files) > 1
    docs = [json.loads(line) for line in lines]
    assert sum(d["rows"] for d in docs) == 200
    assert {d["hashes"] for d in docs} == {"ok"}
    assert {d["total_parts"] for d in docs} == {len(files)}
    assert docs[0]["schema"][0] == {"name": "id", "type": "INTEGER", "key": True}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<?xml version='1.0'?><DataPacket protocol='TDTP' version='1.0'><Header>", "part.xml"),
        (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "boom">]><DataPacket protocol="TDTP" version="1.0"/>',
            "part.xml",
        ),
    ],
)
def test_bad_part_files_give_one_clear_line_and_a_nonzero_exit(
    tmp_path: Path, body: bytes, expected: str
) -> None:
    path = tmp_path / "part.xml"
    path.write_bytes(body)
    for args in (
        ["inspect", str(path)],
        ["import", "--from", str(path), "--target", f"sqlite:///{tmp_path / 'x.db'}"],
    ):
        proc = run_tdtp(*args, check=False)
        assert proc.returncode != 0
        err = proc.stderr.strip().splitlines()
        assert len(err) >= 1 and "Traceback" not in proc.stderr
        assert expected in err[-1]


def test_missing_source_table_is_named(pg_url: str, tmp_path: Path) -> None:
    proc = run_tdtp(
        "export", "--source", pg_url, "--table", "no_such_table", "--to", str(tmp_path), check=False
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no_such_table" in proc.stderr


def _small_sqlite(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount REAL)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 1.5) for i in range(rows)])


def test_a_second_export_into_the_same_directory_is_refused_unless_overwrite(tmp_path: Path) -> None:
    source, out = tmp_path / "shop.db", tmp_path / "out"
    _small_sqlite(source, 2000)
    args = ("export", "--source", f"sqlite:///{source}", "--table", "orders", "--to", str(out), "--quiet")
    run_tdtp(*args, "--part-bytes", "5000")
    with sqlite3.connect(source) as conn:
        conn.execute("DELETE FROM orders WHERE id >= 100")
    refused = run_tdtp(*args, check=False)
    assert refused.returncode != 0 and "earlier export" in refused.stderr and "Traceback" not in refused.stderr
    run_tdtp(*args, "--overwrite")
    run_tdtp("import", "--from", str(out), "--target", f"sqlite:///{tmp_path / 'w.db'}", "--quiet")
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 100


def test_name_sets_the_table_and_an_unpublished_export_fails_the_import(tmp_path: Path) -> None:
    source, out = tmp_path / "shop.db", tmp_path / "out"
    _small_sqlite(source, 50)
    run_tdtp("export", "--source", f"sqlite:///{source}", "--query", "select id, amount from orders",
             "--name", "small", "--to", str(out), "--quiet")  # fmt: skip
    assert json.loads(run_tdtp("inspect", *map(str, out.glob("*.xml"))).stdout.splitlines()[0])["table"] == "small"
    # a query has no key fields, so an upsert cannot be published: the exit code says so
    proc = run_tdtp("import", "--from", str(out), "--target", f"sqlite:///{tmp_path / 'w.db'}", "--mode", "upsert",
                    "--quiet", check=False)  # fmt: skip
    assert proc.returncode != 0 and "not published" in proc.stderr and "key" in proc.stderr


@pytest.mark.parametrize("url", ["nats://127.0.0.1:4222/x", "amqp://guest@127.0.0.1/orders"])
def test_an_unknown_url_scheme_is_never_taken_for_a_directory(tmp_path: Path, url: str) -> None:
    source = tmp_path / "shop.db"
    _small_sqlite(source, 5)
    proc = run_tdtp("export", "--source", f"sqlite:///{source}", "--table", "orders", "--to", url, check=False)
    assert proc.returncode != 0 and "unknown broker scheme" in proc.stderr
    assert not any(p.name.endswith(":") for p in Path.cwd().iterdir())


@pytest.mark.parametrize(("value", "column"), [("'infinity'", "ts"), ("'-infinity'", "ts"), ("'0044-03-15 BC'", "ts")])
def test_postgres_values_tdtp_cannot_carry_stop_the_export_naming_the_column(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path, value: str, column: str
) -> None:
    table = f"{pg_schema}.odd"
    pg_conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, ts timestamptz)")
    pg_conn.execute(f"INSERT INTO {table} VALUES (1, now()), (2, {value}::timestamptz)")
    proc = run_tdtp("export", "--source", pg_url, "--table", table, "--to", str(tmp_path / "o"), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "TDTP cannot carry" in proc.stderr and f"'{column}'" in proc.stderr


def test_a_file_that_is_not_a_tdtp_part_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    target = tmp_path / "w.db"
    proc = run_tdtp("import", "--from", str(notes), "--target", f"sqlite:///{target}", check=False)
    assert proc.returncode != 0 and "notes.txt" in proc.stderr and "Traceback" not in proc.stderr
    assert not target.exists()
