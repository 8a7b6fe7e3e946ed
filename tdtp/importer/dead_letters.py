"""Dead letters: parts that failed, kept in the target with their body and reason until settled.

A part that cannot be decoded or loaded after its retries, or one whose ledger row
says another body of it landed already (a conflicting duplicate), is kept in
``_tdtp_dead_letters``; the export it belongs to is not published while one is open
(:mod:`tdtp.importer.finalize`).  A good copy of the part, a replay that succeeds, or
a reset of the export settles it.  A dead letter names its target table when the
part got that far; one that does not (it could not even be decoded) blocks its
export in every table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xxhash

from tdtp.importer.bookkeeping import now_sql
from tdtp.importer.outcome import CONFLICT
from tdtp.importer.target import DEAD_LETTERS, Target


@dataclass
class DeadLetterRecord:
    id: int
    export_id: str
    part_number: int
    table_name: str
    reason: str
    source: str
    attempts: int
    created_at: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "export_id": self.export_id,
            "part_number": self.part_number,
            "table": self.table_name,
            "reason": self.reason,
            "source": self.source,
            "attempts": self.attempts,
            "created_at": str(self.created_at),
        }


def add_dead_letter(
    target: Target, conn: Any, *, export_id: str, part: int, table: str, reason: str, body: bytes, source: str
) -> int:
    """Keep a failed part; the same body failing again bumps ``attempts`` instead of piling up rows."""
    body_hash = xxhash.xxh3_64_hexdigest(body)
    with target.transaction(conn):
        row = target.execute(
            conn,
            f"SELECT id FROM {target.book(DEAD_LETTERS)} WHERE export_id = %s AND part_number = %s "
            "AND table_name = %s AND body_hash = %s AND replayed_at IS NULL",
            (export_id, part, table, body_hash),
        ).fetchone()
        if row is not None:
            target.execute(
                conn,
                f"UPDATE {target.book(DEAD_LETTERS)} SET attempts = attempts + 1, reason = %s WHERE id = %s",
                (reason, row[0]),
            )
            return int(row[0])
        cur = target.execute(
            conn,
            f"""INSERT INTO {target.book(DEAD_LETTERS)}
                  (export_id, part_number, table_name, reason, body, body_hash, source)
                VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (export_id, part, table, reason, body, body_hash, source),
        )
        return int(cur.fetchone()[0])


_FOR_TABLE = "(table_name = %s OR table_name = '')"


def resolve_dead_letters(
    target: Target, conn: Any, export_id: str, table: str, part: int, resolution: str
) -> None:
    """Inside a part's transaction: its open dead letters are settled by this good import.

    A conflicting duplicate is not: it says another body of this part landed, and only
    the user can say which one is right.
    """
    target.execute(
        conn,
        f"UPDATE {target.book(DEAD_LETTERS)} SET replayed_at = {now_sql(target)}, resolution = %s "
        f"WHERE export_id = %s AND part_number = %s AND {_FOR_TABLE} AND replayed_at IS NULL "
        "AND reason NOT LIKE %s",
        (resolution, export_id, part, table, f"%{CONFLICT}%"),
    )


def settle_export_dead_letters(target: Target, conn: Any, export_id: str, table: str, resolution: str) -> int:
    """Settle every open dead letter of one export into one table (a reset); returns how many.

    Only those naming the table: one that names none (its part could not even be
    decoded) blocks the export in every table, so a reset of one table leaves it.
    """
    cur = target.execute(
        conn,
        f"UPDATE {target.book(DEAD_LETTERS)} SET replayed_at = {now_sql(target)}, resolution = %s "
        "WHERE export_id = %s AND table_name = %s AND replayed_at IS NULL",
        (resolution, export_id, table),
    )
    return max(0, cur.rowcount or 0)


def open_dead_letters(
    target: Target, conn: Any, export_id: str | None = None, table: str | None = None
) -> list[DeadLetterRecord]:
    """Open dead letters, of one export (and one target table, counting those that name none)."""
    where = "replayed_at IS NULL"
    params: tuple = ()
    if export_id is not None:
        where += " AND export_id = %s"
        params += (export_id,)
    if table is not None:
        where += f" AND {_FOR_TABLE}"
        params += (table,)
    rows = target.execute(
        conn,
        f"SELECT id, export_id, part_number, table_name, reason, source, attempts, created_at "
        f"FROM {target.book(DEAD_LETTERS)} WHERE {where} ORDER BY id",
        params,
    ).fetchall()
    return [DeadLetterRecord(*row) for row in rows]


def dead_letter_body(target: Target, conn: Any, dead_letter_id: int) -> bytes:
    row = target.execute(
        conn, f"SELECT body FROM {target.book(DEAD_LETTERS)} WHERE id = %s", (dead_letter_id,)
    ).fetchone()
    return bytes(row[0]) if row else b""


def settle_dead_letter(target: Target, conn: Any, dead_letter_id: int, resolution: str) -> None:
    with target.transaction(conn):
        target.execute(
            conn,
            f"UPDATE {target.book(DEAD_LETTERS)} SET replayed_at = {now_sql(target)}, resolution = %s WHERE id = %s",
            (resolution, dead_letter_id),
        )
