"""The exports and the part ledger in the target, keyed by target table.

``_tdtp_ledger`` has one row per part landed in a target table, written in the same
transaction as the part's staged rows: that is what makes a redelivered part a
no-op *for that table*.  It keeps the part's row checksum, a hash of its body and
where it came from, so another body of the same part is a conflict, never a
duplicate.  ``_tdtp_exports`` has one row per export and target table: write mode,
staging, the summary totals once the summary arrived, and whether it is published.  Checksums are 16-digit hex text: XXH3-64 does not fit a signed
BIGINT and the sum is taken in Python anyway.  The tables' definitions are in
:mod:`tdtp.importer.bookkeeping`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tdtp.importer.bookkeeping import now_sql
from tdtp.importer.outcome import CONFLICT
from tdtp.importer.target import EXPORTS, LEDGER, STAGE_PARTS, Target
from tdtp.packet import IntegrityError, Summary


@dataclass
class ExportRecord:
    export_id: str
    table_name: str
    partition: str
    mode: str
    stage_table: str
    columns: list[list[str]]
    key_fields: list[str]
    total_parts: int | None
    total_rows: int | None
    checksum: str | None
    summary: Summary | None
    producer: str
    status: str
    note: str
    published_rows: int
    finalized_at: Any
    publish: str = ""  # "" (not decided yet), "copy", "swap" or "attach": see tdtp.importer.swap_plan
    load_table: str = ""  # swap/attach: the table the workers load the rows into
    publish_note: str = ""  # why this export publishes the way it does (e.g. why not by swap)
    produced_at: str = ""  # the first part's header Timestamp: when the producer made it
    updated_at: Any = None
    schema_change: str = ""  # JSON: the export's fields, its schema policy and how it differs from the table


_EXPORT_COLS = (
    'export_id, table_name, "partition", mode, stage_table, columns, key_fields, total_parts, total_rows, '
    "checksum, summary, producer, status, note, published_rows, finalized_at, publish, load_table, "
    "publish_note, produced_at, updated_at, schema_change"
)


def _record(row: tuple) -> ExportRecord:
    return ExportRecord(
        export_id=row[0],
        table_name=row[1],
        partition=row[2],
        mode=row[3],
        stage_table=row[4],
        columns=json.loads(row[5] or "[]"),
        key_fields=json.loads(row[6] or "[]"),
        total_parts=row[7],
        total_rows=row[8],
        checksum=row[9],
        summary=Summary.from_json(row[10]) if row[10] else None,
        producer=row[11],
        status=row[12],
        note=row[13],
        published_rows=row[14],
        finalized_at=row[15],
        publish=row[16],
        load_table=row[17],
        publish_note=row[18],
        produced_at=row[19],
        updated_at=row[20],
        schema_change=row[21],
    )


def load_export(target: Target, conn: Any, export_id: str, table: str) -> ExportRecord | None:
    """The record of one export into one target table (None: nothing of it landed there)."""
    row = target.execute(
        conn,
        f"SELECT {_EXPORT_COLS} FROM {target.book(EXPORTS)} WHERE export_id = %s AND table_name = %s",
        (export_id, table),
    ).fetchone()
    return None if row is None else _record(row)


def export_tables(target: Target, conn: Any, export_id: str) -> list[str]:
    """The target tables an export has been imported into (or is being), by name."""
    return [
        r[0]
        for r in target.execute(
            conn,
            f"SELECT table_name FROM {target.book(EXPORTS)} WHERE export_id = %s ORDER BY table_name",
            (export_id,),
        ).fetchall()
    ]


def other_exports(
    target: Target, conn: Any, rec: ExportRecord, *, status: str | None = None
) -> list[ExportRecord]:
    """The other exports of the same table and partition (with ``status``, when given)."""
    sql = (
        f'SELECT {_EXPORT_COLS} FROM {target.book(EXPORTS)} WHERE table_name = %s AND "partition" = %s '
        "AND export_id <> %s"
    )
    params: tuple = (rec.table_name, rec.partition, rec.export_id)
    if status is not None:
        sql += " AND status = %s"
        params += (status,)
    return [_record(row) for row in target.execute(conn, sql, params).fetchall()]


def set_publish(target: Target, conn: Any, rec: ExportRecord, publish: str, load_table: str, note: str) -> None:
    """Record how an export will be published (decided once, at its first part)."""
    target.execute(
        conn,
        f"UPDATE {target.book(EXPORTS)} SET publish = %s, load_table = %s, publish_note = %s, "
        f"updated_at = {now_sql(target)} WHERE export_id = %s AND table_name = %s",
        (publish, load_table, note, rec.export_id, rec.table_name),
    )


def set_schema_change(target: Target, conn: Any, export_id: str, table: str, doc: str) -> None:
    """Record how an export's schema compares with its table (see :mod:`tdtp.importer.evolve`)."""
    target.execute(
        conn,
        f"UPDATE {target.book(EXPORTS)} SET schema_change = %s WHERE export_id = %s AND table_name = %s",
        (doc, export_id, table),
    )


