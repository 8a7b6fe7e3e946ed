"""PostgreSQL swap/attach planning: at an export's first part, decide how it will be published,
and make what that needs (the target, the load table).

Replace mode can let the workers write an export's rows themselves, in parallel,
into a *load table*, and publish it with one catalog change instead of one big
COPY (see docs/importer.md, "publish strategies"):

``swap``    whole-table replace: the load table is made ``LIKE`` the target and
            renamed into its place at publish (:mod:`tdtp.importer.swap_publish`).
``attach``  partition replace into a declaratively partitioned target (RANGE on the
            column for day/hour filters, LIST for value filters): the load table
            carries a CHECK equal to the partition bound, so ATTACH skips its scan.
``copy``    everything else (upsert, append, ``publish="copy"``, and targets the
            swap is not safe for); ``publish_note`` says why.

The decision is made once, under the table's DDL lock, and recorded in
``_tdtp_exports.publish``; a whole-table swap is refused (the export publishes by
copy, the note names the reason) when anything outside the table depends on it:
views, foreign keys, triggers, rules, policies, identity sequences, publications,
inheritance, column privileges, row-level security, typed tables, exclusion or
deferrable constraints, or a role that does not own the table.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tdtp.importer.catalog import (
    Partition,
    PartKey,
    Rel,
    check_constraints,
    check_names,
    clone_indexes,
    dependents,
    index_defs,
    not_null,
    partition_key,
    partitions,
    qi,
    qname,
    relation,
    schema_of,
    truncate_ident,
)
from tdtp.importer.ledger import ExportRecord, has_ledger_parts, set_publish
from tdtp.importer.outcome import ATTACH, COPY, REPLACE, SWAP
from tdtp.importer.target import Target
from tdtp.importer.writemode import partition_filter
from tdtp.packet import DATE, TIMESTAMP, Schema, TdtpError
from tdtp.sinks.ddl import create_table_sql, split_qualified
from tdtp.sources.base import PartitionFilter

# What an export covers, as far as its first part tells.
WHOLE = "whole"
PARTITION = "partition"
NOT_KNOWN = "not known"

LOAD_MARK = "__tdtp_"
BOUND_CHECK = "tdtp_partition_bound"
_LOAD_BASE_BYTES = 40  # + "__tdtp_" + 10 hex = 57 bytes; index names add "_NN"

LIKE_OPTIONS = (
    "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE "
    "INCLUDING COMMENTS INCLUDING COMPRESSION"
)


class SwapRefused(TdtpError):
    """``publish="swap"`` was asked for a target the swap is not possible for."""


def load_table_name(table: str, export_id: str) -> str:
    """``<table>__tdtp_<10 hex of the export id>`` (the table part cut to fit PostgreSQL's 63 bytes)."""
    digest = hashlib.sha1(export_id.encode()).hexdigest()[:10]
    return f"{truncate_ident(table, _LOAD_BASE_BYTES)}{LOAD_MARK}{digest}"


def swap_blockers(conn: Any, rel: Rel) -> list[str]:
    """Why ``rel`` cannot be replaced by renaming a new table into its place (empty: it can)."""
    reasons: list[str] = []
    if rel.relkind == "p":
        reasons.append("the table is partitioned (a whole-table replace of it publishes by copy)")
    elif rel.relkind != "r":
        reasons.append("it is not a plain table")
    if rel.is_partition:
        reasons.append("it is a partition of another table")
    if rel.persistence == "t":
        reasons.append("it is a temporary table")
    if not rel.may_own:
        reasons.append(f"the importing role does not own it (owner {rel.owner})")
    if rel.typed:
        reasons.append("it is a typed table")
    if rel.rowsecurity:
        reasons.append("row-level security is enabled on it")
    if rel.replident != "d":
        reasons.append("it has a non-default replica identity")
    if conn.execute("SELECT 1 FROM pg_inherits WHERE inhrelid = %s", (rel.oid,)).fetchone():
        reasons.append("it inherits from another table")
    for (name,) in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
        "AND attidentity <> '' ORDER BY attnum",
        (rel.oid,),
    ).fetchall():
        reasons.append(f"identity column {name} (its sequence would restart)")
    if conn.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND attacl IS NOT NULL", (rel.oid,)
    ).fetchone():
        reasons.append("it has column privileges")
    reasons += [f"{what} depends on it" for what in dependents(conn, rel.oid)]
    reasons += index_defs(conn, rel.oid)[1]
    return reasons


