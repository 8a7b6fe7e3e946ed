"""A table's columns and primary key, read from PostgreSQL's catalog or SQLite's ``PRAGMA table_info``.

The lowest copy of these queries: bookkeeping (checking an earlier version's tables
before upgrading them) sits below :mod:`tdtp.importer.catalog` and may not import
it, yet both ask the same two questions, so both ask them here.

PostgreSQL functions take the relation as an oid, or as a (quoted) name resolved with
``to_regclass`` so that a missing table reads as no columns rather than an error.
SQLite functions take the quoted table name as it goes into the PRAGMA.
"""

from __future__ import annotations

from typing import Any


def _rel_sql(rel: int | str) -> str:
    """The SQL that stands for ``rel`` where an oid is compared: the oid itself, or ``to_regclass(name)``."""
    return "%s" if isinstance(rel, int) else "to_regclass(%s)"


def pg_columns(conn: Any, rel: int | str) -> list[tuple[str, str]]:
    """``(name, type as format_type prints it)`` of a relation's live columns in order; [] if it is missing."""
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            f"WHERE attrelid = {_rel_sql(rel)} AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (rel,),
        ).fetchall()
    ]


def pg_primary_key(conn: Any, rel: int | str) -> list[str]:
    """Primary key columns of a relation, in key order; [] without a key or a relation."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            f"AND a.attnum = ANY(i.indkey) WHERE i.indrelid = {_rel_sql(rel)} AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)",
            (rel,),
        ).fetchall()
    ]


def sqlite_table_info(conn: Any, table_sql: str) -> list[Any]:
    """``PRAGMA table_info`` rows (cid, name, type, notnull, dflt_value, pk); [] if the table is missing."""
    return conn.execute(f"PRAGMA table_info({table_sql})").fetchall()


def sqlite_columns(conn: Any, table_sql: str) -> list[tuple[str, str]]:
    """``(name, declared type or "")`` of a SQLite table's columns in order; [] if it is missing."""
    return [(r[1], r[2] or "") for r in sqlite_table_info(conn, table_sql)]


def sqlite_primary_key(conn: Any, table_sql: str) -> list[str]:
    """Primary key columns of a SQLite table, in key order (``pk`` is the 1-based key position)."""
    rows = sqlite_table_info(conn, table_sql)
    return [r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]
