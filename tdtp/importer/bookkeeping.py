"""The bookkeeping tables' definitions, their upgrades, and the locks importers share.

Bookkeeping lives in the target (see :mod:`tdtp.importer.target`): ``_tdtp_exports``
(one row per export *and target table*), ``_tdtp_ledger`` (one row per part landed in a
target table), ``_tdtp_dead_letters`` and, on PostgreSQL, ``_tdtp_stage_parts``.
Everything is keyed by the target table as well as the export: one export can be
imported into any number of tables, each exactly once (docs/importer.md).

Bookkeeping made by an earlier version is upgraded on the next start: columns added
since are added, and tables keyed by export alone are re-keyed by table too, in one
transaction under the DDL lock.
"""

from __future__ import annotations

from typing import Any

from tdtp.importer.table_meta import pg_columns, pg_primary_key, sqlite_columns, sqlite_primary_key
from tdtp.importer.target import BOOK_SCHEMA, DEAD_LETTERS, EXPORTS, LEDGER, STAGE_PARTS, Target
from tdtp.sinks.ddl import quote_ident

# Stable keys for pg_advisory_xact_lock: DDL (concurrent CREATE ... IF NOT EXISTS races)
# and publishing (one publisher per export and table at a time, without locking rows
# that workers update).
_DDL_LOCK_KEY = 0x7D7D_0001
PUBLISH_LOCK_KEY = 0x7D7D_0002


def now_sql(target: Target) -> str:
    return "now()" if target.is_pg else "CURRENT_TIMESTAMP"


def _table_ddl(target: Target, name: str) -> str:
    pg = target.is_pg
    ts = "timestamptz" if pg else "TEXT"
    now = now_sql(target)
    if name == EXPORTS:
        return f"""CREATE TABLE IF NOT EXISTS {target.book(EXPORTS)} (
            export_id text NOT NULL,
            table_name text NOT NULL,
            "partition" text NOT NULL DEFAULT '',
            mode text NOT NULL,
            stage_table text NOT NULL,
            columns text NOT NULL DEFAULT '[]',
            key_fields text NOT NULL DEFAULT '[]',
            total_parts integer,
            total_rows bigint,
            checksum text,
            summary text,
            producer text NOT NULL DEFAULT 'tdtp',
            status text NOT NULL DEFAULT 'importing',
            note text NOT NULL DEFAULT '',
            published_rows bigint NOT NULL DEFAULT 0,
            publish text NOT NULL DEFAULT '',
            load_table text NOT NULL DEFAULT '',
            publish_note text NOT NULL DEFAULT '',
            produced_at text NOT NULL DEFAULT '',
            schema_change text NOT NULL DEFAULT '',
            created_at {ts} NOT NULL DEFAULT {now},
            updated_at {ts} NOT NULL DEFAULT {now},
            finalized_at {ts},
            PRIMARY KEY (export_id, table_name))"""
    if name == LEDGER:
        return f"""CREATE TABLE IF NOT EXISTS {target.book(LEDGER)} (
            export_id text NOT NULL,
            part_number integer NOT NULL,
            "rows" integer NOT NULL,
            checksum text NOT NULL,
            table_name text NOT NULL,
            "partition" text NOT NULL DEFAULT '',
            imported_at {ts} NOT NULL DEFAULT {now},
            published boolean NOT NULL DEFAULT false,
            body_hash text NOT NULL DEFAULT '',
            source text NOT NULL DEFAULT '',
            landed_by text NOT NULL DEFAULT '',
            PRIMARY KEY (table_name, export_id, part_number))"""
    if name == DEAD_LETTERS:
        serial = "bigserial PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
        return f"""CREATE TABLE IF NOT EXISTS {target.book(DEAD_LETTERS)} (
            id {serial},
            export_id text NOT NULL,
            part_number integer NOT NULL,
            table_name text NOT NULL,
            reason text NOT NULL,
            body {"bytea" if pg else "BLOB"} NOT NULL,
            body_hash text NOT NULL,
            source text NOT NULL DEFAULT '',
            attempts integer NOT NULL DEFAULT 1,
            created_at {ts} NOT NULL DEFAULT {now},
            replayed_at {ts},
            resolution text)"""
    # PostgreSQL stages each part's body (already compressed) until it is published.
    return f"""CREATE TABLE IF NOT EXISTS {target.book(STAGE_PARTS)} (
        table_name text NOT NULL,
        export_id text NOT NULL,
        part_number integer NOT NULL,
        body bytea NOT NULL,
        staged_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (table_name, export_id, part_number))"""


