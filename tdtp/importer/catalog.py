"""The PostgreSQL catalog as the importer reads it: relations, columns, keys, indexes, partitions.

One copy of each catalog query, shared by staging (does the target exist, which
columns does it have), the write modes (the primary key an upsert conflicts on),
and the swap/attach planner and publisher (what depends on a table, which indexes
to rebuild, which partition a bound replaces).  :func:`table_columns` and
:func:`primary_key` answer for SQLite too, from ``PRAGMA table_info``.  The column and
primary key queries themselves live in :mod:`tdtp.importer.table_meta`, below the
bookkeeping that needs them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tdtp.importer.table_meta import (
    pg_columns,
    pg_primary_key,
    sqlite_columns,
    sqlite_primary_key,
    sqlite_table_info,
)
from tdtp.importer.target import Target
from tdtp.sinks.ddl import quote_ident, split_qualified
from tdtp.sinks.schema_change import Column

MAX_IDENT = 63  # PostgreSQL's identifier limit, in bytes


def truncate_ident(name: str, limit: int = MAX_IDENT) -> str:
    """``name`` cut to ``limit`` bytes of UTF-8 without splitting a character."""
    data = name.encode()
    if len(data) <= limit:
        return name
    return data[:limit].decode(errors="ignore")


def qi(name: str) -> str:
    return quote_ident(name)


def qname(schema: str, name: str) -> str:
    return f"{qi(schema)}.{qi(name)}"


@dataclass
class Rel:
    """What the strategies need to know of a table."""

    oid: int
    schema: str
    name: str
    relkind: str
    persistence: str
    is_partition: bool
    owner: str
    may_own: bool
    reloptions: list[str] | None
    tablespace: str | None
    typed: bool
    rowsecurity: bool
    replident: str

    @property
    def sql(self) -> str:
        return qname(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


def relation(conn: Any, name_sql: str) -> Rel | None:
    row = conn.execute(
        """SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, c.relispartition,
                  pg_get_userbyid(c.relowner), pg_has_role(c.relowner, 'USAGE'), c.reloptions, t.spcname,
                  c.reloftype <> 0, c.relrowsecurity, c.relreplident
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
           WHERE c.oid = to_regclass(%s)""",
        (name_sql,),
    ).fetchone()
    if row is None:
        return None
    return Rel(
        oid=row[0],
        schema=row[1],
        name=row[2],
        relkind=row[3],
        persistence=row[4],
        is_partition=row[5],
        owner=row[6],
        may_own=row[7],
        reloptions=row[8],
        tablespace=row[9],
        typed=row[10],
        rowsecurity=row[11],
        replident=row[12],
    )


def schema_of(conn: Any, table: str) -> str:
    """The schema a table of this name is (or would be created) in."""
    schema, _ = split_qualified(table)
    if schema:
        return schema
    return conn.execute("SELECT current_schema()").fetchone()[0]


def dependents(conn: Any, oid: int) -> list[str]:
    """Objects outside the table that depend on it (or on its row type): what a swap would break.

    The table's own defaults, CHECK / primary key / unique constraints and indexes
    are rebuilt on the new table, so they do not count.
    """
    rows = conn.execute(
        """WITH deps AS (
               SELECT d.classid, d.objid, d.objsubid FROM pg_depend d
               WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s AND d.deptype IN ('n', 'a')
             UNION
               SELECT d.classid, d.objid, d.objsubid FROM pg_depend d
               JOIN pg_class c ON c.oid = %(oid)s JOIN pg_type t ON t.oid = c.reltype
               WHERE d.refclassid = 'pg_type'::regclass AND d.refobjid IN (t.oid, t.typarray)
                 AND d.deptype IN ('n', 'a'))
           SELECT DISTINCT COALESCE(
                    (SELECT CASE v.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
                            || r.ev_class::regclass::text
                     FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class
                     WHERE deps.classid = 'pg_rewrite'::regclass AND r.oid = deps.objid
                       AND r.ev_class <> %(oid)s),
                    pg_describe_object(deps.classid, deps.objid, 0))
           FROM deps
           WHERE NOT (deps.classid = 'pg_attrdef'::regclass AND EXISTS (
                        SELECT 1 FROM pg_attrdef a WHERE a.oid = deps.objid AND a.adrelid = %(oid)s))
             AND NOT (deps.classid = 'pg_constraint'::regclass AND EXISTS (
                        SELECT 1 FROM pg_constraint k WHERE k.oid = deps.objid AND k.conrelid = %(oid)s
                          AND k.contype IN ('c', 'p', 'u') AND NOT k.condeferrable))
             AND NOT (deps.classid = 'pg_class'::regclass AND EXISTS (
                        SELECT 1 FROM pg_index i WHERE i.indexrelid = deps.objid AND i.indrelid = %(oid)s))
           ORDER BY 1""",
        {"oid": oid},
    ).fetchall()
    return [r[0] for r in rows]


def columns_of(conn: Any, oid: int) -> list[tuple[str, str]]:
    """``(name, type)`` of a relation's columns in order."""
    return pg_columns(conn, oid)


