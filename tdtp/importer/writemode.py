"""The write modes' SQL, shared by every publish path (SQLite staging, the PostgreSQL COPY
publisher, and the swap/attach INSERT fallback), and the one reader of an export's
partition filter.

``replace`` deletes the export's partition (or every row) before the insert; ``upsert``
needs key fields and turns the insert into ``INSERT ... ON CONFLICT``; ``append`` adds
nothing.  Which rows a replace replaces comes from the summary's
``extra["partition_filter"]`` (see docs/importer.md), read by :func:`partition_filter`
alone, so the publishers, the swap planner and Dagster's row-count check agree on it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg

from tdtp.importer.catalog import primary_key
from tdtp.importer.ledger import ExportRecord
from tdtp.importer.target import Target
from tdtp.packet import Summary, TdtpError
from tdtp.sources.base import PartitionFilter


def partition_filter(summary: Summary | None) -> PartitionFilter | None:
    """The partition an export covers, from its summary; None: the whole table (or not known)."""
    spec = (summary.extra or {}).get("partition_filter") if summary is not None else None
    if not spec:
        return None
    return PartitionFilter(column=str(spec["column"]), kind=spec["kind"], value=str(spec["value"]))


def partition_predicate(target: Target, summary: Summary | None) -> tuple[str, tuple] | None:
    """SQL condition (and parameters) selecting the export's partition in the target; None = all rows."""
    pf = partition_filter(summary)
    if pf is None:
        return None
    col = target.ident(pf.column)
    if pf.kind == "value":
        return f"{col} = %s", (pf.value,)
    start, end = pf.bounds()
    if target.is_pg:
        # Bounds are UTC; the publish transaction runs with TimeZone=UTC.
        return f"{col} >= %s AND {col} < %s", (start, end)
    # The same normalization as the SQLite source's partition filter: datetime(col).
    return (
        f"datetime({col}) >= %s AND datetime({col}) < %s",
        (start.strftime("%Y-%m-%d %H:%M:%S"), end.strftime("%Y-%m-%d %H:%M:%S")),
    )


def partition_query(
    target: Target, conn: Any, table: str, summary: Summary | None, what: str, tail: str = ""
) -> tuple | None:
    """The first row of ``SELECT what`` over the export's partition of ``table`` (all of it for a
    whole-table export), ``tail`` after the WHERE.

    The publishers' own predicate, read with TimeZone UTC as they publish, so a count
    covers exactly the rows a replace put there.  Driver errors (a missing table) pass.
    """
    predicate = partition_predicate(target, summary)
    where, params = predicate if predicate is not None else ("true", ())
    sql = f"SELECT {what} FROM {target.table(table)} WHERE {where}{tail}"
    if target.is_pg:
        with conn.transaction():
            conn.execute("SET LOCAL TimeZone = 'UTC'")  # the predicate's bounds are UTC
            return target.execute(conn, sql, params).fetchone()
    return target.execute(conn, sql, params).fetchone()


def partition_has_rows(target: Target, conn: Any, table: str, summary: Summary | None) -> bool | None:
    """Whether ``table`` has any row of the export's partition (None: the table cannot be read).

    One row (``LIMIT 1``), not ``count(*)``: asked of published exports on every
    re-import, it must cost one index or page probe, not a scan of a big partition.
    """
    try:
        return partition_query(target, conn, table, summary, "1", " LIMIT 1") is not None
    except (sqlite3.Error, psycopg.Error):
        return None


def delete_replaced(target: Target, conn: Any, table: str, predicate: tuple[str, Any] | None) -> None:
    """Remove what a replace replaces: the rows of ``predicate`` (SQL, params), or all of them."""
    if predicate is None:
        conn.execute(f"DELETE FROM {table}")
    else:
        target.execute(conn, f"DELETE FROM {table} WHERE {predicate[0]}", predicate[1])


def upsert_keys(target: Target, conn: Any, rec: ExportRecord) -> list[str]:
    """The conflict target of an upsert: the schema's key fields, else the table's primary key."""
    keys = rec.key_fields or primary_key(target, conn, rec.table_name)
    if not keys:
        raise TdtpError(
            f'upsert into {rec.table_name!r} needs key fields: mark them key="true" in the schema '
            "or give the target table a primary key",
            where=f"export {rec.export_id}",
        )
    return list(keys)


def on_conflict(target: Target, keys: list[str], columns: list[str]) -> str:
    """``ON CONFLICT (keys) DO UPDATE SET ...`` (or ``DO NOTHING`` when every column is a key)."""
    others = [n for n in columns if n not in keys]
    action = (
        "DO UPDATE SET " + ", ".join(f"{target.ident(n)} = excluded.{target.ident(n)}" for n in others)
        if others
        else "DO NOTHING"
    )
    return f"ON CONFLICT ({', '.join(target.ident(k) for k in keys)}) {action}"