def set_state(
    target: Target,
    conn: Any,
    rec: ExportRecord,
    *,
    status: str | None = None,
    note: str | None = None,
    add_rows: int = 0,
    finalized: bool = False,
) -> None:
    """Change an export's status, note or published rows (inside the caller's transaction)."""
    sets = [f"updated_at = {now_sql(target)}", "published_rows = published_rows + %s"]
    params: list[Any] = [add_rows]
    for column, value in (("status", status), ("note", note)):
        if value is not None:
            sets.append(f"{column} = %s")
            params.append(value)
    if finalized:
        sets.append(f"finalized_at = {now_sql(target)}")
    target.execute(
        conn,
        f"UPDATE {target.book(EXPORTS)} SET {', '.join(sets)} WHERE export_id = %s AND table_name = %s",
        (*params, rec.export_id, rec.table_name),
    )


def has_ledger_parts(target: Target, conn: Any, export_id: str, table: str) -> bool:
    return (
        target.execute(
            conn,
            f"SELECT 1 FROM {target.book(LEDGER)} WHERE export_id = %s AND table_name = %s LIMIT 1",
            (export_id, table),
        ).fetchone()
        is not None
    )


def upsert_export(
    target: Target,
    conn: Any,
    *,
    export_id: str,
    table: str,
    partition: str,
    mode: str | None,
    stage: str,
    columns: list[list[str]] | None = None,
    key_fields: list[str] | None = None,
    total_parts: int | None = None,
    producer: str | None = None,
    produced_at: str = "",
) -> None:
    """Record an export into a table the first time it is seen; later runs update what they learn.

    The latest run's write mode wins while the export is unpublished (a user who
    reruns with ``--mode upsert`` means it); ``mode=None`` (a replay) keeps it.
    The column list is set by the first part and kept, so every later part is
    checked against it.
    """
    now = now_sql(target)
    target.execute(
        conn,
        f"""INSERT INTO {target.book(EXPORTS)}
              (export_id, table_name, "partition", mode, stage_table, columns, key_fields, total_parts, producer,
               produced_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (export_id, table_name) DO UPDATE SET
              mode = CASE WHEN {EXPORTS}.status = 'finalized' OR %s THEN {EXPORTS}.mode ELSE excluded.mode END,
              columns = CASE WHEN {EXPORTS}.columns = '[]' THEN excluded.columns ELSE {EXPORTS}.columns END,
              key_fields = CASE WHEN {EXPORTS}.columns = '[]' THEN excluded.key_fields ELSE {EXPORTS}.key_fields END,
              total_parts = COALESCE({EXPORTS}.total_parts, excluded.total_parts),
              producer = CASE WHEN %s THEN excluded.producer ELSE {EXPORTS}.producer END,
              produced_at = CASE WHEN {EXPORTS}.produced_at = '' THEN excluded.produced_at
                                 ELSE {EXPORTS}.produced_at END,
              updated_at = {now}""",
        (
            export_id,
            table,
            partition,
            mode or "replace",
            stage,
            json.dumps(columns or []),
            json.dumps(key_fields or []),
            total_parts,
            producer or "tdtp",
            produced_at,
            mode is None,
            producer is not None,
        ),
    )


def record_summary(
    target: Target, conn: Any, summary: Summary, *, table: str, mode: str | None, stage: str
) -> None:
    """Store an export's summary (the totals finalize checks against)."""
    upsert_export(
        target,
        conn,
        export_id=summary.export_id,
        table=table,
        partition=summary.partition,
        mode=mode,
        stage=stage,
    )
    target.execute(
        conn,
        f"""UPDATE {target.book(EXPORTS)} SET total_parts = %s, total_rows = %s, checksum = %s, summary = %s,
              "partition" = %s, producer = 'tdtp', updated_at = {now_sql(target)}
            WHERE export_id = %s AND table_name = %s""",
        (
            summary.total_parts,
            summary.total_rows,
            summary.checksum,
            summary.to_json().decode(),
            summary.partition,
            summary.export_id,
            table,
        ),
    )


