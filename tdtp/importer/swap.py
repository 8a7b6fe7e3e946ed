"""PostgreSQL publish by metadata swap: rows written once, in parallel, then one catalog change.

The copy strategy (:mod:`tdtp.importer.publish`) stages each part's body and
publishes with ONE COPY inside one transaction, so an import can never be faster
than one ``COPY FROM`` of its rows, however many workers decode.  In replace mode
this module lets the workers write the rows themselves instead:

* At an export's first part (:func:`plan_export`, under the table's DDL lock) the
  strategy is chosen and recorded in ``_tdtp_exports.publish``:

  ``swap``    whole-table replace: the workers COPY each part, in the same
              transaction as its ledger row, into a *load table*
              ``<table>__tdtp_<export hash>`` created ``LIKE`` the target.  Publish
              = one transaction: build the indexes on the load table, lock the
              target, rename it away, rename the load table to the target's name,
              carry owner / grants / comment, drop the old table, give the indexes
              their old names.
  ``attach``  partition replace (``partition_filter`` day / hour / value) into a
              declaratively partitioned target (RANGE on the column for day/hour,
              LIST for value), one the importer creates itself or one that exists
              partitioned that way.  The load table has a CHECK constraint equal to
              the partition bound, so ATTACH skips its validation scan.  Publish =
              one transaction: DETACH the old partition of that bound (if any),
              ATTACH the load table FOR VALUES ..., DROP the old one.
  ``copy``    everything else (upsert, append, ``publish="copy"``, and targets the
              swap is not safe for); ``publish_note`` says why.

* Indexes (primary key included) are built on the load table at publish, after
  the rows are in (``swap_indexes="after"``, the default: measured faster than
  maintaining them during the parallel COPY), or when it is made (``"before"``).
  Built after, a duplicate key shows at publish as the export's error rather than
  as the dead letter of the part that carried it.

* Readers see the old table (or partition) until the publish transaction commits
  and the whole new one after it; a worker's part and its ledger row still commit
  together, so redelivered parts are skipped and a killed import resumes: the load
  table is an ordinary (logged) table that outlives the run.

* When the swap stopped being possible between the first part and the publish
  (a view was created on the target, the summary named another partition than
  the first part's header suggested, the write mode was changed), the load table
  is published with ``INSERT ... SELECT`` in one transaction instead (rows written
  twice, still atomic); the export's note says why.

What a whole-table swap carries over: columns with their defaults, NOT NULL,
CHECK constraints, generated columns, storage/compression and comments
(``LIKE ... INCLUDING``), every index including primary key and unique
constraints (rebuilt under the old names), the table comment, owner, table
privileges, reloptions, tablespace and UNLOGGED.  It is not done (the export
publishes by copy, the note names the reason) when anything else depends on the
table: views, materialized views, foreign keys to or from it, triggers, rules,
policies, owned or identity sequences, publications, extended statistics,
inheritance, column privileges, a non-default replica identity, row-level
security, typed tables, exclusion or deferrable constraints, or a role that does
not own the table.  Known caveat of any rename swap: a REPEATABLE READ /
SERIALIZABLE transaction that started before the swap sees the new table empty
(as after TRUNCATE); READ COMMITTED readers see the old rows, then the new ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tdtp.importer.ledger import ExportRecord, has_ledger_parts, set_publish
from tdtp.importer.target import Target
from tdtp.packet import DATE, TIMESTAMP, IntegrityError, Schema, TdtpError
from tdtp.sinks.ddl import create_table_sql, quote_ident, split_qualified
from tdtp.sources.base import PartitionFilter

COPY = "copy"
SWAP = "swap"
ATTACH = "attach"
INSERT = "insert"  # the fallback: INSERT ... SELECT from the load table

WHOLE = "whole"
PARTITION = "partition"
UNKNOWN = "unknown"

LOAD_MARK = "__tdtp_"
BOUND_CHECK = "tdtp_partition_bound"
_MAX_IDENT = 63
_LOAD_BASE_BYTES = 40  # + "__tdtp_" + 10 hex = 57 bytes; index names add "_NN"

_LIKE = (
    "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE "
    "INCLUDING COMMENTS INCLUDING COMPRESSION"
)


class SwapRefused(TdtpError):
    """``publish="swap"`` was asked for a target the swap is not possible for."""


# ----------------------------------------------------------------------------- names


def _truncate(name: str, limit: int) -> str:
    data = name.encode()
    if len(data) <= limit:
        return name
    return data[:limit].decode(errors="ignore")


def qi(name: str) -> str:
    return quote_ident(name)


def qname(schema: str, name: str) -> str:
    return f"{qi(schema)}.{qi(name)}"


def load_table_name(table: str, export_id: str) -> str:
    """``<table>__tdtp_<10 hex of the export id>`` (the table part cut to fit PostgreSQL's 63 bytes)."""
    digest = hashlib.sha1(export_id.encode()).hexdigest()[:10]
    return f"{_truncate(table, _LOAD_BASE_BYTES)}{LOAD_MARK}{digest}"


# --------------------------------------------------------------------------- catalog


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
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        ).fetchall()
    ]


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