def primary_key_of(conn: Any, oid: int) -> list[str]:
    """Primary key columns of a relation, in key order."""
    return pg_primary_key(conn, oid)


def table_columns(target: Target, conn: Any, table: str) -> list[tuple[str, str]] | None:
    """``(name, declared type)`` of a table's columns in order, or None if it does not exist."""
    if target.is_pg:
        rel = relation(conn, target.table(table))
        return None if rel is None else columns_of(conn, rel.oid)
    return sqlite_columns(conn, target.table(table)) or None


def column_facts(target: Target, conn: Any, table: str) -> list[Column] | None:
    """A table's columns with their NOT NULL and default facts (what schema evolution compares), or None."""
    if target.is_pg:
        rel = relation(conn, target.table(table))
        if rel is None:
            return None
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, "
            "atthasdef OR attidentity <> '' OR attgenerated <> '' FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (rel.oid,),
        ).fetchall()
        return [Column(r[0], r[1], bool(r[2]), bool(r[3])) for r in rows]
    rows = sqlite_table_info(conn, target.table(table))
    return [Column(r[1], r[2] or "", bool(r[3]), r[4] is not None) for r in rows] or None


def primary_key(target: Target, conn: Any, table: str) -> list[str]:
    """The target table's primary key columns (the upsert conflict target when parts name no keys)."""
    if target.is_pg:
        rel = relation(conn, target.table(table))
        return [] if rel is None else primary_key_of(conn, rel.oid)
    return sqlite_primary_key(conn, target.table(table))


# ---------------------------------------------------------------------------- indexes


@dataclass
class IndexDef:
    oid: int
    name: str
    unique: bool
    constraint: str  # "p", "u" or ""
    suffix: str  # "USING btree (id) ..." as pg_get_indexdef prints it


def index_defs(conn: Any, oid: int) -> tuple[list[IndexDef], list[str]]:
    """A table's indexes as definitions that can be replayed on another table, and what cannot."""
    rows = conn.execute(
        """SELECT i.indexrelid, ic.relname, pg_get_indexdef(i.indexrelid), i.indisunique, i.indisvalid,
                  k.contype, COALESCE(k.condeferrable, false), quote_ident(ic.relname),
                  quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(c.relname)
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                AND k.contype IN ('p', 'u', 'x')
           WHERE i.indrelid = %s ORDER BY i.indexrelid""",
        (oid,),
    ).fetchall()
    defs: list[IndexDef] = []
    blockers: list[str] = []
    for ix_oid, name, text, unique, valid, contype, deferrable, q_index, q_qualified, q_table in rows:
        if not valid:
            blockers.append(f"index {name} is not valid")
            continue
        if contype == "x":
            blockers.append(f"exclusion constraint {name}")
            continue
        if deferrable:
            blockers.append(f"deferrable constraint {name}")
            continue
        head = f"CREATE {'UNIQUE ' if unique else ''}INDEX {q_index} ON "
        suffix = None
        for ref in (q_qualified, q_table):
            for only in ("ONLY ", ""):
                prefix = f"{head}{only}{ref} "
                if text.startswith(prefix) and text[len(prefix) :].startswith("USING "):
                    suffix = text[len(prefix) :]
                    break
            if suffix is not None:
                break
        if suffix is None:
            blockers.append(f"index {name}: its definition cannot be replayed ({text})")
            continue
        defs.append(IndexDef(ix_oid, name, bool(unique), contype or "", suffix))
    return defs, blockers