def set_mode(target: Target, conn: Any, export_id: str, table: str, mode: str) -> None:
    """A rerun with another ``--mode`` applies to the export's unpublished rows."""
    with target.transaction(conn):
        target.execute(
            conn,
            f"UPDATE {target.book(EXPORTS)} SET mode = %s, updated_at = {now_sql(target)} "
            "WHERE export_id = %s AND table_name = %s AND status <> 'finalized' AND mode <> %s",
            (mode, export_id, table, mode),
        )


def forget_landing(target: Target, conn: Any, export_id: str, table: str) -> None:
    """Inside the caller's transaction: the export's parts are no longer in ``table`` (to land again).

    Its ledger rows and staged bodies go, and the record returns to ``importing``
    with nothing published; the summary and the column list stay.
    """
    target.execute(
        conn, f"DELETE FROM {target.book(LEDGER)} WHERE export_id = %s AND table_name = %s", (export_id, table)
    )
    if target.is_pg:
        target.execute(
            conn,
            f"DELETE FROM {target.book(STAGE_PARTS)} WHERE export_id = %s AND table_name = %s",
            (export_id, table),
        )
    target.execute(
        conn,
        f"UPDATE {target.book(EXPORTS)} SET status = 'importing', published_rows = 0, finalized_at = NULL, "
        f"publish = '', load_table = '', updated_at = {now_sql(target)} "
        "WHERE export_id = %s AND table_name = %s",
        (export_id, table),
    )


# ------------------------------------------------------------------------------ ledger


def claim_part(
    target: Target,
    conn: Any,
    *,
    export_id: str,
    part: int,
    rows: int,
    checksum: int,
    table: str,
    partition: str,
    body_hash: str = "",
    source: str = "",
) -> bool:
    """Insert the part's ledger row inside the caller's transaction; False if it is already there.

    Done first in the part's transaction: a concurrent duplicate waits on the
    primary key until the first commits (then skips) or rolls back (then writes).
    A part already there with other rows (another checksum) is a conflicting
    duplicate: :class:`IntegrityError` naming both sources, never a silent choice.
    """
    cur = target.execute(
        conn,
        f"""INSERT INTO {target.book(LEDGER)}
              (export_id, part_number, "rows", checksum, table_name, "partition", body_hash, source)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING part_number""",
        (export_id, part, rows, f"{checksum:016x}", table, partition, body_hash, source),
    )
    if cur.fetchone() is not None:
        return True
    check_same_part(export_id, table, part, landed_part(target, conn, export_id, table, part),
                    rows=rows, checksum=checksum, source=source)  # fmt: skip
    return False


