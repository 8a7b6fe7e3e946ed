"""Exactly once per target table, abandoned exports, concurrent imports and conflicting duplicates.

Driven through the `tdtp` command as a user would (subprocesses, real PostgreSQL, a
spool log or part files), asserting what the user sees: exit codes, one-line
messages, ``tdtp status``, and the target's rows (EXCEPT both ways, no duplicates).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg

from tdtp.brokers import open_broker
from tdtp.codec import decode_packet, encode_packet
from tdtp.packet import Packet, Summary
from tdtp.parts import Part
from tests.importer_support import (
    Export,
    count,
    differences,
    export,
    make_source,
    publish,
    summary_headers,
    write_files,
)
from tests.tdtp.test_cli import run_tdtp


def _status(pg_url: str, export_id: str, table: str) -> dict:
    proc = run_tdtp("status", export_id, "--target", pg_url, "--table", table, check=False)
    return json.loads(proc.stdout)


def _import(pg_url: str, source: str, table: str, *extra: str, check: bool = True):
    return run_tdtp("import", "--from", source, "--target", pg_url, "--table", table, "--quiet",
                    "--workers", "2", *extra, check=check)  # fmt: skip


def _exported_files(
    pg_url: str, pg_conn: psycopg.Connection, schema: str, tmp_path: Path, rows: int
) -> tuple[str, Export, Path, list[Path]]:
    """A source of ``rows`` rows exported in batch into the part files of ``tmp_path/parts``.

    Returns the source table, the export, the directory and its part files.
    """
    src = make_source(pg_conn, schema, rows=rows)
    exp = export(pg_url, src, batch=True)
    parts = tmp_path / "parts"
    return src, exp, parts, write_files(parts, exp)


def _publish(url: str, parts: Sequence[Part] = (), summary: Summary | None = None) -> None:
    """Append ``parts`` and then ``summary`` (if any) to the stream at ``url``, as an exporter would."""
    with open_broker(url) as log:
        publish(log, parts)
        if summary is not None:
            log.publish(summary.to_json(), summary_headers(summary))


def _load_tables(conn: psycopg.Connection, schema: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND relname LIKE %s",
            (schema, "%\\_\\_tdtp\\_%"),
        )
    ]


def test_one_export_lands_in_two_tables_each_exactly_once(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src, exp, parts, _ = _exported_files(pg_url, pg_conn, pg_schema, tmp_path, rows=2000)
    a, b = f"{pg_schema}.a", f"{pg_schema}.b"
    _import(pg_url, str(parts), a)
    second = json.loads(_import(pg_url, str(parts), b).stdout)
    assert second["duplicates"] == 0 and second["total_rows"] == 2000, second
    again = json.loads(_import(pg_url, str(parts), a).stdout)
    assert again["duplicates"] == len(exp.parts) and again["total_rows"] == 0, again
    for table in (a, b):
        assert differences(pg_conn, src, table) == (0, 0)
        assert count(pg_conn, table) == 2000
        status = _status(pg_url, exp.export_id, table)
        assert status["state"] == "finalized" and status["published_rows"] == 2000, status


def test_a_dropped_or_emptied_table_is_noticed_and_landed_again_in_replace_mode(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src, exp, parts, _ = _exported_files(pg_url, pg_conn, pg_schema, tmp_path, rows=1500)
    table = f"{pg_schema}.a"
    _import(pg_url, str(parts), table)
    pg_conn.execute(f"DROP TABLE {table}")
    status = _status(pg_url, exp.export_id, table)
    assert status["state"] != "finalized" and "dropped" in status["note"], status
    _import(pg_url, str(parts), table)
    assert differences(pg_conn, src, table) == (0, 0) and count(pg_conn, table) == 1500
    pg_conn.execute(f"TRUNCATE {table}")
    _import(pg_url, str(parts), table)
    assert differences(pg_conn, src, table) == (0, 0) and count(pg_conn, table) == 1500
    status = _status(pg_url, exp.export_id, table)
    assert status["state"] == "finalized" and status["published_rows"] == 1500, status


def test_append_into_a_dropped_table_refuses_in_one_line_until_forced(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src, exp, parts, _ = _exported_files(pg_url, pg_conn, pg_schema, tmp_path, rows=1200)
    table = f"{pg_schema}.a"
    _import(pg_url, str(parts), table, "--mode", "append")
    pg_conn.execute(f"DROP TABLE {table}")
    refused = _import(pg_url, str(parts), table, "--mode", "append", check=False)
    assert refused.returncode != 0
    lines = [x for x in refused.stderr.splitlines() if exp.export_id in x]
    assert len(lines) == 1 and "--reland" in lines[0] and "dropped" in lines[0], refused.stderr
    _import(pg_url, str(parts), table, "--mode", "append", "--reland")
    assert differences(pg_conn, src, table) == (0, 0) and count(pg_conn, table) == 1200


def _spool_with_abandoned_then_complete_export(pg_url: str, src: str, url: str) -> tuple[str, str]:
    """Export 1 dies mid-way (parts, no summary); export 2 of the same table completes."""
    dead = export(pg_url, src)
    good = export(pg_url, src)
    _publish(url, [*dead.parts[: len(dead.parts) - 1], *good.parts], good.summary)
    return dead.export_id, good.export_id


def test_an_abandoned_export_is_superseded_by_a_newer_complete_one(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src = make_source(pg_conn, pg_schema, rows=2500)
    url = f"spool:///{tmp_path}/spool/events"
    dead_id, good_id = _spool_with_abandoned_then_complete_export(pg_url, src, url)
    table = f"{pg_schema}.t"
    proc = _import(pg_url, url, table, "--from-seq", "0", check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["exports"][good_id].startswith("finalized"), out
    assert out["exports"][dead_id].startswith("abandoned"), out
    assert differences(pg_conn, src, table) == (0, 0) and count(pg_conn, table) == 2500
    status = _status(pg_url, dead_id, table)
    assert status["state"] == "abandoned" and good_id in status["note"], status
    assert _load_tables(pg_conn, pg_schema) == []  # its load table is gone
    again = _import(pg_url, url, table, "--from-seq", "0", check=False)  # and later imports stay green
    assert again.returncode == 0, again.stderr


def test_an_export_without_summary_is_abandoned_after_the_configured_age(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src = make_source(pg_conn, pg_schema, rows=1500)
    dead = export(pg_url, src)
    url = f"spool:///{tmp_path}/spool/events"
    _publish(url, dead.parts[:2])
    table = f"{pg_schema}.t"
    waiting = _import(pg_url, url, table, "--from-seq", "0", check=False)
    assert waiting.returncode != 0 and "waiting for the summary" in waiting.stderr
    proc = _import(pg_url, url, table, "--from-seq", "0", "--abandon-after", "0", check=False)
    assert proc.returncode == 0, proc.stderr
    status = _status(pg_url, dead.export_id, table)
    assert status["state"] == "abandoned" and "no summary" in status["note"], status


def test_two_imports_of_one_stream_started_together_both_exit_0(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src = make_source(pg_conn, pg_schema, rows=3000)
    table = f"{pg_schema}.t"
    for round_ in range(3):
        exp = export(pg_url, src)
        url = f"spool:///{tmp_path}/spool{round_}/events"
        _publish(url, exp.parts, exp.summary)
        args = [sys.executable, "-m", "tdtp.cli", "import", "--from", url, "--from-seq", "0",
                "--target", pg_url, "--table", table, "--quiet", "--workers", "1"]  # fmt: skip
        procs = [
            subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"
        ]
        results = [p.communicate(timeout=300) for p in procs]
        for proc, (_, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, f"round {round_}: {err}"
        assert differences(pg_conn, src, table) == (0, 0) and count(pg_conn, table) == 3000
        assert _status(pg_url, exp.export_id, table)["state"] == "finalized"


def _changed_body(body: bytes) -> bytes:
    """The same part (export, number, rows) with one value changed: a conflicting duplicate."""
    packet = decode_packet(body, where="test")
    rows = list(packet.rows)
    fields = rows[0].split("|")
    fields[1] = "not the real name"
    rows[0] = "|".join(fields)
    return encode_packet(Packet(header=packet.header, schema=packet.schema, rows=rows))


def test_two_different_bodies_of_one_part_in_a_directory_are_never_silently_chosen(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    _, exp, parts, paths = _exported_files(pg_url, pg_conn, pg_schema, tmp_path, rows=1500)
    impostor = parts / ("0" + paths[0].name)  # sorts first
    impostor.write_bytes(_changed_body(paths[0].read_bytes()))
    table = f"{pg_schema}.t"
    proc = _import(pg_url, str(parts), table, check=False)
    assert proc.returncode != 0
    assert (
        "conflicting duplicate" in proc.stderr
        and impostor.name in proc.stderr
        and paths[0].name in proc.stderr
    )
    exists = pg_conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
    assert exists is None or count(pg_conn, table) == 0  # nothing of the export is published
    status = _status(pg_url, exp.export_id, table)
    assert status["state"] == "blocked" and status["dead_letters"], status
    assert "conflicting duplicate" in status["dead_letters"][0]["reason"]


def test_a_part_whose_ledger_checksum_differs_is_a_conflict_not_a_duplicate(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    src = make_source(pg_conn, pg_schema, rows=1500)
    exp = export(pg_url, src)
    url = f"spool:///{tmp_path}/spool/events"
    _publish(url, exp.parts[:1])
    table = f"{pg_schema}.t"
    _import(pg_url, url, table, "--from-seq", "0", check=False)  # part 1 in the ledger, waiting
    with open_broker(url) as log:
        log.publish(_changed_body(exp.parts[0].body), exp.parts[0].headers())
    proc = _import(pg_url, url, table, "--from-seq", "1", check=False)
    assert proc.returncode != 0 and "conflicting duplicate" in proc.stderr, proc.stderr
    status = _status(pg_url, exp.export_id, table)
    assert status["dead_letters"] and "conflicting duplicate" in status["dead_letters"][0]["reason"]


def test_an_export_killed_with_sigkill_then_rerun_imports_with_exit_0(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    """The user's story: `kill -9` of `tdtp export` mid-way, rerun it, import the stream from 0."""
    import signal
    import time

    src = make_source(pg_conn, pg_schema, rows=12_000)
    url = f"spool:///{tmp_path}/spool/events"
    args = [sys.executable, "-m", "tdtp.cli", "export", "--source", pg_url, "--table", src, "--to", url,
            "--part-bytes", "4096", "--compress", "none", "--quiet"]  # fmt: skip
    victim = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and victim.poll() is None:
        try:
            with open_broker(url) as log:
                if log.high_watermark() >= 5:
                    break
        except Exception:  # noqa: BLE001 - the stream does not exist until the first part
            pass
        time.sleep(0.01)
    assert victim.poll() is None, "the export ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    run_tdtp(*args[3:])  # the rerun completes
    table = f"{pg_schema}.t"
    proc = _import(pg_url, url, table, "--from-seq", "0", check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    states = sorted(v.split(":")[0] for v in out["exports"].values())
    assert states == ["abandoned", "finalized"], out["exports"]
    assert differences(pg_conn, src, table) == (0, 0) and count(pg_conn, table) == 12_000
    assert _load_tables(pg_conn, pg_schema) == []


def test_append_exports_are_never_abandoned_for_being_overtaken(
    pg_url: str, pg_conn: psycopg.Connection, pg_schema: str, tmp_path: Path
) -> None:
    """An append export whose summary comes after another export of the table was published
    still lands every row (only a replace export overtakes, and only replace exports)."""
    src = make_source(pg_conn, pg_schema, rows=1500)
    first, second = export(pg_url, src, where="id <= 750"), export(pg_url, src, where="id > 750")
    url = f"spool:///{tmp_path}/spool/events"
    table = f"{pg_schema}.t"
    _publish(url, first.parts)
    _import(pg_url, url, table, "--from-seq", "0", "--mode", "append", check=False)
    _publish(url, second.parts, second.summary)
    waiting = _import(pg_url, url, table, "--from-seq", "0", "--mode", "append", check=False)
    assert "waiting for the summary" in waiting.stderr and "abandoned" not in waiting.stdout
    _publish(url, summary=first.summary)
    _import(pg_url, url, table, "--from-seq", "0", "--mode", "append")
    assert differences(pg_conn, src, table) == (0, 0) and count(pg_conn, table) == 1500
    for exp in (first, second):
        assert _status(pg_url, exp.export_id, table)["state"] == "finalized"


def test_a_vacuumed_sqlite_target_is_not_taken_for_a_dropped_one(tmp_path: Path) -> None:
    """VACUUM moves a table's pages; its rows are all there, so nothing is landed again."""
    import sqlite3

    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(3000)])
    run_tdtp("export", "--source", f"sqlite:///{src}", "--table", "t", "--to", str(tmp_path / "parts"))
    dst = tmp_path / "dst.db"
    args = ("import", "--from", str(tmp_path / "parts"), "--target", f"sqlite:///{dst}", "--quiet")
    run_tdtp(*args)
    with sqlite3.connect(dst) as conn:
        conn.execute("CREATE TABLE filler (x)")
        conn.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 4000,) for _ in range(200)])
        conn.execute("DROP TABLE filler")
        conn.execute("UPDATE t SET note = 'edited by the user' WHERE id = 1")
    with sqlite3.connect(dst, isolation_level=None) as conn:
        conn.execute("VACUUM")
    again = json.loads(run_tdtp(*args).stdout)
    assert again["total_rows"] == 0 and again["duplicates"] > 0, again
    with sqlite3.connect(dst) as conn:
        assert conn.execute("SELECT note FROM t WHERE id = 1").fetchone() == ("edited by the user",)
