"""Parallel importer against the real PostgreSQL, with the spool broker and part files.

Every test ends by comparing the target with the source (EXCEPT ALL both ways, so
a duplicated row would show), because "exactly once" is what a user relies on.
Where the publish strategy matters, a test runs with ``publish="copy"`` (staged
bodies, one COPY) and ``publish="auto"`` (a whole-table replace: the workers load a
table that is swapped in); tests/tdtp/importer/test_swap.py has the swap-only cases.
"""

from __future__ import annotations

import json
import random
import threading
import time

import psycopg
import pytest

from tdtp.brokers import open_broker
from tdtp.cli import main as cli_main
from tdtp.importer import ImportOptions, ParallelImporter, export_status
from tdtp.importer.dispatch import DEFAULT_EXPANSION
from tdtp.sources import PartitionFilter
from tests.importer_support import (
    count,
    differences,
    export,
    make_source,
    summary_headers,
    write_files,
)
from tests.importer_support import publish as publish_parts


def spool(tmp_path, name: str = "parts"):
    return open_broker(f"spool:///{tmp_path}/{name}")


def importer(pg_url: str, table: str, **options) -> ParallelImporter:
    options.setdefault("workers", 2)
    return ParallelImporter(pg_url, ImportOptions(table=table, **options))


STRATEGIES = pytest.mark.parametrize("publish", ["copy", "auto"], ids=["copy", "swap"])


def published_by(stats, export_id: str) -> str:
    """``copy`` / ``swap`` / ``attach`` / ``insert``: how the run published the export."""
    return stats.publish[export_id].split(" ", 1)[0]