def _tables(target: Target) -> list[str]:
    return [EXPORTS, LEDGER, DEAD_LETTERS] + ([STAGE_PARTS] if target.is_pg else [])


def _ddl(target: Target) -> list[str]:
    statements = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(BOOK_SCHEMA)}"] if target.is_pg else []
    statements += [_table_ddl(target, name) for name in _tables(target)]
    statements.append(
        f"CREATE INDEX IF NOT EXISTS _tdtp_dead_letters_export ON {target.book(DEAD_LETTERS)} "
        "(export_id, part_number)"
    )
    if target.is_pg:
        # Bodies are zstd inside already: spare the server a pglz attempt on each.
        statements.append(f"ALTER TABLE {target.book(STAGE_PARTS)} ALTER COLUMN body SET STORAGE EXTERNAL")
    return statements


# Columns added after a table's first release: bookkeeping made by an earlier version
# gets them on the next start (ALTER TABLE ... ADD COLUMN).
_ADDED_COLUMNS = {
    EXPORTS: (
        ("publish", "text NOT NULL DEFAULT ''"),
        ("load_table", "text NOT NULL DEFAULT ''"),
        ("publish_note", "text NOT NULL DEFAULT ''"),
        ("produced_at", "text NOT NULL DEFAULT ''"),
        ("schema_change", "text NOT NULL DEFAULT ''"),
    ),
    LEDGER: (
        ("body_hash", "text NOT NULL DEFAULT ''"),
        ("source", "text NOT NULL DEFAULT ''"),
        ("landed_by", "text NOT NULL DEFAULT ''"),  # which host/worker landed the part
    ),
}
# The primary keys by target table (earlier versions keyed exports and parts by export alone).
_KEYS = {
    EXPORTS: ["export_id", "table_name"],
    LEDGER: ["table_name", "export_id", "part_number"],
    STAGE_PARTS: ["table_name", "export_id", "part_number"],
}


def _columns(target: Target, conn: Any, name: str) -> list[str]:
    """A bookkeeping table's column names in order; [] when it does not exist yet."""
    if target.is_pg:
        return [col for col, _ in pg_columns(conn, target.book(name))]
    return [col for col, _ in sqlite_columns(conn, target.book(name))]


def _key(target: Target, conn: Any, name: str) -> list[str]:
    """A bookkeeping table's primary key columns, in key order."""
    if target.is_pg:
        return pg_primary_key(conn, target.book(name))
    return sqlite_primary_key(conn, target.book(name))


def _upgrades(target: Target, conn: Any) -> list[str]:
    """What an earlier version's bookkeeping lacks: ``add:TABLE:COLUMN`` and ``rekey:TABLE`` items."""
    todo: list[str] = []
    for name in _tables(target):
        have = _columns(target, conn, name)
        if not have:
            continue  # no table yet: CREATE TABLE makes it whole
        todo += [f"add:{name}:{col}" for col, _ in _ADDED_COLUMNS.get(name, ()) if col not in have]
        if name in _KEYS and _key(target, conn, name) != _KEYS[name]:
            todo.append(f"rekey:{name}")
    return todo


def bookkeeping_exists(target: Target, conn: Any) -> bool:
    """Every bookkeeping table is there, in this version's shape."""
    return all(_columns(target, conn, name) for name in _tables(target)) and not _upgrades(target, conn)


