"""PostgreSQL swap/attach publish: the load table the workers filled becomes the table or partition.

One transaction, with the export's publish lock held and the export ready (see
:mod:`tdtp.importer.finalize`):

* ``swap``: build the indexes on the load table (the slow part, before the target
  is locked), lock the target, rename it away, rename the load table into its
  place, carry owner / grants / comment over, drop the old table, and give the
  indexes their old names.
* ``attach``: DETACH the old partition of the same bound (if any), ATTACH the load
  table FOR VALUES ..., drop the old one.  The load table's CHECK equals the bound,
  so ATTACH does not scan it.

When the swap stopped being possible between the first part and the publish (a
view was created on the target, the summary named another partition than the
first part suggested, the write mode was changed) the load table is published
with ``INSERT ... SELECT`` instead (:data:`tdtp.importer.outcome.INSERT`: rows
written twice, still atomic); the export's note says why.

Readers see the old table (or partition) until the commit and the whole new one
after it.  Known caveat of any rename swap: a REPEATABLE READ / SERIALIZABLE
transaction that started before the swap sees the new table empty (as after
TRUNCATE); READ COMMITTED readers see the old rows, then the new ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from tdtp.importer.bookkeeping import ddl_lock
from tdtp.importer.catalog import (
    Rel,
    clone_indexes,
    columns_of,
    dependents,
    exists,
    index_defs,
    partition_key,
    partitions,
    primary_key_of,
    qi,
    qname,
    relation,
    truncate_ident,
)
from tdtp.importer.ledger import ExportRecord
from tdtp.importer.outcome import ATTACH, INSERT, LOAD_TABLE_STRATEGIES, REPLACE, SWAP, UPSERT
from tdtp.importer.swap_plan import (
    add_bound_check,
    attach_blockers,
    drop_bound_checks,
    make_bound,
    match_partition,
    partition_by,
    swap_blockers,
    sync_constraints,
)
from tdtp.importer.target import Target
from tdtp.importer.writemode import (
    delete_replaced,
    on_conflict,
    partition_filter,
    partition_predicate,
    upsert_keys,
)
from tdtp.packet import TdtpError
from tdtp.sinks.ddl import split_qualified
from tdtp.sources.base import PartitionFilter


@dataclass
class Published:
    rows: int
    how: str  # "swap", "attach" or "insert"
    note: str = ""
    superseded_by: str | None = None


def publish_export(
    target: Target,
    conn: Any,
    rec: ExportRecord,
    rows: int,
    newer: Callable[[], str | None],
) -> Published:
    """Publish a swap/attach export inside the caller's transaction (publish lock held, export ready).

    ``rows`` is what the ledger says the load table holds; ``newer`` re-checks,
    once the target is locked, that no newer export of the partition got there first.
    """
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    load = relation(conn, target.table(rec.load_table))
    if load is None:
        raise TdtpError(
            f"the load table {rec.load_table} of export {rec.export_id} is missing; re-export to publish",
            where=f"export {rec.export_id}",
        )
    ddl_lock(target, conn, rec.table_name)
    if rec.mode != REPLACE:
        return _by_insert(target, conn, rec, load, f"the write mode is now {rec.mode}")
    pf = partition_filter(rec.summary)
    if rec.publish == SWAP:
        if pf is not None:
            return _by_insert(target, conn, rec, load, "the summary names a partition, not the whole table")
        return _swap(target, conn, rec, load, rows, newer)
    if pf is None:
        return _by_insert(target, conn, rec, load, "the summary names the whole table, not a partition")
    return _attach(target, conn, rec, load, rows, pf, newer)


def _swap(
    target: Target, conn: Any, rec: ExportRecord, load: Rel, rows: int, newer: Callable[[], str | None]
) -> Published:
    rel = relation(conn, target.table(rec.table_name))
    if rel is None:  # dropped meanwhile: the load table simply becomes the table
        _adopt_name(conn, load, split_qualified(rec.table_name)[1])
        return Published(rows, SWAP)
    defs, blocked = index_defs(conn, rel.oid)
    if not blocked and rel.schema == load.schema and columns_of(conn, rel.oid) == columns_of(conn, load.oid):
        sync_constraints(conn, rel, load, relax_only=False)
        clone_indexes(conn, defs, load)  # the slow part, before the target is locked
    conn.execute(f"LOCK TABLE {rel.sql} IN ACCESS EXCLUSIVE MODE")
    other = newer()
    if other is not None:
        return Published(0, SWAP, superseded_by=other)
    rel = relation(conn, rel.sql)
    assert rel is not None
    reasons = swap_blockers(conn, rel)
    if rel.schema != load.schema:
        reasons.append("the table moved to another schema")
    if columns_of(conn, rel.oid) != columns_of(conn, load.oid):
        reasons.append("the table's columns changed since the load table was made")
    if reasons:
        return _by_insert(target, conn, rec, load, "; ".join(reasons))
    renames = clone_indexes(conn, index_defs(conn, rel.oid)[0], load)  # no-op unless an index was added
    names = {d.oid: d.name for d in index_defs(conn, rel.oid)[0]}
    _carry_table_facts(conn, rel, load)
    old_name = truncate_ident(f"{load.name}_old", )
    conn.execute(f"ALTER TABLE {rel.sql} RENAME TO {qi(old_name)}")
    conn.execute(f"ALTER TABLE {load.sql} RENAME TO {qi(rel.name)}")
    conn.execute(f"DROP TABLE {qname(rel.schema, old_name)}")
    for oid, new in renames.items():
        if names.get(oid) and names[oid] != new:
            conn.execute(f"ALTER INDEX {qname(rel.schema, new)} RENAME TO {qi(names[oid])}")
    return Published(rows, SWAP)


def _attach(
    target: Target,
    conn: Any,
    rec: ExportRecord,
    load: Rel,
    rows: int,
    pf: PartitionFilter,
    newer: Callable[[], str | None],
) -> Published:
    parent = relation(conn, target.table(rec.table_name))
    note = ""
    if parent is None:
        keys = rec.key_fields or primary_key_of(conn, load.oid)
        cols = {name: typ for name, typ in columns_of(conn, load.oid)}
        why = ""
        if pf.column not in cols:
            why = f"the partition column {pf.column} is not among the export's fields"
        elif keys and pf.column not in keys:
            why = (
                f"the key fields ({', '.join(keys)}) do not include the partition column {pf.column}: "
                "a partitioned table's primary key must include it"
            )
        else:
            bound = make_bound(conn, pf.column, cols[pf.column], pf)
            why = bound if isinstance(bound, str) else ""
        if why:  # a plain table then: the load table becomes it
            drop_bound_checks(conn, load)
            _adopt_name(conn, load, split_qualified(rec.table_name)[1])
            return Published(rows, SWAP, note=f"the table was created unpartitioned: {why}")
        table_sql = target.table(rec.table_name)
        conn.execute(f"CREATE TABLE {table_sql} (LIKE {load.sql} INCLUDING DEFAULTS) {partition_by(pf)}")
        if keys:
            conn.execute(f"ALTER TABLE {table_sql} ADD PRIMARY KEY ({', '.join(qi(k) for k in keys)})")
        parent = relation(conn, table_sql)
        assert parent is not None
        note = "created the table partitioned"
    if parent.relkind != "p":
        return _by_insert(target, conn, rec, load, "the target table is not partitioned")
    key = partition_key(conn, parent.oid)
    if isinstance(key, str):
        return _by_insert(target, conn, rec, load, key)
    reasons = attach_blockers(conn, parent, key, pf)
    bound = make_bound(conn, key.column, key.type, pf)
    if isinstance(bound, str):
        reasons.append(bound)
    if reasons or isinstance(bound, str) or parent.schema != load.schema:
        return _by_insert(target, conn, rec, load, "; ".join(reasons) or "the table moved to another schema")
    sync_constraints(conn, parent, load, relax_only=False)
    add_bound_check(conn, load, bound)  # a scan of the load table only if the filter came late
    renames = clone_indexes(conn, index_defs(conn, parent.oid)[0], load)
    conn.execute(f"LOCK TABLE {parent.sql} IN SHARE UPDATE EXCLUSIVE MODE")  # one attach at a time
    other = newer()
    if other is not None:
        return Published(0, ATTACH, superseded_by=other)
    old, conflicts = match_partition(conn, bound, partitions(conn, parent.oid))
    if old is not None:
        conflicts += [f"{what} depends on partition {old.name}" for what in dependents(conn, old.oid)]
    if conflicts:
        return _by_insert(target, conn, rec, load, "; ".join(conflicts))
    old_index_names: dict[int, str] = {}
    if old is not None:
        old_index_names = {
            parent_ix: name
            for parent_ix, name in conn.execute(
                """SELECT i.inhparent, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   JOIN pg_index x ON x.indexrelid = c.oid WHERE x.indrelid = %s""",
                (old.oid,),
            ).fetchall()
        }
        old_rel = relation(conn, old.sql)
        if old_rel is not None:
            _carry_table_facts(conn, old_rel, load)
        conn.execute(f"ALTER TABLE {parent.sql} DETACH PARTITION {old.sql}")
    notices: list[str] = []

    def listen(diag: Any) -> None:
        notices.append(diag.message_primary or "")

    conn.add_notice_handler(listen)
    try:
        conn.execute("SET LOCAL client_min_messages = debug1")  # to hear whether ATTACH scanned
        conn.execute(f"ALTER TABLE {parent.sql} ATTACH PARTITION {load.sql} {bound.spec}")
        conn.execute("SET LOCAL client_min_messages = notice")
    finally:
        conn.remove_notice_handler(listen)
    scanned = not any("is implied by existing constraints" in n for n in notices)
    if old is not None:
        conn.execute(f"DROP TABLE {old.sql}")
    part_name = old.name if old is not None else truncate_ident(f"{parent.name}_{bound.label}", )
    if not exists(conn, qname(parent.schema, part_name)):
        conn.execute(f"ALTER TABLE {load.sql} RENAME TO {qi(part_name)}")
    else:
        part_name = load.name
    for parent_ix, new in renames.items():
        name = old_index_names.get(parent_ix) or _partition_index_name(conn, parent, parent_ix, part_name)
        if name != new and not exists(conn, qname(parent.schema, name)):
            conn.execute(f"ALTER INDEX {qname(parent.schema, new)} RENAME TO {qi(name)}")
    extra = [note] if note else []
    if scanned:
        extra.append("ATTACH scanned the partition")
    return Published(rows, ATTACH, note="; ".join(extra))


def _carry_table_facts(conn: Any, old: Rel, new: Rel) -> None:
    """Comment, privileges and owner of ``old`` onto ``new`` (inside the publish transaction)."""
    comment = conn.execute("SELECT obj_description(%s, 'pg_class')", (old.oid,)).fetchone()[0]
    if comment is not None:
        conn.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}")
            .format(sql.SQL(new.sql), sql.Literal(comment))
            .as_string(conn)
        )
    grants = conn.execute(
        """SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END,
                  a.is_grantable
           FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
           LEFT JOIN pg_roles r ON r.oid = a.grantee
           WHERE c.oid = %s AND a.grantee <> c.relowner""",
        (old.oid,),
    ).fetchall()
    for privilege, grantee, grantable in grants:
        option = " WITH GRANT OPTION" if grantable else ""
        conn.execute(f"GRANT {privilege} ON {new.sql} TO {grantee}{option}")
    if new.owner != old.owner:
        conn.execute(f"ALTER TABLE {new.sql} OWNER TO {qi(old.owner)}")


def _adopt_name(conn: Any, load: Rel, name: str) -> None:
    """The load table becomes the table ``name``: rename it, and its indexes ``<load>_x`` to ``<name>_x``."""
    conn.execute(f"ALTER TABLE {load.sql} RENAME TO {qi(name)}")
    for (index,) in conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s",
        (load.oid,),
    ).fetchall():
        if index.startswith(load.name):
            new = truncate_ident(name + index[len(load.name) :], )
            if not exists(conn, qname(load.schema, new)):
                conn.execute(f"ALTER INDEX {qname(load.schema, index)} RENAME TO {qi(new)}")


def _partition_index_name(conn: Any, parent: Rel, parent_ix: int, part_name: str) -> str:
    """``dst_20260101_pkey`` for the parent's ``dst_pkey``: the partition's name for the same suffix."""
    (name,) = conn.execute("SELECT relname FROM pg_class WHERE oid = %s", (parent_ix,)).fetchone()
    suffix = name[len(parent.name) + 1 :] if name.startswith(parent.name + "_") else name
    return truncate_ident(f"{part_name}_{suffix}", )


def lock_load(target: Target, conn: Any, rec: ExportRecord) -> None:
    """Inside the publish transaction: keep parts out of the load table until it is published."""
    if relation(conn, target.table(rec.load_table)) is None:
        raise TdtpError(
            f"the load table {rec.load_table} of export {rec.export_id} is missing; re-export to publish",
            where=f"export {rec.export_id}",
        )
    conn.execute(f"LOCK TABLE {target.table(rec.load_table)} IN ACCESS EXCLUSIVE MODE")


def publish_partial(target: Target, conn: Any, rec: ExportRecord) -> Published:
    """An export without a summary whose mode became upsert/append: move what is loaded, keep the table."""
    load = relation(conn, target.table(rec.load_table))
    assert load is not None
    return _by_insert(target, conn, rec, load, "no summary", keep=True)


def _by_insert(
    target: Target, conn: Any, rec: ExportRecord, load: Rel, reason: str, *, keep: bool = False
) -> Published:
    """The fallback: move the load table's rows with INSERT ... SELECT by write mode, drop it.

    ``keep`` empties the load table instead of dropping it (more parts will come).
    """
    table = target.table(rec.table_name)
    if relation(conn, table) is None and keep:
        conn.execute(f"CREATE TABLE {table} (LIKE {load.sql} INCLUDING DEFAULTS)")
    elif relation(conn, table) is None:
        drop_bound_checks(conn, load)
        _adopt_name(conn, load, split_qualified(rec.table_name)[1])
        rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return Published(rows, INSERT, note=f"published by renaming the load table ({reason})")
    cols = ", ".join(qi(n) for n, _ in rec.columns)
    statement = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {load.sql}"
    if rec.mode == REPLACE:
        delete_replaced(target, conn, table, partition_predicate(target, rec.summary))
    elif rec.mode == UPSERT:
        statement += " " + on_conflict(target, upsert_keys(target, conn, rec), [n for n, _ in rec.columns])
    cur = conn.execute(statement)
    moved = cur.rowcount
    conn.execute(f"{'TRUNCATE' if keep else 'DROP'} TABLE {load.sql}")
    return Published(moved, INSERT, note=f"INSERT from the load table: {reason}")


def drop_load_table(target: Target, conn: Any, rec: ExportRecord) -> None:
    if rec.load_table and rec.publish in LOAD_TABLE_STRATEGIES:
        conn.execute(f"DROP TABLE IF EXISTS {target.table(rec.load_table)}")