def create_swap_load(conn: Any, rel: Rel, load_name: str, *, indexes: bool) -> Rel:
    """The load table of a whole-table swap: ``LIKE`` the target, same persistence and storage."""
    unlogged = "UNLOGGED " if rel.persistence == "u" else ""
    options = f" WITH ({', '.join(rel.reloptions)})" if rel.reloptions else ""
    space = f" TABLESPACE {qi(rel.tablespace)}" if rel.tablespace else ""
    target_sql = qname(rel.schema, load_name)
    conn.execute(f"CREATE {unlogged}TABLE {target_sql} (LIKE {rel.sql} {LIKE_OPTIONS}){options}{space}")
    load = relation(conn, target_sql)
    assert load is not None
    if indexes:
        clone_indexes(conn, index_defs(conn, rel.oid)[0], load)
    return load


def sync_constraints(conn: Any, source: Rel, load: Rel, *, relax_only: bool) -> None:
    """Make the load table's CHECK and NOT NULL constraints those of the target again.

    The load table copies them when it is made; a user who relaxes the target
    afterwards (to let dead-lettered parts in on replay) relaxes the load table
    with it (``relax_only``: at a writer's first part).  At publish, constraints
    added to the target meanwhile are added to the load table too (a scan of it).
    """
    mine = check_constraints(conn, load.oid, except_prefix=BOUND_CHECK)
    theirs = check_constraints(conn, source.oid, except_prefix=BOUND_CHECK)
    for name, text in mine.items():
        if theirs.get(name) != text:
            conn.execute(f"ALTER TABLE {load.sql} DROP CONSTRAINT {qi(name)}")
    load_nn, source_nn = not_null(conn, load.oid), not_null(conn, source.oid)
    for name, notnull in load_nn.items():
        if notnull and not source_nn.get(name, True):
            conn.execute(f"ALTER TABLE {load.sql} ALTER COLUMN {qi(name)} DROP NOT NULL")
    if relax_only:
        return
    for name, text in theirs.items():
        if mine.get(name) != text:
            conn.execute(f"ALTER TABLE {load.sql} ADD CONSTRAINT {qi(name)} {text}")
    for name, notnull in source_nn.items():
        if notnull and not load_nn.get(name, True):
            conn.execute(f"ALTER TABLE {load.sql} ALTER COLUMN {qi(name)} SET NOT NULL")


def relax_load(target: Target, conn: Any, table: str, load_table: str) -> None:
    """At a writer's first part of a swap/attach export: drop load-table constraints the target dropped."""
    rel, load = relation(conn, target.table(table)), relation(conn, target.table(load_table))
    if rel is not None and load is not None:
        sync_constraints(conn, rel, load, relax_only=True)


# ------------------------------------------------------------------------- partitions


@dataclass
class Bound:
    """A partition bound for one export's partition filter, in SQL."""

    column: str
    type: str
    strategy: str  # "r" / "l"
    literals: list[str]  # [from, to] or [value]
    label: str  # for the partition's name
    spec: str = ""
    check: str = ""
    check_name: str = ""


def _type_class(typ: str) -> str:
    t = typ.lower()
    if t.startswith("timestamp"):
        return "timestamptz" if "with time zone" in t else "timestamp"
    if t == "date":
        return "date"
    return "other"


