"""Schema evolution in the target: an export's schema against its table, refused or applied at publish.

At an export's first part (:mod:`tdtp.importer.staging`) :func:`plan_change` compares
its fields with the table as it is (:func:`tdtp.sinks.schema_change.compare`, by the
run's policy).  A refusal (an incompatible change, or any difference under
``freeze``) dead-letters the part before a row of it is staged, with one line saying
why; otherwise the change is recorded on the export (``_tdtp_exports.schema_change``:
its fields, the policy and the change) and the rows are staged.

At publish, inside the publish transaction, :func:`evolve_target` compares again with
the table as it is then (another export may have changed it meanwhile), refuses, or
changes the table: PostgreSQL ``ALTER TABLE ... ADD COLUMN`` / ``ALTER COLUMN ...
TYPE`` (DDL is transactional there), SQLite ``ADD COLUMN`` and, to change a type, a
rebuild of the table (a new table, the rows copied, the old one dropped, the new one
renamed, its indexes and triggers made again), all in that transaction too.  A crash
before the commit leaves the old table and schema as they were; the rerun publishes
again from the staged rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from tdtp.importer.bookkeeping import ddl_lock
from tdtp.importer.catalog import column_facts, primary_key
from tdtp.importer.ledger import ExportRecord, set_schema_change
from tdtp.importer.target import Target
from tdtp.packet import Schema, SchemaError
from tdtp.sinks.schema_change import (
    EVOLVE,
    REFUSED,
    SchemaChange,
    compare,
    fields_doc,
    schema_from_doc,
)


class SchemaRefused(SchemaError):
    """The export's schema may not land in its table (incompatible, or frozen and different)."""


def plan_change(
    target: Target, conn: Any, table: str, schema: Schema, *, policy: str, mode: str
) -> SchemaChange | None:
    """How ``schema`` differs from ``table`` under ``policy``; None when the table does not exist."""
    facts = column_facts(target, conn, table)
    if facts is None:
        return None
    return compare(
        schema,
        facts,
        dialect=target.dialect,
        policy=policy,
        mode=mode,
        primary_key=primary_key(target, conn, table),
    )


def change_doc(schema: Schema, change: SchemaChange, *, applied: bool = False) -> str:
    """What ``_tdtp_exports.schema_change`` keeps: the fields (to compare again at publish) and the change."""
    return json.dumps({"fields": fields_doc(schema), "applied": applied, **change.as_dict()})


def stored_change(rec: ExportRecord) -> SchemaChange | None:
    """The change recorded on an export (planned at its first part, or applied at its publish)."""
    if not rec.schema_change:
        return None
    return SchemaChange.from_dict(json.loads(rec.schema_change))


def evolve_target(target: Target, conn: Any, rec: ExportRecord) -> SchemaChange:
    """Inside the publish transaction: refuse the export, or change its table to take it.

    Returns the change; its ``discarded`` columns are the ones the publish leaves out
    (:func:`record_applied` records it when the publish ends).  Exports recorded before
    schema evolution (no record) publish as they always did.
    """
    if not rec.schema_change:
        return SchemaChange()
    doc = json.loads(rec.schema_change)
    schema = schema_from_doc(doc.get("fields", []))
    change = plan_change(target, conn, rec.table_name, schema, policy=doc.get("policy", EVOLVE), mode=rec.mode)
    if change is None:  # the table is gone: the publish says so
        return SchemaChange.from_dict(doc)
    refusal = change.refusal(rec.table_name)
    if refusal:
        raise SchemaRefused(refusal, where=f"export {rec.export_id}")
    if change.needs_ddl:
        ddl_lock(target, conn, rec.table_name)
        if target.is_pg:
            _alter_pg(target, conn, rec.table_name, change)
        else:
            _alter_sqlite(target, conn, rec.table_name, change)
    return change