@pytest.mark.parametrize(
    ("publish", "live_publish"),
    [("copy", True), ("copy", False), ("auto", True)],
    ids=["copy-live", "copy-at-end", "swap"],
)
def test_parts_out_of_order_and_each_twice_land_exactly_once(
    pg_url, pg_conn, pg_schema, tmp_path, publish, live_publish
):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src)
    shuffled = exp.parts[:]
    random.Random(7).shuffle(shuffled)
    dst = f"{pg_schema}.dst"
    with spool(tmp_path) as log:
        publish_parts(log, shuffled[: len(shuffled) // 2])
        log.publish(exp.summary.to_json(), summary_headers(exp.summary))
        publish_parts(log, shuffled[len(shuffled) // 2 :] + list(reversed(shuffled)))
        with importer(pg_url, dst, live_publish=live_publish, publish=publish) as imp:
            stats = imp.import_log(log)

    n = len(exp.parts)
    assert (stats.parts_imported, stats.duplicates, stats.dead_letters) == (n, n, 0)
    assert stats.total_rows == 3000 and stats.finalized == [exp.export_id]
    assert published_by(stats, exp.export_id) == ("copy" if publish == "copy" else "swap")
    assert differences(pg_conn, src, dst) == (0, 0)
    figures = stats.as_dict()
    for key in (
        "avg_part_seconds",
        "p50_part_seconds",
        "p95_part_seconds",
        "rows_per_second",
        "mb_per_second",
    ):
        assert figures[key] > 0, key
    assert figures["peak_rss_mb"] > 0 and figures["worker_peak_rss_mb"] > 0
    assert f"{n} duplicates skipped" in stats.summary_line()

    status = export_status(pg_url, exp.export_id)
    assert (status.state, status.parts_in_ledger, status.total_rows, status.checksum_ok) == (
        "finalized",
        n,
        3000,
        True,
    )
    assert status.publish == ("copy" if publish == "copy" else "swap")
    with ParallelImporter(pg_url) as other:
        again = other.finalize(exp.export_id)
    assert again.finalized and again.already
    assert count(pg_conn, dst) == 3000


@STRATEGIES
def test_a_missing_part_holds_finalize_and_status_names_the_gap(
    pg_url, pg_conn, pg_schema, tmp_path, capsys, publish
):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src)
    dst = f"{pg_schema}.dst"
    missing = exp.parts[2]
    with spool(tmp_path) as log:
        publish_parts(log, [p for p in exp.parts if p is not missing])
        log.publish(exp.summary.to_json(), summary_headers(exp.summary))
        with importer(pg_url, dst, publish=publish) as imp:
            stats = imp.import_log(log)
            assert stats.finalized == []
            assert "waiting for part(s) 3 of" in stats.exports[exp.export_id]
            assert count(pg_conn, dst) == 0  # staged, not published
            assert not imp.finalize(exp.export_id).finalized

            assert cli_main(["status", exp.export_id, "--target", pg_url]) == 0
            shown = json.loads(capsys.readouterr().out)
            assert shown["missing_parts"] == [3] and shown["state"] == "importing"
            assert shown["parts_in_ledger"] == len(exp.parts) - 1

            last = log.high_watermark() - 1
            log.publish(missing.body, missing.headers())
            stats = imp.import_log(log, after_seq=last)
    assert stats.parts_imported == 1 and stats.finalized == [exp.export_id]
    assert differences(pg_conn, src, dst) == (0, 0)


@STRATEGIES
def test_corrupted_part_is_dead_lettered_and_blocks_finalize_until_a_good_copy(
    pg_url, pg_conn, pg_schema, tmp_path, publish
):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src, batch=True, hashes=True)  # Go-style batch files: TotalParts in every part
    files = write_files(tmp_path / "out", exp, summary=False)
    good = files[1].read_bytes()
    i = good.index(b"<R>") + 200
    files[1].write_bytes(good[:i] + (b"A" if good[i : i + 1] != b"A" else b"B") + good[i + 1 :])
    dst = f"{pg_schema}.dst"

    with importer(pg_url, dst, publish=publish) as imp:
        stats = imp.import_files([tmp_path / "out"])
        assert (stats.parts_imported, stats.dead_letters) == (len(files) - 1, 1)
        assert str(files[1]) in stats.errors[0]
        status = imp.status(exp.export_id)
        assert status.state == "blocked" and status.missing_parts == [2]
        assert [d["part_number"] for d in status.dead_letters] == [2]
        refused = imp.finalize(exp.export_id)
        assert refused.state == "blocked" and "dead letter" in refused.reason
        assert count(pg_conn, dst) == 0

        retried = imp.replay_dead_letters(exp.export_id)  # the stored body is still corrupt
        assert retried.dead_letters == 1 and retried.parts_imported == 0
        [letter] = imp.status(exp.export_id).dead_letters
        assert letter["attempts"] == 2 and letter["source"] == str(files[1])

        files[1].write_bytes(good)  # a good copy arrives
        stats = imp.import_files([tmp_path / "out"])
    assert stats.parts_imported == 1 and stats.duplicates == len(files) - 1
    assert stats.finalized == [exp.export_id]
    assert published_by(stats, exp.export_id) == ("copy" if publish == "copy" else "swap")
    assert differences(pg_conn, src, dst) == (0, 0)
    assert export_status(pg_url, exp.export_id).dead_letters == []


@STRATEGIES
def test_dead_letters_replay_once_the_target_is_fixed(pg_url, pg_conn, pg_schema, tmp_path, publish):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src)
    write_files(tmp_path / "out", exp)
    dst = f"{pg_schema}.dst"
    pg_conn.execute(
        f"CREATE TABLE {dst} AS SELECT id, name, amount, created_at, flag, score, payload FROM {src} LIMIT 0"
    )

    with importer(pg_url, dst, publish=publish, schema="freeze") as imp:
        stats = imp.import_files([tmp_path / "out"])
        assert stats.parts_imported == 0 and stats.dead_letters == len(exp.parts)
        assert "schema change refused" in stats.errors[0] and "added note (text)" in stats.errors[0]
        assert imp.status(exp.export_id).state == "blocked"

        pg_conn.execute(f"ALTER TABLE {dst} ADD COLUMN note text")
        replayed = imp.replay_dead_letters(exp.export_id)  # the session database holds other tests' too
    assert replayed.parts_imported == len(exp.parts) and replayed.dead_letters == 0
    assert replayed.finalized == [exp.export_id]
    assert published_by(replayed, exp.export_id) == ("copy" if publish == "copy" else "swap")
    assert differences(pg_conn, src, dst) == (0, 0)
    assert export_status(pg_url, exp.export_id).dead_letters == []


def test_reexport_of_a_partition_in_replace_mode_leaves_only_the_new_rows(
    pg_url, pg_conn, pg_schema, tmp_path
):
    src = make_source(pg_conn, pg_schema)
    dst = f"{pg_schema}.dst"
    day1 = PartitionFilter(column="created_at", kind="day", value="2026-01-01")
    with importer(pg_url, dst) as imp:
        imp.import_files([write_files(tmp_path / "full", export(pg_url, src))[0].parent])
        assert differences(pg_conn, src, dst) == (0, 0)

        old = export(pg_url, src, partition=day1, part_bytes=10_000)
        pg_conn.execute(f"DELETE FROM {src} WHERE id % 5 = 0 AND created_at < '2026-01-02'")
        pg_conn.execute(f"UPDATE {src} SET note = 'changed' WHERE id % 5 = 1 AND created_at < '2026-01-02'")
        pg_conn.execute(
            f"INSERT INTO {src} (id, name, created_at) VALUES (100001, 'new', '2026-01-01 12:00+00')"
        )
        new = export(pg_url, src, partition=day1, part_bytes=10_000)

        stats = imp.import_files([write_files(tmp_path / "new", new)[0].parent])
        assert stats.finalized == [new.export_id]
        assert stats.publish[new.export_id] == "copy (not swapped: the target table is not partitioned)"
        assert differences(pg_conn, src, dst) == (0, 0)

        late = imp.import_files(
            [write_files(tmp_path / "old", old)[0].parent]
        )  # the older export arrives late
    assert late.finalized == [] and "superseded" in late.exports[old.export_id]
    assert differences(pg_conn, src, dst) == (0, 0)


def test_upsert_by_key_updates_and_inserts_and_keeps_other_rows(pg_url, pg_conn, pg_schema, tmp_path):
    src = make_source(pg_conn, pg_schema)
    dst = f"{pg_schema}.dst"
    with importer(pg_url, dst) as imp:
        imp.import_files([write_files(tmp_path / "full", export(pg_url, src))[0].parent])
    pg_conn.execute(f"UPDATE {src} SET name = 'renamed', note = NULL WHERE id BETWEEN 2001 AND 2500")
    pg_conn.execute(
        f"INSERT INTO {src} (id, name) SELECT g, 'fresh ' || g FROM generate_series(3001, 3400) g"
    )
    delta = export(pg_url, src, where="id > 2000", part_bytes=10_000)
    pg_conn.execute(f"DELETE FROM {src} WHERE id <= 10")  # deleted at the source: upsert keeps them

    with importer(pg_url, dst, mode="upsert") as imp:
        stats = imp.import_files([write_files(tmp_path / "delta", delta)[0].parent])
    assert stats.finalized == [delta.export_id] and published_by(stats, delta.export_id) == "copy"
    assert differences(pg_conn, src, dst) == (0, 10)
    assert count(pg_conn, f"{dst} WHERE name = 'renamed'") == 500


def test_stream_without_summary_is_published_in_append_mode_and_reported(
    pg_url, pg_conn, pg_schema, tmp_path
):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src)
    first, rest = exp.parts[:2], exp.parts[2:]
    dst = f"{pg_schema}.dst"
    with spool(tmp_path) as log:
        publish_parts(log, first, headers=False)  # a Go producer: no headers, no summary
        with importer(pg_url, dst) as imp:
            stats = imp.import_log(log)
        assert stats.finalized == [] and count(pg_conn, dst) == 0
        assert "upsert or append" in stats.exports[exp.export_id]

        with importer(pg_url, dst, mode="append") as imp:  # the user reruns in append mode
            stats = imp.import_log(log)
            assert stats.no_summary == [exp.export_id]
            assert imp.status(exp.export_id).state == "no summary"
            mark = log.high_watermark() - 1
            publish_parts(log, rest + first, headers=False)
            stats = imp.import_log(log, after_seq=mark)
    assert stats.parts_imported == len(rest) and stats.duplicates == len(first)
    assert differences(pg_conn, src, dst) == (0, 0)


