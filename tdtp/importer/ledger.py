"""Bookkeeping tables in the target: the part ledger, the exports, the dead letters.

``_tdtp_ledger`` has one row per imported part, written in the same transaction as
the part's staged rows: that is what makes a redelivered part a no-op.
``_tdtp_exports`` has one row per export: its target table, write mode, staging
table, the summary totals once the summary arrived, and whether it is published.
``_tdtp_dead_letters`` keeps each failed part's body and reason until a good copy
is imported or a replay succeeds.  Checksums are 16-digit hex text: XXH3-64 does
not fit a signed BIGINT and the sum is taken in Python anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import xxhash

from tdtp.importer.target import BOOK_SCHEMA, DEAD_LETTERS, EXPORTS, LEDGER, STAGE_PARTS, Target
from tdtp.packet import Summary
from tdtp.sinks.ddl import quote_ident

# Stable keys for pg_advisory_xact_lock: DDL (concurrent CREATE ... IF NOT EXISTS races)
# and publishing (one publisher per export at a time, without locking rows workers update).
_DDL_LOCK_KEY = 0x7D7D_0001
PUBLISH_LOCK_KEY = 0x7D7D_0002


def now_sql(target: Target) -> str:
    return "now()" if target.is_pg else "CURRENT_TIMESTAMP"


def _ddl(target: Target) -> list[str]:
    pg = target.is_pg
    ts = "timestamptz" if pg else "TEXT"
    now = "now()" if pg else "CURRENT_TIMESTAMP"
    blob = "bytea" if pg else "BLOB"
    serial = "bigserial PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
    statements = []
    if pg:
        statements.append(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(BOOK_SCHEMA)}")
    statements += [
        f"""CREATE TABLE IF NOT EXISTS {target.book(EXPORTS)} (
            export_id text PRIMARY KEY,
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
            created_at {ts} NOT NULL DEFAULT {now},
            updated_at {ts} NOT NULL DEFAULT {now},
            finalized_at {ts})""",
        f"""CREATE TABLE IF NOT EXISTS {target.book(LEDGER)} (
            export_id text NOT NULL,
            part_number integer NOT NULL,
            "rows" integer NOT NULL,
            checksum text NOT NULL,
            table_name text NOT NULL,
            "partition" text NOT NULL DEFAULT '',
            imported_at {ts} NOT NULL DEFAULT {now},
            published boolean NOT NULL DEFAULT false,
            PRIMARY KEY (export_id, part_number))""",
        f"""CREATE TABLE IF NOT EXISTS {target.book(DEAD_LETTERS)} (
            id {serial},
            export_id text NOT NULL,
            part_number integer NOT NULL,
            table_name text NOT NULL,
            reason text NOT NULL,
            body {blob} NOT NULL,
            body_hash text NOT NULL,
            source text NOT NULL DEFAULT '',
            attempts integer NOT NULL DEFAULT 1,
            created_at {ts} NOT NULL DEFAULT {now},
            replayed_at {ts},
            resolution text)""",
        f"CREATE INDEX IF NOT EXISTS _tdtp_dead_letters_export ON {target.book(DEAD_LETTERS)} (export_id, part_number)",
    ]
    if pg:
        # PostgreSQL stages each part's body (already compressed) until it is published.
        statements += [
            f"""CREATE TABLE IF NOT EXISTS {target.book(STAGE_PARTS)} (
                export_id text NOT NULL,
                part_number integer NOT NULL,
                body bytea NOT NULL,
                staged_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (export_id, part_number))""",
            # Bodies are zstd inside already: spare the server a pglz attempt on each.
            f"ALTER TABLE {target.book(STAGE_PARTS)} ALTER COLUMN body SET STORAGE EXTERNAL",
        ]
    return statements


# Columns added to _tdtp_exports after its first release: bookkeeping made by an
# earlier version gets them on the next start.
_ADDED_EXPORT_COLUMNS = (
    ("publish", "text NOT NULL DEFAULT ''"),
    ("load_table", "text NOT NULL DEFAULT ''"),
    ("publish_note", "text NOT NULL DEFAULT ''"),
)


def bookkeeping_exists(target: Target, conn: Any) -> bool:
    names = [LEDGER, EXPORTS, DEAD_LETTERS] + ([STAGE_PARTS] if target.is_pg else [])
    if target.is_pg:
        row = conn.execute(
            "SELECT bool_and(to_regclass(n) IS NOT NULL) FROM unnest(%s::text[]) AS n",
            ([target.book(n) for n in names],),
        ).fetchone()
        return bool(row[0]) and not _missing_export_columns(target, conn)
    found = {
        r[0]
        for r in conn.execute(
            f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({', '.join('?' * len(names))})",
            names,
        )
    }
    return found == set(names) and not _missing_export_columns(target, conn)


def _missing_export_columns(target: Target, conn: Any) -> list[tuple[str, str]]:
    if target.is_pg:
        have = {
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                "AND NOT attisdropped",
                (target.book(EXPORTS),),
            )
        }
    else:
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({target.book(EXPORTS)})")}
    if not have:
        return []  # no table yet: CREATE TABLE makes it whole
    return [(name, decl) for name, decl in _ADDED_EXPORT_COLUMNS if name not in have]


def ensure_bookkeeping(target: Target, conn: Any) -> None:
    """Create the bookkeeping tables once; safe when several importers start together."""
    if bookkeeping_exists(target, conn):
        return  # no DDL (and no DDL locks) on every start
    with target.transaction(conn):
        if target.is_pg:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        for statement in _ddl(target):
            conn.execute(statement)
        for name, decl in _missing_export_columns(target, conn):
            conn.execute(f"ALTER TABLE {target.book(EXPORTS)} ADD COLUMN {quote_ident(name)} {decl}")


def try_publish_lock(target: Target, conn: Any, export_id: str) -> bool:
    """Take the export's publish lock for this transaction; False if another publisher has it."""
    if not target.is_pg:
        return True  # SQLite: BEGIN IMMEDIATE already serializes writers
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (PUBLISH_LOCK_KEY, export_id)
    ).fetchone()
    return bool(row[0])