def record_applied(target: Target, conn: Any, rec: ExportRecord, change: SchemaChange | None) -> None:
    """At the end of the publish transaction (a live publisher locks no bookkeeping row before it):
    the change as applied replaces the one planned (a later partial publish keeps the first one's)."""
    if change is None or not rec.schema_change:
        return
    doc = json.loads(rec.schema_change)
    if doc.get("applied") and not change.changed:
        return
    schema = schema_from_doc(doc.get("fields", []))
    set_schema_change(target, conn, rec.export_id, rec.table_name, change_doc(schema, change, applied=True))


def _alter_pg(target: Target, conn: Any, table: str, change: SchemaChange) -> None:
    """One ALTER TABLE (one rewrite at most) with every added and widened column."""
    actions = [f"ADD COLUMN {target.ident(name)} {typ}" for name, typ in change.added]
    actions += [f"ALTER COLUMN {target.ident(name)} TYPE {new}" for name, _, new in change.widened]
    conn.execute(f"ALTER TABLE {target.table(table)} {', '.join(actions)}")


# Parts of a CREATE TABLE that a rebuild from PRAGMA table_info would not carry.
_NOT_REBUILT = ("CHECK", "REFERENCES", "UNIQUE", "COLLATE", "GENERATED", "AUTOINCREMENT", "WITHOUT ROWID")


def _alter_sqlite(target: Target, conn: Any, table: str, change: SchemaChange) -> None:
    quoted = target.table(table)
    for name, typ in change.added:
        conn.execute(f"ALTER TABLE {quoted} ADD COLUMN {target.ident(name)} {typ}")
    if change.widened:
        _rebuild_sqlite(target, conn, table, {name: new for name, _, new in change.widened})


def _rebuild_sqlite(target: Target, conn: Any, table: str, types: dict[str, str]) -> None:
    """SQLite has no ALTER COLUMN TYPE: a new table with the new types takes the rows and the name.

    The values are converted by the new columns' affinity (an integer becomes its text
    in a TEXT column).  Indexes and triggers are made again from their SQL; views
    name the table and find the new one.  Refused for a table whose definition has
    more than columns, defaults, NOT NULL and a primary key.
    """
    (sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    flat = re.sub(r"\s+", " ", sql.upper())
    blockers = [word for word in _NOT_REBUILT if re.search(rf"\b{word}\b", flat)]
    if blockers:
        changed = ", ".join(f"{n} -> {t}" for n, t in types.items())
        raise SchemaRefused(
            f"{REFUSED} for {table!r}: widening {changed} in SQLite rebuilds the table, and its "
            f"definition has {', '.join(blockers)}, which the rebuild would not carry; change the column by hand",
        )
    info = conn.execute(f"PRAGMA table_info({target.table(table)})").fetchall()
    cols = []
    for _, name, typ, notnull, default, _ in info:
        col = f"{target.ident(name)} {types.get(name, typ or '')}".rstrip()
        col += " NOT NULL" if notnull else ""
        col += f" DEFAULT {default}" if default is not None else ""
        cols.append(col)
    keys = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    if keys:
        cols.append(f"PRIMARY KEY ({', '.join(target.ident(k) for k in keys)})")
    others = conn.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL",
        (table,),
    ).fetchall()
    new = target.table("_tdtp_rebuild_" + hashlib.sha1(table.encode()).hexdigest()[:12])
    names = ", ".join(target.ident(r[1]) for r in info)
    conn.execute(f"DROP TABLE IF EXISTS {new}")
    conn.execute(f"CREATE TABLE {new} ({', '.join(cols)})")
    conn.execute(f"INSERT INTO {new} ({names}) SELECT {names} FROM {target.table(table)}")
    conn.execute(f"DROP TABLE {target.table(table)}")
    # Views that name the table would fail the rename's schema check while it is gone.
    conn.execute("PRAGMA legacy_alter_table = ON")
    try:
        conn.execute(f"ALTER TABLE {new} RENAME TO {target.table(table)}")
    finally:
        conn.execute("PRAGMA legacy_alter_table = OFF")
    for (statement,) in others:
        conn.execute(statement)