@STRATEGIES
def test_a_lock_of_the_moment_is_retried_not_dead_lettered(pg_url, pg_conn, pg_schema, tmp_path, publish):
    src = make_source(pg_conn, pg_schema, rows=1000)
    exp = export(pg_url, src, part_bytes=8_000)
    write_files(tmp_path / "out", exp)
    dst = f"{pg_schema}.dst"
    with importer(pg_url, dst) as imp:
        imp.status("nothing yet")  # bookkeeping tables exist before someone locks one
    pg_conn.execute(f"CREATE TABLE {dst} (LIKE {src} INCLUDING ALL)")
    # Say, a VACUUM FULL of the staging table (copy), or of the target the load table is made like (swap).
    locked = "tdtp._tdtp_stage_parts" if publish == "copy" else dst
    release = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(pg_url) as other:
            other.execute(f"LOCK TABLE {locked} IN ACCESS EXCLUSIVE MODE")
            release.wait(10)
            time.sleep(0.6)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    time.sleep(0.3)
    release.set()
    imp = importer(pg_url, dst, lock_timeout_seconds=0.2, retries=6, backoff_seconds=0.1, publish=publish)
    stats = imp.import_files([tmp_path / "out"])
    holder.join()
    assert stats.retries >= 1 and stats.dead_letters == 0
    assert stats.finalized == [exp.export_id]
    assert published_by(stats, exp.export_id) == ("copy" if publish == "copy" else "swap")
    assert differences(pg_conn, src, dst) == (0, 0)


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_bounded_queue_and_memory_limit_still_import_everything(
    pg_url, pg_conn, pg_schema, tmp_path, executor
):
    src = make_source(pg_conn, pg_schema, rows=1500)
    exp = export(pg_url, src, part_bytes=8_000)
    write_files(tmp_path / "out", exp)
    dst = f"{pg_schema}.dst"
    stats = importer(pg_url, dst, executor=executor, queue_parts=1).import_files([tmp_path / "out"])
    assert stats.max_in_flight == 1 and stats.memory_pauses == 0
    exp2 = export(pg_url, src, part_bytes=8_000)
    write_files(tmp_path / "out2", exp2)
    # A budget below one part: receiving pauses for every part, yet one part always goes.
    limit = min(len(p.body) for p in exp2.parts) * DEFAULT_EXPANSION / 2**20 / 2
    stats2 = importer(pg_url, f"{pg_schema}.dst2", executor=executor, memory_limit_mb=limit).import_files(
        [tmp_path / "out2"]
    )
    assert stats2.memory_pauses == len(exp2.parts) - 1 and stats2.max_in_flight == 1
    assert stats.finalized == [exp.export_id] and stats2.finalized == [exp2.export_id]
    assert differences(pg_conn, src, dst) == (0, 0)
    assert differences(pg_conn, src, f"{pg_schema}.dst2") == (0, 0)