def ensure_bookkeeping(target: Target, conn: Any) -> None:
    """Create (or upgrade) the bookkeeping tables once; safe when several importers start together."""
    if bookkeeping_exists(target, conn):
        return  # no DDL (and no DDL locks) on every start
    with target.transaction(conn):
        if target.is_pg:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        todo = _upgrades(target, conn)  # again, under the lock
        for item in todo:
            kind, name, *rest = item.split(":")
            if kind == "add":
                decl = dict(_ADDED_COLUMNS[name])[rest[0]]
                conn.execute(f"ALTER TABLE {target.book(name)} ADD COLUMN {quote_ident(rest[0])} {decl}")
        for item in todo:
            kind, name, *_ = item.split(":")
            if kind == "rekey":
                _rekey(target, conn, name)
        for statement in _ddl(target):
            conn.execute(statement)


def _rekey(target: Target, conn: Any, name: str) -> None:
    """Key an earlier version's table by target table too (its rows keep their values)."""
    cols = _columns(target, conn, name)
    if name == STAGE_PARTS and "table_name" not in cols:
        conn.execute(f"ALTER TABLE {target.book(STAGE_PARTS)} ADD COLUMN table_name text NOT NULL DEFAULT ''")
        conn.execute(
            f"UPDATE {target.book(STAGE_PARTS)} s SET table_name = e.table_name FROM {target.book(EXPORTS)} e "
            "WHERE e.export_id = s.export_id"
        )
    if target.is_pg:
        (constraint,) = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p'",
            (target.book(name),),
        ).fetchone()
        keys = ", ".join(quote_ident(k) for k in _KEYS[name])
        conn.execute(
            f"ALTER TABLE {target.book(name)} DROP CONSTRAINT {quote_ident(constraint)}, ADD PRIMARY KEY ({keys})"
        )
        return
    # SQLite cannot change a primary key: rebuild the table under its new definition.
    old = f"{name}_before_rekey"
    conn.execute(f"ALTER TABLE {target.book(name)} RENAME TO {target.book(old)}")
    conn.execute(_table_ddl(target, name))
    keep = ", ".join(quote_ident(c, dialect="sqlite") for c in cols if c in _columns(target, conn, name))
    conn.execute(f"INSERT INTO {target.book(name)} ({keep}) SELECT {keep} FROM {target.book(old)}")
    conn.execute(f"DROP TABLE {target.book(old)}")


def publish_lock(target: Target, conn: Any, export_id: str, table: str, *, wait_seconds: float) -> bool:
    """Take the publish lock of one export into one table for this transaction.

    Waits up to ``wait_seconds`` for another importer publishing it right now (it
    usually finishes, and this one then finds the export published); False when the
    wait ran out.  SQLite: BEGIN IMMEDIATE already serializes writers.
    """
    if not target.is_pg:
        return True
    key = f"{export_id}|{table}"
    if wait_seconds < 0.001:  # lock_timeout = 0 would mean no timeout at all
        row = conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (PUBLISH_LOCK_KEY, key))
        return bool(row.fetchone()[0])
    (previous,) = conn.execute("SELECT current_setting('lock_timeout')").fetchone()
    conn.execute("SAVEPOINT tdtp_publish_lock")
    conn.execute(f"SET LOCAL lock_timeout = '{max(1, round(wait_seconds * 1000))}ms'")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (PUBLISH_LOCK_KEY, key))
    except Exception as exc:  # the wait ran out (lock_not_available): roll back to before it
        if getattr(getattr(exc, "diag", None), "sqlstate", "") != "55P03":
            raise
        conn.execute("ROLLBACK TO SAVEPOINT tdtp_publish_lock")
        return False
    conn.execute("RELEASE SAVEPOINT tdtp_publish_lock")
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (previous,))
    return True


def ddl_lock(target: Target, conn: Any, name: str) -> None:
    """Serialize DDL on one table name across importers (PostgreSQL; SQLite has one writer)."""
    if target.is_pg:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_DDL_LOCK_KEY, name))