def make_bound(conn: Any, column: str, typ: str, pf: PartitionFilter) -> Bound | str:
    """The bound of ``pf`` for a column of type ``typ``, or why there is none."""
    if pf.kind == "value":
        try:
            with conn.transaction():
                conn.execute(f"SELECT CAST(%s AS {typ})", (pf.value,))
        except psycopg.Error as exc:
            return f"partition value {pf.value!r} is not a valid {typ}: {str(exc).strip().splitlines()[0]}"
        label = re.sub(r"[^0-9A-Za-z_]+", "_", pf.value).strip("_")[:20] or "v"
        if label != pf.value:
            label += "_" + hashlib.sha1(pf.value.encode()).hexdigest()[:6]
        bound = Bound(column, typ, "l", [pf.value], label)
    else:
        kind = _type_class(typ)
        start, end = pf.bounds()
        if kind == "timestamptz":
            lits = [f"{t:%Y-%m-%d %H:%M:%S}+00" for t in (start, end)]
        elif kind == "timestamp":
            lits = [f"{t:%Y-%m-%d %H:%M:%S}" for t in (start, end)]
        elif kind == "date" and pf.kind == "day":
            lits = [f"{t:%Y-%m-%d}" for t in (start, end)]
        else:
            return f"column {column} is {typ}: an {pf.kind} partition needs a timestamp" + (
                " or date" if pf.kind == "day" else ""
            )
        label = f"{start:%Y%m%d}" if pf.kind == "day" else f"{start:%Y%m%d%H}"
        bound = Bound(column, typ, "r", lits, label)
    lit = [sql.Literal(v).as_string(conn) for v in bound.literals]
    col = qi(column)
    if bound.strategy == "r":
        bound.spec = f"FOR VALUES FROM ({lit[0]}) TO ({lit[1]})"
        bound.check = (
            f"{col} IS NOT NULL AND {col} >= CAST({lit[0]} AS {typ}) AND {col} < CAST({lit[1]} AS {typ})"
        )
    else:
        bound.spec = f"FOR VALUES IN ({lit[0]})"
        bound.check = f"{col} IS NOT NULL AND {col} = CAST({lit[0]} AS {typ})"
    digest = hashlib.sha1(f"{column}\0{bound.spec}".encode()).hexdigest()[:8]
    bound.check_name = f"{BOUND_CHECK}_{digest}"
    return bound


_MIN, _MAX = "MINVALUE", "MAXVALUE"
_TOKEN = re.compile(r"'((?:[^']|'')*)'|\b(MINVALUE|MAXVALUE|NULL|true|false)\b|([-+]?[0-9][0-9.eE+-]*)")


def _tokens(text: str) -> list[str | None]:
    out: list[str | None] = []
    for quoted, word, number in _TOKEN.findall(text):
        if word:
            out.append(None if word == "NULL" else word)
        elif number:
            out.append(number)
        else:
            out.append(quoted.replace("''", "'"))
    return out


def _typed(conn: Any, typ: str, values: list[str | None]) -> list[Any]:
    if not values:
        return []
    row = conn.execute(
        f"SELECT array_agg(CAST(v AS {typ}) ORDER BY i) FROM unnest(%s::text[]) WITH ORDINALITY AS u(v, i)",
        (values,),
    ).fetchone()
    return list(row[0])


def match_partition(conn: Any, bound: Bound, parts: list[Partition]) -> tuple[Partition | None, list[str]]:
    """The partition whose bound equals ``bound`` (to be replaced) and any that overlap it otherwise."""
    old: Partition | None = None
    conflicts: list[str] = []
    mine = _typed(conn, bound.type, list(bound.literals))
    for p in parts:
        text = p.bound or ""
        if text == "DEFAULT":
            conflicts.append(f"default partition {p.name}")
            continue
        if bound.strategy == "r":
            if not text.startswith("FOR VALUES FROM"):
                conflicts.append(f"partition {p.name} has bound {text}")
                continue
            toks = _tokens(text[len("FOR VALUES FROM") :])
            if len(toks) != 2:
                conflicts.append(f"partition {p.name} has bound {text}")
                continue
            plain = [t for t in toks if t not in (_MIN, _MAX)]
            typed = iter(_typed(conn, bound.type, plain))
            lo, hi = (None if t in (_MIN, _MAX) else next(typed) for t in toks)
            if lo == mine[0] and hi == mine[1]:
                old = p
            elif (lo is None or lo < mine[1]) and (hi is None or mine[0] < hi):
                conflicts.append(f"partition {p.name} ({text}) overlaps it")
        else:
            if not text.startswith("FOR VALUES IN"):
                conflicts.append(f"partition {p.name} has bound {text}")
                continue
            values = _typed(conn, bound.type, _tokens(text[len("FOR VALUES IN") :]))
            if values == mine:
                old = p
            elif mine[0] in values:
                conflicts.append(f"partition {p.name} ({text}) also holds {bound.literals[0]!r}")
    if old is not None and old.relkind != "r":
        conflicts.append(f"partition {old.name} is not a plain table")
    return old, conflicts