def clone_indexes(conn: Any, defs: list[IndexDef], load: Rel) -> dict[int, str]:
    """Give ``load`` an index like each of ``defs`` it lacks; return source index oid -> load index name.

    Primary key and unique indexes become constraints (``ADD CONSTRAINT ... USING
    INDEX``), as ATTACH and the renamed table need.  Idempotent: equal indexes
    already on the load table are reused.
    """
    have_defs, _ = index_defs(conn, load.oid)
    have = {(d.unique, d.constraint, d.suffix): d.name for d in have_defs}
    names = {d.name for d in have_defs}
    out: dict[int, str] = {}
    for k, d in enumerate(defs):
        existing = have.get((d.unique, d.constraint, d.suffix))
        if existing is not None:
            out[d.oid] = existing
            continue
        new = f"{load.name}_{k}"
        while new in names:
            new += "x"
        conn.execute(f"CREATE {'UNIQUE ' if d.unique else ''}INDEX {qi(new)} ON {load.sql} {d.suffix}")
        if d.constraint:
            kind = "PRIMARY KEY" if d.constraint == "p" else "UNIQUE"
            conn.execute(f"ALTER TABLE {load.sql} ADD CONSTRAINT {qi(new)} {kind} USING INDEX {qi(new)}")
        names.add(new)
        have[(d.unique, d.constraint, d.suffix)] = new
        out[d.oid] = new
    return out


# ------------------------------------------------------------------------ constraints


def check_constraints(conn: Any, oid: int, *, except_prefix: str) -> dict[str, str]:
    """CHECK constraints of a relation by name (their definitions), leaving out ``except_prefix*``."""
    return {
        name: text
        for name, text in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s AND contype = 'c' "
            "AND conname NOT LIKE %s",
            (oid, except_prefix + "%"),
        ).fetchall()
    }


def check_names(conn: Any, oid: int, prefix: str) -> list[str]:
    """Names of a relation's CHECK constraints that start with ``prefix``."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s AND contype = 'c' AND conname LIKE %s",
            (oid, prefix + "%"),
        ).fetchall()
    ]


def not_null(conn: Any, oid: int) -> dict[str, bool]:
    """Whether each column of a relation is NOT NULL."""
    return {
        name: notnull
        for name, notnull in conn.execute(
            "SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
            (oid,),
        ).fetchall()
    }


def exists(conn: Any, name_sql: str) -> bool:
    """Whether a relation of this (quoted) name exists."""
    return conn.execute("SELECT to_regclass(%s)", (name_sql,)).fetchone()[0] is not None


# ------------------------------------------------------------------------- partitions


@dataclass
class PartKey:
    strategy: str  # "r" (range) or "l" (list)
    column: str
    type: str
    default_partition: bool


def partition_key(conn: Any, oid: int) -> PartKey | str:
    row = conn.execute(
        """SELECT p.partstrat, p.partnatts, a.attname, format_type(a.atttypid, a.atttypmod), p.partdefid <> 0
           FROM pg_partitioned_table p
           LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
           WHERE p.partrelid = %s""",
        (oid,),
    ).fetchone()
    if row is None:
        return "the table is not partitioned"
    strategy, natts, column, typ, has_default = row
    if natts != 1 or column is None:
        return "its partition key is not one column"
    if strategy not in ("r", "l"):
        return "it is hash-partitioned"
    return PartKey(strategy, column, typ, bool(has_default))


@dataclass
class Partition:
    oid: int
    schema: str
    name: str
    relkind: str
    bound: str

    @property
    def sql(self) -> str:
        return qname(self.schema, self.name)


def partitions(conn: Any, parent_oid: int) -> list[Partition]:
    """The parent's partitions with their bounds as text (read with TimeZone UTC, DateStyle ISO)."""
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    return [
        Partition(*row)
        for row in conn.execute(
            """SELECT c.oid, n.nspname, c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE i.inhparent = %s ORDER BY c.oid""",
            (parent_oid,),
        ).fetchall()
    ]