def landed_part(target: Target, conn: Any, export_id: str, table: str, part: int) -> tuple[int, str, str] | None:
    """``(rows, checksum_hex, source)`` of a part's ledger row in ``table``, or None."""
    row = target.execute(
        conn,
        f'SELECT "rows", checksum, source FROM {target.book(LEDGER)} '
        "WHERE table_name = %s AND export_id = %s AND part_number = %s",
        (table, export_id, part),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def check_same_part(
    export_id: str, table: str, part: int, landed: tuple[int, str, str] | None, *, rows: int, checksum: int,
    source: str, published: bool = False,
) -> None:  # fmt: skip
    """Refuse another body of a part that landed already (other rows): a conflicting duplicate.

    ``published``: the export is published already, with the ledger's copy; this one is
    simply not used (a reset and re-import would add an append export's rows twice).
    """
    if landed is None or (landed[0] == rows and landed[1] == f"{checksum:016x}"):
        return
    if published:
        raise IntegrityError(
            f"{CONFLICT}: part {part} of export {export_id} is published into {table!r} from "
            f"{landed[2] or 'an earlier import'} ({landed[0]:,} rows, checksum {landed[1]}); "
            f"{source or 'this copy'} holds other rows ({rows:,} rows, checksum {checksum:016x}) "
            "and was not used",
            where=source or f"part {part}",
        )
    raise IntegrityError(
        f"{CONFLICT}: part {part} of export {export_id} landed in {table!r} from "
        f"{landed[2] or 'an earlier import'} ({landed[0]:,} rows, checksum {landed[1]}); "
        f"{source or 'this copy'} holds other rows ({rows:,} rows, checksum {checksum:016x}). "
        f"Remove the wrong copy, then `tdtp reset {export_id} --table {table}` and import the right one",
        where=source or f"part {part}",
    )


def ledger_parts(target: Target, conn: Any, export_id: str, table: str) -> list[tuple[int, int, str]]:
    """``(part_number, rows, checksum_hex)`` of every ledger row of an export in a table, by part number."""
    return [
        (int(p), int(r), str(c))
        for p, r, c in target.execute(
            conn,
            f'SELECT part_number, "rows", checksum FROM {target.book(LEDGER)} '
            "WHERE export_id = %s AND table_name = %s ORDER BY part_number",
            (export_id, table),
        ).fetchall()
    ]


def last_landed(target: Target, conn: Any, export_id: str, table: str) -> Any:
    """When the export's last part landed in ``table`` (or, with none, when the export was first seen)."""
    row = target.execute(
        conn,
        f"SELECT COALESCE((SELECT max(imported_at) FROM {target.book(LEDGER)} "
        "WHERE export_id = %s AND table_name = %s), "
        f"(SELECT created_at FROM {target.book(EXPORTS)} WHERE export_id = %s AND table_name = %s))",
        (export_id, table, export_id, table),
    ).fetchone()
    return row[0] if row else None


def ledger_body_hashes(target: Target, conn: Any, export_id: str, table: str) -> dict[int, str]:
    """Part number -> body hash ("" for rows of earlier versions) of an export's parts in a table."""
    return {
        int(p): str(h)
        for p, h in target.execute(
            conn,
            f"SELECT part_number, body_hash FROM {target.book(LEDGER)} WHERE export_id = %s AND table_name = %s",
            (export_id, table),
        ).fetchall()
    }


def pending_parts(target: Target, conn: Any, export_id: str, table: str) -> list[tuple[int, int, bool]]:
    """``(part_number, rows, staged)`` of ledger parts not yet published, read in one snapshot.

    ``staged`` says whether PostgreSQL still holds the part's body; one statement
    so that a part committed meanwhile is either in both answers or in neither.
    """
    if target.is_pg:
        rows = conn.execute(
            f"""SELECT l.part_number, l."rows", s.part_number IS NOT NULL
                FROM {target.book(LEDGER)} l LEFT JOIN {target.book(STAGE_PARTS)} s
                  ON s.table_name = l.table_name AND s.export_id = l.export_id AND s.part_number = l.part_number
                WHERE l.export_id = %s AND l.table_name = %s AND NOT l.published ORDER BY l.part_number""",
            (export_id, table),
        ).fetchall()
    else:
        rows = [
            (p, r, True)
            for p, r in conn.execute(
                f'SELECT part_number, "rows" FROM {target.book(LEDGER)} '
                "WHERE export_id = ? AND table_name = ? AND NOT published ORDER BY part_number",
                (export_id, table),
            ).fetchall()
        ]
    return [(int(p), int(r), bool(s)) for p, r, s in rows]


def mark_published(target: Target, conn: Any, export_id: str, table: str, parts: list[int]) -> None:
    """Inside the publish transaction: these parts' rows are in the target now."""
    if not parts:
        return
    if target.is_pg:
        conn.execute(
            f"UPDATE {target.book(LEDGER)} SET published = true "
            "WHERE export_id = %s AND table_name = %s AND part_number = ANY(%s)",
            (export_id, table, parts),
        )
        conn.execute(
            f"DELETE FROM {target.book(STAGE_PARTS)} "
            "WHERE export_id = %s AND table_name = %s AND part_number = ANY(%s)",
            (export_id, table, parts),
        )
        return
    conn.executemany(
        f"UPDATE {target.book(LEDGER)} SET published = 1 WHERE export_id = ? AND table_name = ? AND part_number = ?",
        [(export_id, table, p) for p in parts],
    )


def checksum_sum(parts: list[tuple[int, int, str]]) -> str:
    """The summary's checksum formula over ledger rows: sum of part checksums mod 2**64."""
    total = 0
    for _, _, c in parts:
        total = (total + int(c, 16)) % 2**64
    return f"{total:016x}"
