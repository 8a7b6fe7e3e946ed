"""Swap and attach publish (PostgreSQL replace mode): rows loaded in parallel, published by a catalog change.

Each test checks the rows against the source (EXCEPT ALL both ways) and what the
swap must keep: which strategy was chosen and why, atomic visibility, indexes,
grants, partitions other than the one replaced.
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from tdtp.brokers import open_broker
from tdtp.importer import ImportOptions, ParallelImporter, export_status
from tdtp.packet import TdtpError
from tdtp.sources import PartitionFilter
from tests.importer_support import count, differences, export, make_source, summary_headers, write_files
from tests.importer_support import publish as publish_parts

DAY1 = PartitionFilter(column="created_at", kind="day", value="2026-01-01")
DAY2 = PartitionFilter(column="created_at", kind="day", value="2026-01-02")


def importer(pg_url: str, table: str, **options) -> ParallelImporter:
    options.setdefault("workers", 2)
    return ParallelImporter(pg_url, ImportOptions(table=table, **options))


def leftover_load_tables(conn, schema: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname LIKE %s",
            (schema, "%\\_\\_tdtp\\_%"),
        ).fetchall()
    ]


def partitions_of(conn, table: str) -> dict[str, int]:
    """Partition name -> oid."""
    return dict(
        conn.execute(
            "SELECT c.relname, c.oid FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY 1",
            (table,),
        ).fetchall()
    )


class CountingReader:
    """A reader counting rows in a loop on its own connection while an import publishes."""

    def __init__(self, pg_url: str, query: str) -> None:
        self.pg_url, self.query = pg_url, query
        self.seen: set[int] = set()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            while not self._stop.is_set():
                try:
                    self.seen.add(conn.execute(self.query).fetchone()[0])
                except psycopg.Error as exc:  # a reader must never see the table missing
                    self.errors.append(str(exc))
                time.sleep(0.002)

    def wait_for(self, value: int | None = None, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.errors and (not self.seen if value is None else value not in self.seen):
            assert time.monotonic() < deadline, f"the reader never saw {value} (saw {self.seen})"
            time.sleep(0.005)

    def __enter__(self) -> CountingReader:
        self._thread.start()
        self.wait_for()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def keyed_by_day(conn, schema: str) -> str:
    """make_source with a primary key that includes the day-partition column, rows of two days only."""
    src = make_source(conn, schema)
    conn.execute(f"ALTER TABLE {src} DROP CONSTRAINT src_pkey, ADD PRIMARY KEY (id, created_at)")
    conn.execute(f"DELETE FROM {src} WHERE created_at >= '2026-01-03'")  # the last row starts a third day
    return src


def test_swap_replaces_the_table_and_readers_see_only_the_old_or_the_new_rows(
    pg_url, pg_conn, pg_schema, tmp_path
):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src, part_bytes=8_000)
    dst = f"{pg_schema}.dst"
    role = f"tdtp_reader_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(f"CREATE TABLE {dst} (LIKE {src} INCLUDING ALL)")
    pg_conn.execute(f"INSERT INTO {dst} SELECT * FROM {src} WHERE id <= 500")
    pg_conn.execute(f"CREATE INDEX dst_by_name ON {dst} (name) WHERE note IS NOT NULL")
    pg_conn.execute(f"COMMENT ON TABLE {dst} IS 'orders, replaced nightly'")
    pg_conn.execute(f"CREATE ROLE {role}")
    pg_conn.execute(f"GRANT USAGE ON SCHEMA {pg_schema} TO {role}")
    pg_conn.execute(f"GRANT SELECT ON {dst} TO {role}")
    old_oid = pg_conn.execute("SELECT %s::regclass::oid", (dst,)).fetchone()[0]

    try:
        with CountingReader(pg_url, f"SELECT count(*) FROM {dst}") as reader:
            with open_broker(f"spool:///{tmp_path}/parts") as log:
                publish_parts(log, exp.parts[:3])
                with importer(pg_url, dst) as imp:
                    imp.import_log(log)  # three parts in the load table, nothing published
                    assert reader.seen == {500}
                    publish_parts(log, exp.parts[3:])
                    log.publish(exp.summary.to_json(), summary_headers(exp.summary))
                    stats = imp.import_log(log)
                    again = imp.finalize(exp.export_id)
            reader.wait_for(3000)
    finally:
        grants = pg_conn.execute("SELECT has_table_privilege(%s, %s, 'SELECT')", (role, dst)).fetchone()[0]
        pg_conn.execute(f"DROP OWNED BY {role}")
        pg_conn.execute(f"DROP ROLE {role}")

    assert reader.errors == [] and reader.seen == {500, 3000}
    assert stats.finalized == [exp.export_id] and stats.publish == {exp.export_id: "swap"}
    assert again.finalized and again.already
    assert differences(pg_conn, src, dst) == (0, 0)
    assert pg_conn.execute("SELECT %s::regclass::oid", (dst,)).fetchone()[0] != old_oid  # a new table
    assert leftover_load_tables(pg_conn, pg_schema) == []
    indexes = dict(
        pg_conn.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = %s::regclass",
            (dst,),
        ).fetchall()
    )
    assert sorted(name.rsplit(".", 1)[-1] for name in indexes) == ["dst_by_name", "dst_pkey"]
    assert any("WHERE (note IS NOT NULL)" in text for text in indexes.values())
    assert pg_conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", (dst,)
    ).fetchone() == ("dst_pkey",)
    assert pg_conn.execute("SELECT obj_description(%s::regclass, 'pg_class')", (dst,)).fetchone() == (
        "orders, replaced nightly",
    )
    assert grants
    status = export_status(pg_url, exp.export_id)
    assert (status.state, status.publish) == ("finalized", "swap")


def test_a_dependent_view_keeps_the_copy_path_and_publish_swap_refuses_it(
    pg_url, pg_conn, pg_schema, tmp_path
):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src)
    write_files(tmp_path / "out", exp)
    dst = f"{pg_schema}.dst"
    pg_conn.execute(f"CREATE TABLE {dst} (LIKE {src} INCLUDING ALL)")
    pg_conn.execute(f"CREATE VIEW {pg_schema}.named AS SELECT id, name FROM {dst}")

    with importer(pg_url, dst, publish="swap") as imp:
        refused = imp.import_files([tmp_path / "out"])
    assert refused.parts_imported == 0 and refused.dead_letters == len(exp.parts)
    assert f"view {pg_schema}.named depends on it" in refused.errors[0]
    assert "publish='swap' is not possible" in refused.errors[0]

    with importer(pg_url, dst) as imp:  # auto: the view rules the swap out, copy it is
        stats = imp.replay_dead_letters(exp.export_id)
    assert stats.finalized == [exp.export_id]
    assert stats.publish[exp.export_id] == f"copy (not swapped: view {pg_schema}.named depends on it)"
    assert differences(pg_conn, src, dst) == (0, 0)
    assert count(pg_conn, f"{pg_schema}.named") == 3000
    assert export_status(pg_url, exp.export_id).publish == "copy"


def test_a_view_created_during_the_import_turns_the_swap_into_one_insert(
    pg_url, pg_conn, pg_schema, tmp_path
):
    src = make_source(pg_conn, pg_schema)
    exp = export(pg_url, src)
    dst = f"{pg_schema}.dst"
    with open_broker(f"spool:///{tmp_path}/parts") as log:
        publish_parts(log, exp.parts)
        with importer(pg_url, dst) as imp:
            first = imp.import_log(log)  # a whole-table stream: loaded for a swap, waiting for the summary
            assert first.finalized == [] and count(pg_conn, dst) == 0
            pg_conn.execute(f"CREATE VIEW {pg_schema}.named AS SELECT id, name FROM {dst}")
            mark = log.high_watermark() - 1
            log.publish(exp.summary.to_json(), summary_headers(exp.summary))
            stats = imp.import_log(log, after_seq=mark)
    assert stats.finalized == [exp.export_id]
    assert stats.publish[exp.export_id].startswith("insert (INSERT from the load table: view")
    assert count(pg_conn, f"{pg_schema}.named") == 3000
    assert differences(pg_conn, src, dst) == (0, 0)
    assert leftover_load_tables(pg_conn, pg_schema) == []


def test_partition_attach_replaces_exactly_one_partition(pg_url, pg_conn, pg_schema, tmp_path):
    src = keyed_by_day(pg_conn, pg_schema)
    dst = f"{pg_schema}.dst"
    with importer(pg_url, dst) as imp:
        for n, day in enumerate((DAY1, DAY2)):
            exp = export(pg_url, src, partition=day, part_bytes=10_000)
            stats = imp.import_files([write_files(tmp_path / f"day{n}", exp)[0].parent])
            assert stats.publish == {exp.export_id: "attach"}  # no "ATTACH scanned": the CHECK was there
        assert pg_conn.execute(
            "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = %s::regclass", (dst,)
        ).fetchone() == ("r",)
        before = partitions_of(pg_conn, dst)
        assert sorted(before) == ["dst_20260101", "dst_20260102"]
        assert differences(pg_conn, src, dst) == (0, 0)

        old = export(pg_url, src, partition=DAY1, part_bytes=10_000)
        pg_conn.execute(f"DELETE FROM {src} WHERE id % 5 = 0 AND created_at < '2026-01-02'")
        pg_conn.execute(f"UPDATE {src} SET note = 'changed' WHERE id % 5 = 1 AND created_at < '2026-01-02'")
        new = export(pg_url, src, partition=DAY1, part_bytes=10_000)
        day1_rows = f"SELECT count(*) FROM {dst} WHERE created_at < '2026-01-02'"
        day1 = " WHERE created_at < '2026-01-02'"
        old_count, new_count = count(pg_conn, dst + day1), count(pg_conn, src + day1)
        assert old_count != new_count
        with CountingReader(pg_url, day1_rows) as reader:
            stats = imp.import_files([write_files(tmp_path / "new", new)[0].parent])
            reader.wait_for(new_count)
        assert reader.errors == [] and reader.seen == {old_count, new_count}
        assert stats.finalized == [new.export_id] and stats.publish == {new.export_id: "attach"}
        after = partitions_of(pg_conn, dst)
        assert sorted(after) == ["dst_20260101", "dst_20260102"]
        assert after["dst_20260102"] == before["dst_20260102"]  # untouched
        assert after["dst_20260101"] != before["dst_20260101"]  # a new table in its place
        assert differences(pg_conn, src, dst) == (0, 0)

        late = imp.import_files([write_files(tmp_path / "old", old)[0].parent])  # the older export, late
        assert late.finalized == [] and "superseded" in late.exports[old.export_id]
        again = imp.finalize(new.export_id)
    assert again.finalized and again.already
    assert differences(pg_conn, src, dst) == (0, 0)
    assert leftover_load_tables(pg_conn, pg_schema) == []
    assert pg_conn.execute(  # the partition's primary key, attached to the parent's, under the old name
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (f"{pg_schema}.dst_20260101",),
    ).fetchone() == (f"{pg_schema}.dst_20260101_pkey",)


def test_a_partition_streamed_before_its_summary_creates_the_partitioned_table_at_publish(
    pg_url, pg_conn, pg_schema, tmp_path
):
    src = keyed_by_day(pg_conn, pg_schema)
    exp = export(pg_url, src, partition=DAY2, part_bytes=10_000)
    dst = f"{pg_schema}.dst"
    with open_broker(f"spool:///{tmp_path}/parts") as log:
        publish_parts(log, exp.parts[1:] + exp.parts[:2])  # partition key in the headers, no filter yet
        with importer(pg_url, dst) as imp:
            first = imp.import_log(log)
            assert first.finalized == [] and first.duplicates == 1
            status = imp.status(exp.export_id)
            assert (status.publish, status.state) == ("attach", "importing")
            assert pg_conn.execute("SELECT to_regclass(%s)", (dst,)).fetchone() == (None,)  # made at publish
            mark = log.high_watermark() - 1
            log.publish(exp.summary.to_json(), summary_headers(exp.summary))
            stats = imp.import_log(log, after_seq=mark)
    assert stats.finalized == [exp.export_id]
    assert stats.publish[exp.export_id] == "attach (created the table partitioned)"
    assert list(partitions_of(pg_conn, dst)) == ["dst_20260102"]
    assert differences(pg_conn, f"{src} WHERE created_at >= '2026-01-02'", dst) == (0, 0)


def test_key_fields_without_the_partition_column_fall_back_to_copy_and_say_why(
    pg_url, pg_conn, pg_schema, tmp_path
):
    src = make_source(pg_conn, pg_schema)  # primary key (id): not partitionable by created_at
    exp = export(pg_url, src, partition=DAY1, part_bytes=10_000)
    dst = f"{pg_schema}.dst"
    with importer(pg_url, dst) as imp:
        stats = imp.import_files([write_files(tmp_path / "out", exp)[0].parent])
    why = (
        "the key fields (id) do not include the partition column created_at: "
        "a partitioned table's primary key must include it"
    )
    assert stats.publish[exp.export_id] == f"copy (not swapped: the table is created unpartitioned: {why})"
    status = export_status(pg_url, exp.export_id)
    assert status.publish == "copy" and why in status.publish_note and why in status.describe()
    assert pg_conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (dst,)).fetchone() == (
        "r",
    )
    assert differences(pg_conn, f"{src} WHERE created_at < '2026-01-02'", dst) == (0, 0)


def test_list_partition_of_an_existing_table_is_replaced_and_the_others_stay(
    pg_url, pg_conn, pg_schema, tmp_path
):
    src, dst = f"{pg_schema}.src", f"{pg_schema}.dst"
    columns = "id, region, amount, created_at"
    pg_conn.execute(
        f"CREATE TABLE {src} (id bigint, region text, amount numeric(12,2), created_at timestamptz, "
        "PRIMARY KEY (id, region))"
    )
    pg_conn.execute(
        f"INSERT INTO {src} SELECT g, (ARRAY['eu','us'])[g % 2 + 1], g * 1.5, "
        "timestamptz '2026-01-01 00:00+00' + g * interval '1 minute' FROM generate_series(1, 3000) g"
    )
    pg_conn.execute(f"CREATE TABLE {dst} (LIKE {src} INCLUDING ALL) PARTITION BY LIST (region)")
    pg_conn.execute(f"CREATE TABLE {pg_schema}.dst_eu PARTITION OF {dst} FOR VALUES IN ('eu')")
    pg_conn.execute(f"CREATE TABLE {pg_schema}.dst_us PARTITION OF {dst} FOR VALUES IN ('us')")
    pg_conn.execute(f"INSERT INTO {dst} SELECT * FROM {src}")
    pg_conn.execute(f"CREATE VIEW {pg_schema}.totals AS SELECT region, sum(amount) FROM {dst} GROUP BY 1")
    us_before = partitions_of(pg_conn, dst)["dst_us"]

    pg_conn.execute(f"UPDATE {src} SET amount = -amount WHERE region = 'eu'")
    pg_conn.execute(f"DELETE FROM {src} WHERE region = 'eu' AND id > 2000")
    eu = PartitionFilter(column="region", kind="value", value="eu")
    exp = export(pg_url, src, partition=eu, part_bytes=4_000)
    with importer(pg_url, dst) as imp:
        stats = imp.import_files([write_files(tmp_path / "eu", exp)[0].parent])
    assert stats.publish == {exp.export_id: "attach"}  # a view on the parent does not stop an attach
    after = partitions_of(pg_conn, dst)
    assert sorted(after) == ["dst_eu", "dst_us"] and after["dst_us"] == us_before
    assert differences(pg_conn, src, dst, columns) == (0, 0)
    assert count(pg_conn, f"{pg_schema}.totals") == 2


def test_publish_swap_is_refused_for_modes_that_do_not_replace():
    with pytest.raises(TdtpError, match="upsert mode publishes by copy"):
        ImportOptions(publish="swap", mode="upsert").validate()
    with pytest.raises(TdtpError, match="unknown publish strategy"):
        ImportOptions(publish="rename").validate()


def test_bookkeeping_of_an_earlier_version_gets_the_publish_columns(pg_url, tmp_path):
    from tests.conftest import PG_ADMIN_URL

    name = f"tdtp_test_{uuid.uuid4().hex[:10]}"
    url = pg_url.rpartition("/")[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            export_status(url, "none")  # bookkeeping as this version makes it, then made old
            conn.execute(
                "ALTER TABLE tdtp._tdtp_exports DROP COLUMN publish, DROP COLUMN load_table, "
                "DROP COLUMN publish_note"
            )
            src = make_source(conn, "public")
            exp = export(url, src)
            stats = importer(url, "dst").import_files([write_files(tmp_path / "out", exp)[0].parent])
            assert stats.publish == {exp.export_id: "swap"}
            assert differences(conn, src, "dst") == (0, 0)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_partition_bounds_for_each_kind_and_column_type(pg_conn):
    from tdtp.importer.swap_plan import _tokens, make_bound

    hour = PartitionFilter(column="ts", kind="hour", value="2026-01-05T13")
    bound = make_bound(pg_conn, "ts", "timestamp without time zone", hour)
    assert bound.spec == "FOR VALUES FROM ('2026-01-05 13:00:00') TO ('2026-01-05 14:00:00')"
    assert bound.label == "2026010513"
    day = make_bound(pg_conn, "ts", "timestamp with time zone", DAY1)
    assert day.spec == "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-01-02 00:00:00+00')"
    assert make_bound(pg_conn, "d", "date", DAY1).spec == "FOR VALUES FROM ('2026-01-01') TO ('2026-01-02')"
    assert "needs a timestamp" in make_bound(pg_conn, "d", "date", hour)
    assert "needs a timestamp" in make_bound(pg_conn, "n", "bigint", DAY1)
    odd = PartitionFilter(column="region", kind="value", value="o'hare | west")
    value = make_bound(pg_conn, "region", "text", odd)
    assert value.spec == "FOR VALUES IN ('o''hare | west')" and value.label.startswith("o_hare_west_")
    assert "not a valid bigint" in make_bound(
        pg_conn, "n", "bigint", PartitionFilter(column="n", kind="value", value="x")
    )
    assert _tokens(" ('a''b', 'c', NULL, 12)") == ["a'b", "c", None, "12"]
    assert _tokens(" (MINVALUE) TO ('2026-01-01 00:00:00+00')") == ["MINVALUE", "2026-01-01 00:00:00+00"]


def test_an_overlapping_partition_keeps_the_copy_path(pg_url, pg_conn, pg_schema, tmp_path):
    src = keyed_by_day(pg_conn, pg_schema)
    dst = f"{pg_schema}.dst"
    pg_conn.execute(f"CREATE TABLE {dst} (LIKE {src} INCLUDING ALL) PARTITION BY RANGE (created_at)")
    pg_conn.execute(
        f"CREATE TABLE {pg_schema}.dst_2026_01 PARTITION OF {dst} "
        "FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2026-02-01 00:00+00')"
    )
    exp = export(pg_url, src, partition=DAY1, part_bytes=10_000)
    with importer(pg_url, dst) as imp:
        stats = imp.import_files([write_files(tmp_path / "out", exp)[0].parent])
    assert stats.publish[exp.export_id].startswith(
        "copy (not swapped: partition dst_2026_01 (FOR VALUES FROM"
    )
    assert "overlaps it" in stats.publish[exp.export_id]
    assert differences(pg_conn, f"{src} WHERE created_at < '2026-01-02'", dst) == (0, 0)


def test_streamed_partitions_whose_key_rules_out_partitioning_land_in_a_plain_table(
    pg_url, pg_conn, pg_schema, tmp_path
):
    src = make_source(pg_conn, pg_schema)  # primary key (id) only
    pg_conn.execute(f"DELETE FROM {src} WHERE created_at >= '2026-01-03'")
    day1, day2 = (export(pg_url, src, partition=day, part_bytes=10_000) for day in (DAY1, DAY2))
    dst = f"{pg_schema}.dst"
    with open_broker(f"spool:///{tmp_path}/parts") as log:
        publish_parts(log, day1.parts + day2.parts)  # both loaded before either summary names its filter
        with importer(pg_url, dst) as imp:
            first = imp.import_log(log)
            assert first.finalized == [] and {imp.status(e.export_id).publish for e in (day1, day2)} == {
                "attach"
            }
            mark = log.high_watermark() - 1
            for e in (day1, day2):
                log.publish(e.summary.to_json(), summary_headers(e.summary))
            stats = imp.import_log(log, after_seq=mark)
    assert stats.finalized == [day1.export_id, day2.export_id]
    assert stats.publish[day1.export_id].startswith(
        "swap (the table was created unpartitioned: the key fields"
    )
    assert stats.publish[day2.export_id] == (
        "insert (INSERT from the load table: the target table is not partitioned)"
    )
    assert pg_conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (dst,)).fetchone() == (
        "r",
    )
    assert pg_conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", (dst,)
    ).fetchone() == ("dst_pkey",)
    assert differences(pg_conn, src, dst) == (0, 0)
    assert leftover_load_tables(pg_conn, pg_schema) == []
