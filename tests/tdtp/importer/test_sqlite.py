"""SQLite targets: workers decode in parallel, the one SQLite writer writes serially."""

from __future__ import annotations

import random
import sqlite3

from tdtp.brokers import open_broker
from tdtp.importer import ImportOptions, ParallelImporter
from tdtp.sources import PartitionFilter, open_source
from tests.importer_support import export, make_source, publish, summary_headers, write_files


def rows_of(url: str, table: str) -> list[tuple]:
    """Rows as the TDTP sources read them back: typed values, comparable across databases."""
    with open_source(url, table=table) as src:
        return sorted(src.rows())


def test_parts_out_of_order_and_twice_into_sqlite(pg_url, pg_conn, pg_schema, tmp_path):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src)
    order = exp.parts * 2
    random.Random(3).shuffle(order)
    target = f"sqlite:///{tmp_path}/warehouse.db"
    with open_broker(f"spool:///{tmp_path}/parts") as log:
        publish(log, order[:5])
        log.publish(exp.summary.to_json(), summary_headers(exp.summary))
        publish(log, order[5:])
        with ParallelImporter(target, ImportOptions(workers=2, table="orders")) as imp:
            stats = imp.import_log(log)
            status = imp.status(exp.export_id)
    n = len(exp.parts)
    assert (stats.parts_imported, stats.duplicates, stats.finalized) == (n, n, [exp.export_id])
    assert (status.state, status.rows_in_ledger, status.checksum_ok) == ("finalized", 3000, True)
    assert rows_of(target, "orders") == rows_of(pg_url, src)
    with sqlite3.connect(f"{tmp_path}/warehouse.db") as db:  # staging is dropped once published
        assert db.execute(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE '_tdtp_stage_%'"
        ).fetchone() == (0,)


def test_sqlite_replace_of_a_day_partition_and_upsert(pg_url, pg_conn, pg_schema, tmp_path):
    src = make_source(pg_conn, pg_schema)
    target = f"sqlite:///{tmp_path}/warehouse.db"
    with ParallelImporter(target, ImportOptions(workers=2, table="orders")) as imp:
        imp.import_files([write_files(tmp_path / "full", export(pg_url, src))[0].parent])

    pg_conn.execute(f"DELETE FROM {src} WHERE id % 3 = 0 AND created_at < '2026-01-02'")
    day1 = PartitionFilter(column="created_at", kind="day", value="2026-01-01")
    with ParallelImporter(target, ImportOptions(workers=2, table="orders")) as imp:
        stats = imp.import_files(
            [write_files(tmp_path / "day1", export(pg_url, src, partition=day1))[0].parent]
        )
    assert len(stats.finalized) == 1
    assert rows_of(target, "orders") == rows_of(pg_url, src)

    pg_conn.execute(f"UPDATE {src} SET note = 'upserted' WHERE id > 2900")
    delta = export(pg_url, src, where="id > 2700", part_bytes=4_000)
    with ParallelImporter(target, ImportOptions(workers=2, table="orders", mode="upsert")) as imp:
        stats = imp.import_files([write_files(tmp_path / "delta", delta)[0].parent])
    assert stats.finalized == [delta.export_id]
    assert rows_of(target, "orders") == rows_of(pg_url, src)
