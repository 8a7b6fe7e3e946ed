"""Staging: where a part waits, committed with its ledger row, until its export is published.

PostgreSQL, swap/attach strategy (replace mode, see :mod:`tdtp.importer.swap_plan`):
the worker COPYs the part's rows into the export's load table, in the same
transaction as the ledger row; publishing is then a catalog change.

PostgreSQL, copy strategy: the part's *body* (the received bytes, zstd inside) in
``tdtp._tdtp_stage_parts``: one small write per part, so workers spend their
time decoding, and the rows are written into the target exactly once, by the
publisher's COPY (see :mod:`tdtp.importer.copy_publish`).  Writing the rows twice
(typed staging table, then ``INSERT ... SELECT``) measured as slow as a second
import: a 1M-row publish alone took as long as ``psql \\copy`` of the rows.

SQLite (one writer, no COPY) stages typed rows in a table per export
(``_tdtp_stage_<hash>``, the part's columns with the target's declared types);
finalize moves them with ``INSERT ... SELECT`` and drops the table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tdtp.importer.bookkeeping import ddl_lock
from tdtp.importer.catalog import table_columns
from tdtp.importer.dead_letters import resolve_dead_letters
from tdtp.importer.evolve import SchemaRefused, change_doc, plan_change
from tdtp.importer.ledger import (
    check_same_part,
    claim_part,
    landed_part,
    load_export,
    set_schema_change,
    upsert_export,
)
from tdtp.importer.outcome import CLOSED_STATES, COPY, FINALIZED, IMPORTED, LOAD_TABLE_STRATEGIES, REPLACE
from tdtp.importer.pg_copy import CopyRefused, copy_in
from tdtp.importer.swap_plan import prepare_export, relax_load
from tdtp.importer.target import BOOK_SCHEMA, STAGE_PARTS, Target, stage_name
from tdtp.packet import IntegrityError, Schema, SchemaError, TdtpError
from tdtp.sinks.ddl import create_table_sql, split_qualified
from tdtp.sinks.schema_change import EVOLVE, SchemaChange
from tdtp.sinks.sqlite import write_rows


@dataclass
class StagedExport:
    """What a writer needs to stage parts of one export (cached per writer)."""

    export_id: str
    table: str
    stage: str
    signature: list[list[str]]
    closed: bool = False  # finalized, superseded or abandoned: nothing more may be staged
    state: str = ""  # the export's status when it was found closed
    strategy: str = COPY  # PostgreSQL: COPY (stage bodies) or SWAP/ATTACH (rows into load_table)
    load_table: str = ""
    columns: list[str] | None = None  # COPY column list for the load table

    @property
    def loads_rows(self) -> bool:
        return self.strategy in LOAD_TABLE_STRATEGIES


def stage_ref(target: Target, stage: str) -> str:
    """Unquoted ``schema.table`` text of a staging table, as the sinks take table names."""
    return f"{BOOK_SCHEMA}.{stage}" if target.is_pg else stage


def _create_stage(
    target: Target, conn: Any, table: str, stage: str, schema: Schema, change: SchemaChange | None
) -> None:
    """SQLite only: CREATE TABLE AS keeps just an affinity, so keep the target's declared types
    (a wide DECIMAL declared as text must stay text, not become REAL), or the types the
    export's schema change gives its columns."""
    declared = dict(table_columns(target, conn, table) or [])
    if change is not None:
        declared.update({n: t for n, t in change.added + change.discarded})
        declared.update({n: new for n, _, new in change.widened})
    body = ", ".join(f"{target.ident(n)} {declared.get(n, '')}".rstrip() for n in schema.names)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {target.book(stage)} ({body})")


def stage_export(
    target: Target,
    conn: Any,
    *,
    export_id: str,
    table: str,
    schema: Schema,
    partition: str,
    mode: str | None,
    total_parts: int,
    producer: str | None,
    create_table: bool,
    publish: str = "auto",
    swap_indexes: str = "after",
    whole_hint: bool = False,
    produced_at: str = "",
    schema_policy: str = EVOLVE,
) -> StagedExport:
    """Make sure the target table, the staging table and the export record exist; check the columns.

    Runs in short transactions of its own, before the part's; the DDL under a lock
    on the table name, since concurrent ``CREATE TABLE IF NOT EXISTS`` can collide.
    An export already published comes back ``closed``: its stage is gone for good.
    On PostgreSQL the first writer to get here also decides how the export is
    published (``publish``; see :func:`tdtp.importer.swap_plan.prepare_export`);
    ``whole_hint`` says the part came from our own producer with no partition.
    ``schema_policy``: how a schema that differs from the table's is taken
    (:mod:`tdtp.importer.evolve`); a refusal raises before anything of the part is staged.
    """
    stage = stage_name(export_id, table)
    signature = [list(pair) for pair in schema.signature()]
    # The export record commits on its own, so a part that fails below still
    # leaves its export visible in ``tdtp status`` next to the dead letter.
    with target.transaction(conn):
        upsert_export(
            target,
            conn,
            export_id=export_id,
            table=table,
            partition=partition,
            mode=mode,
            stage=stage,
            columns=signature,
            key_fields=schema.key_names,
            total_parts=total_parts or None,
            producer=producer,
            produced_at=produced_at,
        )
        record = load_export(target, conn, export_id, table)
    if record is not None and record.status in CLOSED_STATES:
        return StagedExport(
            export_id=export_id, table=table, stage=stage, signature=signature, closed=True, state=record.status
        )
    if record is not None and record.columns and record.columns != signature:
        raise SchemaError(
            f"fields {signature_text(signature)} differ from the export's first part "
            f"{signature_text(record.columns)}",
            where=f"export {export_id}",
        )
    strategy, load_table = COPY, ""
    with target.transaction(conn):
        ddl_lock(target, conn, table)
        change = plan_change(
            target, conn, table, schema, policy=schema_policy, mode=mode or (record.mode if record else REPLACE)
        )
        refusal = change.refusal(table) if change is not None else ""
        if not refusal:
            strategy, load_table = _prepare(
                target, conn, export_id, table, schema, change, publish, create_table, whole_hint, swap_indexes
            )
    with target.transaction(conn):
        doc = change_doc(schema, change or SchemaChange(policy=schema_policy))
        set_schema_change(target, conn, export_id, table, doc)
    if refusal:
        raise SchemaRefused(refusal, where=f"export {export_id}")
    return StagedExport(
        export_id=export_id,
        table=table,
        stage=stage,
        signature=signature,
        strategy=strategy,
        load_table=load_table,
        columns=schema.names,
    )