def attach_blockers(conn: Any, parent: Rel, key: PartKey, pf: PartitionFilter | None) -> list[str]:
    """Why loading a partition of ``parent`` into a new table and attaching it is not safe."""
    reasons: list[str] = []
    if not parent.may_own:
        reasons.append(f"the importing role does not own the table (owner {parent.owner})")
    if key.default_partition:
        reasons.append("it has a default partition (ATTACH would scan it)")
    if pf is not None:
        if pf.column != key.column:
            reasons.append(f"it is partitioned by {key.column}, the export by {pf.column}")
        elif (pf.kind == "value") != (key.strategy == "l"):
            strategy = "list" if key.strategy == "l" else "range"
            reasons.append(f"it is partitioned by {strategy}, the export by {pf.kind}")
    for (name,) in conn.execute(
        "SELECT conname FROM pg_constraint WHERE contype = 'f' AND (conrelid = %s OR confrelid = %s)",
        (parent.oid, parent.oid),
    ).fetchall():
        reasons.append(f"foreign key {name}")
    for (name,) in conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal", (parent.oid,)
    ).fetchall():
        reasons.append(f"trigger {name} (it would not fire for the loaded rows)")
    reasons += index_defs(conn, parent.oid)[1]
    return reasons


def add_bound_check(conn: Any, load: Rel, bound: Bound) -> None:
    """Give the load table the CHECK that lets ATTACH skip its scan (replacing a stale one)."""
    have = check_names(conn, load.oid, BOUND_CHECK)
    if bound.check_name in have:
        return
    for name in have:
        conn.execute(f"ALTER TABLE {load.sql} DROP CONSTRAINT {qi(name)}")
    conn.execute(f"ALTER TABLE {load.sql} ADD CONSTRAINT {qi(bound.check_name)} CHECK ({bound.check})")


def drop_bound_checks(conn: Any, rel: Rel) -> None:
    """Drop the partition-bound CHECK of a load table that becomes a plain table."""
    for name in check_names(conn, rel.oid, BOUND_CHECK):
        conn.execute(f"ALTER TABLE {rel.sql} DROP CONSTRAINT {qi(name)}")


def partitioned_creation_blocker(schema: Schema, pf: PartitionFilter) -> str:
    """Why a new target for this export cannot be created partitioned by its filter ("" if it can)."""
    fields = {f.name: f for f in schema.fields}
    f = fields.get(pf.column)
    if f is None:
        return f"the partition column {pf.column} is not among the export's fields"
    if pf.kind != "value":
        if f.type not in (TIMESTAMP, DATE) or (f.type == TIMESTAMP and f.subtype.lower() == "time"):
            return f"the partition column {pf.column} is {f.type}, not a timestamp"
        if pf.kind == "hour" and f.type == DATE:
            return f"the partition column {pf.column} is a date: hour partitions need a timestamp"
    keys = schema.key_names
    if keys and pf.column not in keys:
        return (
            f"the key fields ({', '.join(keys)}) do not include the partition column {pf.column}: "
            "a partitioned table's primary key must include it"
        )
    return ""


def partition_by(pf: PartitionFilter) -> str:
    return f"PARTITION BY {'LIST' if pf.kind == 'value' else 'RANGE'} ({qi(pf.column)})"


# ---------------------------------------------------------------------- the decision


@dataclass
class Plan:
    strategy: str
    note: str = ""
    create: str = ""  # "", "plain", "partitioned" (the target) or "later" (at publish, from the load table)
    filter: PartitionFilter | None = None
    load_table: str = ""
    reasons: list[str] = field(default_factory=list)


def export_scope(rec: ExportRecord, whole_hint: bool) -> tuple[str, PartitionFilter | None]:
    """Whole table, a partition (with its filter once the summary says it), or not known yet."""
    pf = partition_filter(rec.summary)
    if pf is not None:
        return PARTITION, pf
    if rec.partition:
        return PARTITION, None
    if rec.summary is not None or rec.total_parts or whole_hint:
        return WHOLE, None
    return NOT_KNOWN, None