# --------------------------------------------------------------------- whole-table swap


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


def create_swap_load(conn: Any, rel: Rel, load_name: str, *, indexes: bool) -> Rel:
    """The load table of a whole-table swap: ``LIKE`` the target, same persistence and storage."""
    unlogged = "UNLOGGED " if rel.persistence == "u" else ""
    options = f" WITH ({', '.join(rel.reloptions)})" if rel.reloptions else ""
    space = f" TABLESPACE {qi(rel.tablespace)}" if rel.tablespace else ""
    target_sql = qname(rel.schema, load_name)
    conn.execute(f"CREATE {unlogged}TABLE {target_sql} (LIKE {rel.sql} {_LIKE}){options}{space}")
    load = relation(conn, target_sql)
    assert load is not None
    if indexes:
        clone_indexes(conn, index_defs(conn, rel.oid)[0], load)
    return load


def _checks(conn: Any, oid: int) -> dict[str, str]:
    return {
        name: text
        for name, text in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s AND contype = 'c' "
            "AND conname NOT LIKE %s",
            (oid, BOUND_CHECK + "%"),
        ).fetchall()
    }


def _not_null(conn: Any, oid: int) -> dict[str, bool]:
    return {
        name: notnull
        for name, notnull in conn.execute(
            "SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
            (oid,),
        ).fetchall()
    }


def sync_constraints(conn: Any, source: Rel, load: Rel, *, relax_only: bool) -> None:
    """Make the load table's CHECK and NOT NULL constraints those of the target again.

    The load table copies them when it is made; a user who relaxes the target
    afterwards (to let dead-lettered parts in on replay) relaxes the load table
    with it (``relax_only``: at a writer's first part).  At publish, constraints
    added to the target meanwhile are added to the load table too (a scan of it).
    """
    mine, theirs = _checks(conn, load.oid), _checks(conn, source.oid)
    for name, text in mine.items():
        if theirs.get(name) != text:
            conn.execute(f"ALTER TABLE {load.sql} DROP CONSTRAINT {qi(name)}")
    load_nn, source_nn = _not_null(conn, load.oid), _not_null(conn, source.oid)
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
    have = [
        r[0]
        for r in conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s AND contype = 'c' AND conname LIKE %s",
            (load.oid, BOUND_CHECK + "%"),
        ).fetchall()
    ]
    if bound.check_name in have:
        return
    for name in have:
        conn.execute(f"ALTER TABLE {load.sql} DROP CONSTRAINT {qi(name)}")
    conn.execute(f"ALTER TABLE {load.sql} ADD CONSTRAINT {qi(bound.check_name)} CHECK ({bound.check})")


def drop_bound_checks(conn: Any, rel: Rel) -> None:
    for (name,) in conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s AND contype = 'c' AND conname LIKE %s",
        (rel.oid, BOUND_CHECK + "%"),
    ).fetchall():
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


def export_filter(rec: ExportRecord) -> PartitionFilter | None:
    spec = (rec.summary.extra or {}).get("partition_filter") if rec.summary is not None else None
    if not spec:
        return None
    return PartitionFilter(column=str(spec["column"]), kind=spec["kind"], value=str(spec["value"]))


def export_scope(rec: ExportRecord, whole_hint: bool) -> tuple[str, PartitionFilter | None]:
    """Whole table, a partition (with its filter once the summary says it), or not known yet."""
    pf = export_filter(rec)
    if pf is not None:
        return PARTITION, pf
    if rec.partition:
        return PARTITION, None
    if rec.summary is not None or rec.total_parts or whole_hint:
        return WHOLE, None
    return UNKNOWN, None