def _prepare(
    target: Target,
    conn: Any,
    export_id: str,
    table: str,
    schema: Schema,
    change: SchemaChange | None,
    publish: str,
    create_table: bool,
    whole_hint: bool,
    swap_indexes: str,
) -> tuple[str, str]:
    """Inside the DDL-locked transaction: the target (created if missing), the publish strategy
    and its load table (PostgreSQL), the stage table (SQLite)."""
    strategy, load_table = COPY, ""
    if target.is_pg:
        record = load_export(target, conn, export_id, table)  # again, under the lock
        assert record is not None
        if not record.publish:
            # Rows of an export that changes the table's columns go in by the copy publish,
            # which changes the table in the same transaction.
            reshapes = change is not None and (change.needs_ddl or change.discarded)
            plan = prepare_export(
                target,
                conn,
                record,
                schema,
                publish=publish,
                create_table=create_table,
                whole_hint=whole_hint,
                index_build=swap_indexes,
                blocker=f"the export changes the table's columns ({change.describe()})" if reshapes else "",
            )
            strategy, load_table = plan.strategy, plan.load_table
        else:
            strategy, load_table = record.publish, record.load_table
            if strategy in LOAD_TABLE_STRATEGIES:
                relax_load(target, conn, table, load_table)
    columns = table_columns(target, conn, table)
    if columns is None and strategy in LOAD_TABLE_STRATEGIES:
        # The target is made at publish (a partition export whose filter comes with the summary).
        if table_columns(target, conn, load_table) is None:
            raise TdtpError(f"the load table {load_table} of export {export_id} is missing")
    elif columns is None:
        if not create_table:
            raise TdtpError(f"target table {table!r} does not exist (table creation is off)")
        if target.is_pg:
            schema_name, _ = split_qualified(table)
            if schema_name:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {target.ident(schema_name)}")
        conn.execute(create_table_sql(target.dialect, schema, table))
    if not target.is_pg:
        _create_stage(target, conn, table, stage_name(export_id, table), schema, change)
    return strategy, load_table


def signature_text(signature: Iterable[Iterable[str]]) -> str:
    """``["id INTEGER", "a TEXT"]``: a part's fields as a dead letter names them."""
    return json.dumps([" ".join(pair) for pair in signature])


def in_ledger(
    target: Target, conn: Any, staged: StagedExport, *, part: int, rows: int, checksum: int, source: str
) -> bool:
    """Whether the part landed already (the same rows; other rows are a conflicting duplicate)."""
    landed = landed_part(target, conn, staged.export_id, staged.table, part)
    check_same_part(
        staged.export_id, staged.table, part, landed, rows=rows, checksum=checksum, source=source,
        published=staged.state == FINALIZED,
    )  # fmt: skip
    return landed is not None


def write_part(
    target: Target,
    conn: Any,
    staged: StagedExport,
    *,
    part: int,
    rows: int,
    schema: Schema,
    body: bytes,
    values: list[tuple] | None,
    checksum: int,
    partition: str,
    resolution: str = IMPORTED,
    copy: bytes | Iterable[bytes] | None = None,
    body_hash: str = "",
    source: str = "",
    landed_by: str = "",
) -> bool:
    """Stage one part and its ledger row in ONE transaction; False if it was a duplicate.

    ``copy`` is the part's rows as COPY text: what a swap/attach export loads.
    """
    with target.transaction(conn):
        if not claim_part(
            target,
            conn,
            export_id=staged.export_id,
            part=part,
            rows=rows,
            checksum=checksum,
            table=staged.table,
            partition=partition,
            body_hash=body_hash,
            source=source,
            landed_by=landed_by,
        ):
            return False
        if target.is_pg and staged.loads_rows:
            copy_into_load(conn, target.table(staged.load_table), staged.columns or schema.names, copy, rows)
        elif target.is_pg:
            target.execute(
                conn,
                f"INSERT INTO {target.book(STAGE_PARTS)} (table_name, export_id, part_number, body) "
                "VALUES (%s, %s, %s, %s)",
                (staged.table, staged.export_id, part, body),
            )
        elif values:
            # Workers decoded them with sinks.sqlite.stored_chunks: stored forms already.
            write_rows(conn, stage_ref(target, staged.stage), schema, values, stored=True)
        resolve_dead_letters(target, conn, staged.export_id, staged.table, part, resolution)
    return True


def copy_into_load(
    conn: Any, load_table: str, columns: list[str], data: bytes | Iterable[bytes] | None, rows: int
) -> None:
    """Inside a part's transaction: its rows (COPY text, whole or in chunks) into the load table, counted."""
    if not rows:
        return
    try:
        loaded = copy_in(conn, load_table, columns, data)
    except CopyRefused as exc:
        raise TdtpError(f"the target refused the part's rows: {exc.message}") from exc
    if loaded != rows:
        raise IntegrityError(f"COPY loaded {loaded} rows, the part holds {rows}")