def plan_export(
    target: Target,
    conn: Any,
    rec: ExportRecord,
    schema: Schema,
    *,
    publish: str,
    create_table: bool,
    whole_hint: bool,
    blocker: str = "",
) -> Plan:
    """Choose how an export is published (inside the DDL-locked transaction of its first part).

    ``blocker``: a reason of the caller's why the export must not swap (it changes the table's columns).
    """
    if publish == COPY:
        return Plan(COPY, note="publish=copy")
    if rec.mode != REPLACE:
        return Plan(COPY)
    if has_ledger_parts(target, conn, rec.export_id, rec.table_name):
        return Plan(COPY, note="parts were staged for copy before this importer version")
    strict = publish == SWAP

    def refuse(reasons: list[str], **kw: Any) -> Plan:
        text = "; ".join(reasons)
        if strict:
            raise SwapRefused(
                f"publish='swap' is not possible for {rec.table_name!r}: {text}; use publish='auto' or 'copy'",
                where=f"export {rec.export_id}",
            )
        return Plan(COPY, note=f"not swapped: {text}", reasons=reasons, **kw)

    if blocker:
        return refuse([blocker])
    scope, pf = export_scope(rec, whole_hint)
    rel = relation(conn, target.table(rec.table_name))
    if scope == NOT_KNOWN:
        if not strict:
            return Plan(COPY, note="not swapped: whether the export is the whole table or a partition is not "
                        "known at its first part (no summary yet)")  # fmt: skip
        scope = PARTITION if rel is not None and rel.relkind == "p" else WHOLE
    if scope == WHOLE:
        if rel is None:
            return Plan(SWAP, create="plain") if create_table else Plan(COPY)
        reasons = swap_blockers(conn, rel)
        return refuse(reasons) if reasons else Plan(SWAP)
    if rel is None:
        if not create_table:
            return Plan(COPY)
        if pf is None:
            return Plan(ATTACH, create="later")
        why = partitioned_creation_blocker(schema, pf)
        if why:
            return refuse([f"the table is created unpartitioned: {why}"], create="plain")
        return Plan(ATTACH, create="partitioned", filter=pf)
    if rel.relkind != "p":
        return refuse(["the target table is not partitioned"])
    key = partition_key(conn, rel.oid)
    if isinstance(key, str):
        return refuse([key])
    reasons = attach_blockers(conn, rel, key, pf)
    if not reasons and pf is not None:
        bound = make_bound(conn, key.column, key.type, pf)
        if isinstance(bound, str):
            reasons.append(bound)
        else:
            old, conflicts = match_partition(conn, bound, partitions(conn, rel.oid))
            reasons += conflicts
            if old is not None:
                reasons += [f"{what} depends on partition {old.name}" for what in dependents(conn, old.oid)]
    return refuse(reasons) if reasons else Plan(ATTACH, filter=pf)


def prepare_export(
    target: Target,
    conn: Any,
    rec: ExportRecord,
    schema: Schema,
    *,
    publish: str,
    create_table: bool,
    whole_hint: bool,
    index_build: str,
    blocker: str = "",
) -> Plan:
    """Decide, create what the decision needs (target, load table), and record it on the export."""
    plan = plan_export(
        target, conn, rec, schema, publish=publish, create_table=create_table, whole_hint=whole_hint,
        blocker=blocker,
    )
    table_sql = target.table(rec.table_name)
    schema_name, _ = split_qualified(rec.table_name)
    if schema_name and (plan.create or plan.strategy != COPY):
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {qi(schema_name)}")
    if plan.create in ("plain", "partitioned"):
        ddl = create_table_sql(target.dialect, schema, rec.table_name)
        if plan.create == "partitioned":
            assert plan.filter is not None
            ddl += " " + partition_by(plan.filter)
        conn.execute(ddl)
    if plan.strategy in (SWAP, ATTACH):
        name = load_table_name(split_qualified(rec.table_name)[1], rec.export_id)
        rel = relation(conn, table_sql)
        # Beside the table (renames cannot move a table to another schema).
        schema_name = rel.schema if rel is not None else schema_of(conn, rec.table_name)
        load_sql = qname(schema_name, name)
        conn.execute(f"DROP TABLE IF EXISTS {load_sql}")  # left by an export that failed before recording it
        if plan.strategy == SWAP:
            assert rel is not None
            create_swap_load(conn, rel, name, indexes=index_build == "before")
        elif rel is None:  # "later": the target is made at publish, when the partition filter is known
            conn.execute(create_table_sql(target.dialect, schema, load_sql, if_not_exists=False))
        else:
            conn.execute(f"CREATE TABLE {load_sql} (LIKE {rel.sql} {LIKE_OPTIONS})")
            load = relation(conn, load_sql)
            assert load is not None
            if plan.filter is not None:
                key = partition_key(conn, rel.oid)
                assert not isinstance(key, str)
                bound = make_bound(conn, key.column, key.type, plan.filter)
                assert not isinstance(bound, str)
                add_bound_check(conn, load, bound)
            if index_build == "before":
                clone_indexes(conn, index_defs(conn, rel.oid)[0], load)
        plan.load_table = load_sql
    set_publish(target, conn, rec, plan.strategy, plan.load_table, plan.note)
    return plan