def plan_export(
    target: Target,
    conn: Any,
    rec: ExportRecord,
    schema: Schema,
    *,
    publish: str,
    create_table: bool,
    whole_hint: bool,
) -> Plan:
    """Choose how an export is published (inside the DDL-locked transaction of its first part)."""
    if publish == "copy":
        return Plan(COPY, note="publish=copy")
    if rec.mode != "replace":
        return Plan(COPY)
    if has_ledger_parts(target, conn, rec.export_id):
        return Plan(COPY, note="parts were staged for copy before this importer version")
    strict = publish == "swap"

    def refuse(reasons: list[str], **kw: Any) -> Plan:
        text = "; ".join(reasons)
        if strict:
            raise SwapRefused(
                f"publish='swap' is not possible for {rec.table_name!r}: {text}; use publish='auto' or 'copy'",
                where=f"export {rec.export_id}",
            )
        return Plan(COPY, note=f"not swapped: {text}", reasons=reasons, **kw)

    scope, pf = export_scope(rec, whole_hint)
    rel = relation(conn, target.table(rec.table_name))
    if scope == UNKNOWN:
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
) -> Plan:
    """Decide, create what the decision needs (target, load table), and record it on the export."""
    plan = plan_export(
        target, conn, rec, schema, publish=publish, create_table=create_table, whole_hint=whole_hint
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
            conn.execute(f"CREATE TABLE {load_sql} (LIKE {rel.sql} {_LIKE})")
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
    set_publish(target, conn, rec.export_id, plan.strategy, plan.load_table, plan.note)
    return plan


# ------------------------------------------------------------------- workers' writes


def copy_into_load(
    conn: Any, load_table: str, columns: list[str], data: bytes | Iterable[bytes] | None, rows: int
) -> None:
    """Inside a part's transaction: its rows (COPY text, whole or in chunks) into the load table, counted."""
    if not rows:
        return
    from tdtp.importer.publish import describe_pg_error

    cols = ", ".join(qi(c) for c in columns)
    chunks = [data] if isinstance(data, bytes) else (data or [])
    try:
        with conn.cursor() as cur:
            with cur.copy(f"COPY {load_table} ({cols}) FROM STDIN WITH (FORMAT text, DELIMITER '|')") as cp:
                for chunk in chunks:
                    cp.write(chunk)
            loaded = cur.rowcount
    except psycopg.Error as exc:
        raise TdtpError(f"the target refused the part's rows: {describe_pg_error(exc)}") from exc
    if loaded != rows:
        raise IntegrityError(f"COPY loaded {loaded} rows, the part holds {rows}")


# --------------------------------------------------------------------------- publish


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
    from tdtp.importer.ledger import ddl_lock

    ddl_lock(target, conn, rec.table_name)
    if rec.mode != "replace":
        return _by_insert(target, conn, rec, load, f"the write mode is now {rec.mode}")
    pf = export_filter(rec)
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
    old_name = _truncate(f"{load.name}_old", _MAX_IDENT)
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
        keys = rec.key_fields or _primary_key(conn, load.oid)
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
    part_name = old.name if old is not None else _truncate(f"{parent.name}_{bound.label}", _MAX_IDENT)
    taken = conn.execute("SELECT to_regclass(%s)", (qname(parent.schema, part_name),)).fetchone()[0]
    if taken is None:
        conn.execute(f"ALTER TABLE {load.sql} RENAME TO {qi(part_name)}")
    else:
        part_name = load.name
    for parent_ix, new in renames.items():
        name = old_index_names.get(parent_ix) or _partition_index_name(conn, parent, parent_ix, part_name)
        free = conn.execute("SELECT to_regclass(%s)", (qname(parent.schema, name),)).fetchone()[0] is None
        if name != new and free:
            conn.execute(f"ALTER INDEX {qname(parent.schema, new)} RENAME TO {qi(name)}")
    extra = [note] if note else []
    if scanned:
        extra.append("ATTACH scanned the partition")
    return Published(rows, ATTACH, note="; ".join(extra))


def _adopt_name(conn: Any, load: Rel, name: str) -> None:
    """The load table becomes the table ``name``: rename it, and its indexes ``<load>_x`` to ``<name>_x``."""
    conn.execute(f"ALTER TABLE {load.sql} RENAME TO {qi(name)}")
    for (index,) in conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s",
        (load.oid,),
    ).fetchall():
        if index.startswith(load.name):
            new = _truncate(name + index[len(load.name) :], _MAX_IDENT)
            if conn.execute("SELECT to_regclass(%s)", (qname(load.schema, new),)).fetchone()[0] is None:
                conn.execute(f"ALTER INDEX {qname(load.schema, index)} RENAME TO {qi(new)}")


def _partition_index_name(conn: Any, parent: Rel, parent_ix: int, part_name: str) -> str:
    """``dst_20260101_pkey`` for the parent's ``dst_pkey``: the partition's name for the same suffix."""
    (name,) = conn.execute("SELECT relname FROM pg_class WHERE oid = %s", (parent_ix,)).fetchone()
    suffix = name[len(parent.name) + 1 :] if name.startswith(parent.name + "_") else name
    return _truncate(f"{part_name}_{suffix}", _MAX_IDENT)


def _primary_key(conn: Any, oid: int) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)",
            (oid,),
        ).fetchall()
    ]


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
    from tdtp.importer.finalize import partition_predicate
    from tdtp.importer.writemode import delete_replaced, on_conflict, upsert_keys

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
    if rec.mode == "replace":
        delete_replaced(target, conn, table, partition_predicate(target, rec.summary))
    elif rec.mode == "upsert":
        statement += " " + on_conflict(target, upsert_keys(target, conn, rec), [n for n, _ in rec.columns])
    cur = conn.execute(statement)
    moved = cur.rowcount
    conn.execute(f"{'TRUNCATE' if keep else 'DROP'} TABLE {load.sql}")
    return Published(moved, INSERT, note=f"INSERT from the load table: {reason}")


def drop_load_table(target: Target, conn: Any, rec: ExportRecord) -> None:
    if rec.load_table and rec.publish in (SWAP, ATTACH):
        conn.execute(f"DROP TABLE IF EXISTS {target.table(rec.load_table)}")