def ddl_lock(target: Target, conn: Any, name: str) -> None:
    """Serialize DDL on one table name across importers (PostgreSQL; SQLite has one writer)."""
    if target.is_pg:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_DDL_LOCK_KEY, name))


# ----------------------------------------------------------------------------- exports


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


_EXPORT_COLS = (
    'export_id, table_name, "partition", mode, stage_table, columns, key_fields, total_parts, total_rows, '
    "checksum, summary, producer, status, note, published_rows, finalized_at, publish, load_table, publish_note"
)


def load_export(target: Target, conn: Any, export_id: str) -> ExportRecord | None:
    row = target.execute(
        conn, f"SELECT {_EXPORT_COLS} FROM {target.book(EXPORTS)} WHERE export_id = %s", (export_id,)
    ).fetchone()
    if row is None:
        return None
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
    )


def set_publish(target: Target, conn: Any, export_id: str, publish: str, load_table: str, note: str) -> None:
    """Record how an export will be published (decided once, at its first part)."""
    target.execute(
        conn,
        f"UPDATE {target.book(EXPORTS)} SET publish = %s, load_table = %s, publish_note = %s, "
        f"updated_at = {now_sql(target)} WHERE export_id = %s",
        (publish, load_table, note, export_id),
    )


def has_ledger_parts(target: Target, conn: Any, export_id: str) -> bool:
    return (
        target.execute(
            conn, f"SELECT 1 FROM {target.book(LEDGER)} WHERE export_id = %s LIMIT 1", (export_id,)
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
) -> None:
    """Record an export the first time it is seen; later runs update what they learn.

    The latest run's write mode wins while the export is unpublished (a user who
    reruns with ``--mode upsert`` means it); ``mode=None`` (a replay) keeps it.
    The column list is set by the first part and kept, so every later part is
    checked against it.
    """
    now = now_sql(target)
    target.execute(
        conn,
        f"""INSERT INTO {target.book(EXPORTS)}
              (export_id, table_name, "partition", mode, stage_table, columns, key_fields, total_parts, producer)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (export_id) DO UPDATE SET
              mode = CASE WHEN {EXPORTS}.status = 'finalized' OR %s THEN {EXPORTS}.mode ELSE excluded.mode END,
              columns = CASE WHEN {EXPORTS}.columns = '[]' THEN excluded.columns ELSE {EXPORTS}.columns END,
              key_fields = CASE WHEN {EXPORTS}.columns = '[]' THEN excluded.key_fields ELSE {EXPORTS}.key_fields END,
              total_parts = COALESCE({EXPORTS}.total_parts, excluded.total_parts),
              producer = CASE WHEN %s THEN excluded.producer ELSE {EXPORTS}.producer END,
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
            WHERE export_id = %s""",
        (
            summary.total_parts,
            summary.total_rows,
            summary.checksum,
            summary.to_json().decode(),
            summary.partition,
            summary.export_id,
        ),
    )


def set_mode(target: Target, conn: Any, export_id: str, mode: str) -> None:
    """A rerun with another ``--mode`` applies to the export's unpublished rows."""
    with target.transaction(conn):
        target.execute(
            conn,
            f"UPDATE {target.book(EXPORTS)} SET mode = %s, updated_at = {now_sql(target)} "
            "WHERE export_id = %s AND status <> 'finalized' AND mode <> %s",
            (mode, export_id, mode),
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
) -> bool:
    """Insert the part's ledger row inside the caller's transaction; False if it is already there.

    Done first in the part's transaction: a concurrent duplicate waits on the
    primary key until the first commits (then skips) or rolls back (then writes).
    """
    cur = target.execute(
        conn,
        f"""INSERT INTO {target.book(LEDGER)} (export_id, part_number, "rows", checksum, table_name, "partition")
            VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING part_number""",
        (export_id, part, rows, f"{checksum:016x}", table, partition),
    )
    return cur.fetchone() is not None


def ledger_parts(target: Target, conn: Any, export_id: str) -> list[tuple[int, int, str]]:
    """``(part_number, rows, checksum_hex)`` of every ledger row of an export, by part number."""
    return [
        (int(p), int(r), str(c))
        for p, r, c in target.execute(
            conn,
            f'SELECT part_number, "rows", checksum FROM {target.book(LEDGER)} WHERE export_id = %s '
            "ORDER BY part_number",
            (export_id,),
        ).fetchall()
    ]


def pending_parts(target: Target, conn: Any, export_id: str) -> list[tuple[int, int, bool]]:
    """``(part_number, rows, staged)`` of ledger parts not yet published, read in one snapshot.

    ``staged`` says whether PostgreSQL still holds the part's body; one statement
    so that a part committed meanwhile is either in both answers or in neither.
    """
    if target.is_pg:
        rows = conn.execute(
            f"""SELECT l.part_number, l."rows", s.part_number IS NOT NULL
                FROM {target.book(LEDGER)} l LEFT JOIN {target.book(STAGE_PARTS)} s
                  ON s.export_id = l.export_id AND s.part_number = l.part_number
                WHERE l.export_id = %s AND NOT l.published ORDER BY l.part_number""",
            (export_id,),
        ).fetchall()
    else:
        rows = [
            (p, r, True)
            for p, r in conn.execute(
                f'SELECT part_number, "rows" FROM {target.book(LEDGER)} WHERE export_id = ? AND NOT published '
                "ORDER BY part_number",
                (export_id,),
            ).fetchall()
        ]
    return [(int(p), int(r), bool(s)) for p, r, s in rows]


def mark_published(target: Target, conn: Any, export_id: str, parts: list[int]) -> None:
    """Inside the publish transaction: these parts' rows are in the target now."""
    if not parts:
        return
    if target.is_pg:
        conn.execute(
            f"UPDATE {target.book(LEDGER)} SET published = true WHERE export_id = %s AND part_number = ANY(%s)",
            (export_id, parts),
        )
        conn.execute(
            f"DELETE FROM {target.book(STAGE_PARTS)} WHERE export_id = %s AND part_number = ANY(%s)",
            (export_id, parts),
        )
        return
    conn.executemany(
        f"UPDATE {target.book(LEDGER)} SET published = 1 WHERE export_id = ? AND part_number = ?",
        [(export_id, p) for p in parts],
    )


def checksum_sum(parts: list[tuple[int, int, str]]) -> str:
    """The summary's checksum formula over ledger rows: sum of part checksums mod 2**64."""
    total = 0
    for _, _, c in parts:
        total = (total + int(c, 16)) % 2**64
    return f"{total:016x}"


# ------------------------------------------------------------------------ dead letters


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
            "AND body_hash = %s AND replayed_at IS NULL",
            (export_id, part, body_hash),
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


def resolve_dead_letters(target: Target, conn: Any, export_id: str, part: int, resolution: str) -> None:
    """Inside a part's transaction: its open dead letters are settled by this good import."""
    target.execute(
        conn,
        f"UPDATE {target.book(DEAD_LETTERS)} SET replayed_at = {now_sql(target)}, resolution = %s "
        "WHERE export_id = %s AND part_number = %s AND replayed_at IS NULL",
        (resolution, export_id, part),
    )


def open_dead_letters(target: Target, conn: Any, export_id: str | None = None) -> list[DeadLetterRecord]:
    where = "replayed_at IS NULL" + (" AND export_id = %s" if export_id is not None else "")
    params = (export_id,) if export_id is not None else ()
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
