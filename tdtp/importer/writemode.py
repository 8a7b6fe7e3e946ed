"""The SQL of the write modes, shared by every publish path (SQLite staging, the live
PostgreSQL COPY publisher, and the swap/attach INSERT fallback).

``replace`` deletes the export's partition (or every row) before the insert; ``upsert``
needs key fields and turns the insert into ``INSERT ... ON CONFLICT``; ``append`` adds
nothing.  Keeping this in one place keeps the three paths agreeing on what a mode means.
"""

from __future__ import annotations

from typing import Any

from tdtp.importer.ledger import ExportRecord
from tdtp.importer.staging import primary_key
from tdtp.importer.target import Target
from tdtp.packet import TdtpError


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