def test_parts_in_flight_default_to_one_per_worker(pg_url, pg_conn, pg_schema, tmp_path):
    """Each part in flight holds its body in the receiving process: one per worker keeps
    every worker busy, more only held more bytes (bench/memory.py)."""
    src = make_source(pg_conn, pg_schema, rows=1500)
    exp = export(pg_url, src, part_bytes=8_000)
    write_files(tmp_path / "out", exp)
    assert len(exp.parts) > 6
    stats = importer(pg_url, f"{pg_schema}.dst", workers=2).import_files([tmp_path / "out"])
    assert stats.max_in_flight == 2
    assert stats.finalized == [exp.export_id]
    assert differences(pg_conn, src, f"{pg_schema}.dst") == (0, 0)


@STRATEGIES
def test_rows_the_target_refuses_at_publish_dead_letter_their_part_and_publish_nothing(
    pg_url, pg_conn, pg_schema, tmp_path, publish
):
    src = make_source(pg_conn, pg_schema, rows=1000)
    exp = export(pg_url, src, part_bytes=8_000)
    write_files(tmp_path / "out", exp)
    dst = f"{pg_schema}.dst"
    pg_conn.execute(f"CREATE TABLE {dst} (LIKE {src} INCLUDING ALL, CONSTRAINT no_500 CHECK (id <> 500))")
    bad_part = next(i for i, p in enumerate(exp.parts, 1) if _holds_id(p, 500))

    with importer(pg_url, dst, publish=publish) as imp:
        stats = imp.import_files([tmp_path / "out"])
        assert stats.dead_letters == 1 and "no_500" in stats.errors[0]
        status = imp.status(exp.export_id)
        assert status.state == "blocked" and status.missing_parts == [bad_part]
        assert [d["part_number"] for d in status.dead_letters] == [bad_part]
        assert count(pg_conn, dst) == 0  # atomic: none of the export is visible

        pg_conn.execute(f"ALTER TABLE {dst} DROP CONSTRAINT no_500")
        replayed = imp.replay_dead_letters(exp.export_id)
    assert replayed.parts_imported == 1 and replayed.finalized == [exp.export_id]
    assert published_by(replayed, exp.export_id) == ("copy" if publish == "copy" else "swap")
    assert differences(pg_conn, src, dst) == (0, 0)
    # The swap carried the target's constraints and indexes: the primary key still says no to id 1.
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg_conn.execute(f"INSERT INTO {dst} (id, name) VALUES (1, 'again')")


def _holds_id(part, wanted: int) -> bool:
    from tdtp.codec import decode_packet

    return any(line.split("|", 1)[0] == str(wanted) for line in decode_packet(part.body).rows)
