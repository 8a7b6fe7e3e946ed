"""Hostile parts through `tdtp import` into the real targets (issue 12, the importer's side):
each is refused with one line naming the part and what is wrong, in bounded memory,
with a non-zero exit, and nothing of it is published."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.fuzz.bombs import rle_frame, with_rows_payload
from tests.importer_support import export, make_source, write_files

MIB = 2**20


def _import_measured(target: str, source: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`tdtp import` in a child; returns it and the peak RSS (MB) of its largest process."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr)\n"
        "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, file=sys.stderr)\n"
        "sys.exit(p.returncode)\n"
    )
    args = [sys.executable, "-m", "tdtp.cli", "import", "--from", str(source), "--target", target,
            "--quiet", "--workers", "1", *extra]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, timeout=300)
    peak = float(re.search(r"PEAK (\S+)", proc.stderr).group(1))
    proc.stderr = re.sub(r"PEAK \S+\n?", "", proc.stderr)
    return proc, peak


def _one_part(tmp_path: Path, pg_url: str, pg_conn: psycopg.Connection, pg_schema: str) -> tuple[Path, bytes]:
    src = make_source(pg_conn, pg_schema, rows=3000)
    exp = export(pg_url, src, batch=True)
    paths = write_files(tmp_path / "parts", exp, summary=False)
    for extra in paths[1:]:
        extra.unlink()
    return paths[0], paths[0].read_bytes()


@pytest.mark.parametrize("target_kind", ["postgresql", "sqlite"])
def test_a_decompression_bomb_is_refused_in_bounded_memory_and_nothing_lands(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path, target_kind: str
) -> None:
    path, body = _one_part(tmp_path, pg_url, pg_conn, pg_schema)
    frame = rle_frame([(b"1", 200 * MIB)])  # 200 MiB of rows in a few KB, no RecordsInPart
    path.write_bytes(with_rows_payload(body, frame))
    assert path.stat().st_size < 20_000
    target = pg_url if target_kind == "postgresql" else f"sqlite:///{tmp_path / 'dst.db'}"
    table = f"{pg_schema}.bomb" if target_kind == "postgresql" else "bomb"
    proc, peak = _import_measured(target, tmp_path / "parts", "--table", table)
    assert proc.returncode != 0
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert any(path.name in x and "max_decoded_bytes" in x for x in lines), proc.stderr
    assert "no part or summary" not in proc.stderr
    assert peak < 200, f"peak RSS {peak:.0f} MB"
    if target_kind == "postgresql":
        assert pg_conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None
    else:
        with sqlite3.connect(tmp_path / "dst.db") as conn:
            assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'bomb'").fetchone()[0] == 0


def test_a_bad_timezone_attribute_is_one_clear_line(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    path, body = _one_part(tmp_path, pg_url, pg_conn, pg_schema)
    field = re.search(rb'<Field name="created_at" type="TIMESTAMP"[^>]*>', body).group(0)
    zoned = re.sub(rb' timezone="[^"]*"', b"", field).replace(b'type="TIMESTAMP"', b'type="TIMESTAMP" timezone="+25:00"')
    bad = body.replace(field, zoned, 1)
    assert bad != body
    path.write_bytes(bad)
    proc, _ = _import_measured(pg_url, tmp_path / "parts", "--table", f"{pg_schema}.t")
    assert proc.returncode != 0
    assert "timezone '+25:00'" in proc.stderr and "no part or summary" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("how", ["declared", "bytes"])
def test_parts_not_in_utf8_are_refused_not_imported_as_mojibake(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path, how: str
) -> None:
    path, body = _one_part(tmp_path, pg_url, pg_conn, pg_schema)
    if how == "declared":
        bad = body.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"', 1)
    else:
        bad = body.replace(b"</TableName>", b"\xe9</TableName>", 1)  # Latin-1 'é'
    assert bad != body
    path.write_bytes(bad)
    proc, _ = _import_measured(pg_url, tmp_path / "parts", "--table", f"{pg_schema}.t")
    assert proc.returncode != 0 and "UTF-8" in proc.stderr, proc.stderr
    assert pg_conn.execute("SELECT to_regclass(%s)", (f"{pg_schema}.t",)).fetchone()[0] is None


def test_require_hashes_refuses_a_part_without_them(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    _one_part(tmp_path, pg_url, pg_conn, pg_schema)
    proc, _ = _import_measured(pg_url, tmp_path / "parts", "--table", f"{pg_schema}.t", "--require-hashes")
    assert proc.returncode != 0 and "hashes are required" in proc.stderr, proc.stderr
    ok, _ = _import_measured(pg_url, tmp_path / "parts", "--table", f"{pg_schema}.u", "--mode", "append")
    assert json.loads(ok.stdout)["parts_imported"] == 1


def _renamed(body: bytes, table: str) -> bytes:
    return re.sub(rb"<TableName>[^<]*</TableName>", b"<TableName>" + table.encode() + b"</TableName>", body, count=1)


@pytest.mark.parametrize("target_kind", ["postgresql", "sqlite"])
def test_a_packet_cannot_name_the_importers_bookkeeping(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path, target_kind: str
) -> None:
    """A part whose TableName is the ledger, imported with --mode replace, is refused; the ledger
    keeps exactly-once: the earlier append export re-imported adds 0 rows."""
    src = make_source(pg_conn, pg_schema, rows=3000)
    exp = export(pg_url, src, batch=True)
    write_files(tmp_path / "good", exp)
    if target_kind == "postgresql":
        target, table, reserved = pg_url, f"{pg_schema}.t", "tdtp._tdtp_ledger"
        rows = lambda: pg_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
    else:
        db = tmp_path / "dst.db"
        target, table, reserved = f"sqlite:///{db}", "t", "_tdtp_ledger"
        rows = lambda: sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone()[0]  # noqa: E731
    first, _ = _import_measured(target, tmp_path / "good", "--table", table, "--mode", "append")
    assert first.returncode == 0, first.stderr
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "x.tdtp.xml").write_bytes(_renamed(exp.parts[0].body, reserved))
    refused, _ = _import_measured(target, hostile, "--mode", "replace")
    assert refused.returncode != 0 and reserved in refused.stderr and "Traceback" not in refused.stderr
    again, _ = _import_measured(target, tmp_path / "good", "--table", table, "--mode", "append")
    assert again.returncode == 0 and json.loads(again.stdout)["total_rows"] == 0, again.stdout
    assert rows() == 3000
    named, _ = _import_measured(target, tmp_path / "good", "--table", reserved)
    assert named.returncode != 0 and reserved in named.stderr
