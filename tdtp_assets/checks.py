"""Blocking asset checks on every import asset: the target must match what the export sent.

Each check judges the partition its run materialized (Dagster 1.13 records a
partitioned check's evaluation against the step's partition key) and the export that
materialization published (its ``export_id`` metadata).  They read committed state
only — the ledger, the export's summary and the rows now in the target — never a
counter that may still be catching up.

- ``rows_match_summary``: rows in the target for the partition (replace mode; the rows
  this export published in upsert/append mode) equal the summary's TotalRows.
- ``parts_complete``: parts in the ledger equal TotalParts with no gaps.
- ``no_dead_letters``: no part of the export is waiting in the dead letters.
- ``checksum_matches``: the sum of the ledger's part checksums equals the summary's.
- ``schema_change`` (not blocking, severity WARN): fails when the export changed the
  table's schema (added, dropped, widened or discarded columns, in its metadata).

When the sensor gave up re-launching an export's land runs (``land_retries``), the
import run records the partition as not published with the land runs' cause
(``land_failure``), and every failing check names that cause.
"""

import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg

from tdtp.importer import ExportStatus, SchemaChange, ranges
from tdtp_assets import names
from tdtp_assets.failures import failure_with_cause
from tdtp_assets.importing import open_importer, target_partition_rows
from tdtp_assets.partitions import partitions_def_for, run_partition
from tdtp_assets.tables_config import TableConfig

ROWS = "rows_match_summary"
PARTS = "parts_complete"
DEAD = "no_dead_letters"
CHECKSUM = "checksum_matches"
SCHEMA = "schema_change"
CHECKS = (ROWS, PARTS, DEAD, CHECKSUM, SCHEMA)

DESCRIPTIONS = {
    ROWS: "Rows in the target for this partition equal the export summary's TotalRows.",
    PARTS: "Every part 1..TotalParts of the export is in the ledger (no gaps).",
    DEAD: "No part of the export is in the dead letters.",
    CHECKSUM: "The ledger's checksum (sum of part XXH3 checksums) equals the summary's.",
    SCHEMA: "The export did not change the table's schema (not blocking: a change is reported, with the "
    "added, dropped, widened and discarded columns).",
}


def judge_schema(status: ExportStatus) -> tuple[bool, str, dict[str, object]]:
    """The schema-change check: passes when the export took the table's schema as it was."""
    change = status.schema_change or SchemaChange()
    metadata: dict[str, object] = {
        "policy": change.policy,
        **{
            what: dg.MetadataValue.json(getattr(change, what))
            for what in ("added", "dropped", "widened", "discarded", "refused")
        },
    }
    if not change.changed:
        return True, "no schema change", metadata
    return False, f"schema changed ({change.policy}): {change.describe()}", metadata


def _result(name: str, passed: bool, description: str, metadata: dict | None = None) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.WARN if name == SCHEMA else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(
        check_name=name, passed=passed, description=description, metadata=metadata or {}, severity=severity
    )


def judge(
    status: ExportStatus, rows_in_target: int | None, mode: str
) -> Iterator[tuple[str, bool, str, dict[str, object]]]:
    """``(check, passed, description, metadata)`` for each check: pure, so tests can call it directly."""
    total_rows = status.total_rows
    if not status.summary_received or total_rows is None:
        why = f"the summary of {status.export_id} has not arrived ({status.parts_in_ledger} parts in the ledger)"
        for name in (ROWS, PARTS, CHECKSUM):
            yield name, False, why, {"export_id": status.export_id}
    else:
        counted = rows_in_target if mode == "replace" else status.published_rows
        counted_as = "rows in the target partition" if mode == "replace" else f"rows published ({mode})"
        if counted is None:
            yield (
                ROWS,
                False,
                f"the target table has no rows for this partition (expected {total_rows:,})",
                {"expected_rows": total_rows},
            )
        else:
            diff = total_rows - counted
            text = (
                f"{counted:,} {counted_as} == TotalRows {total_rows:,}"
                if diff == 0
                else f"{abs(diff):,} rows {'missing' if diff > 0 else 'too many'}: {counted:,} {counted_as}, "
                f"TotalRows {total_rows:,}"
            )
            yield (
                ROWS,
                diff == 0,
                text,
                {
                    "expected_rows": total_rows,
                    "target_rows": counted,
                    "rows_missing": max(diff, 0),
                    "rows_extra": max(-diff, 0),
                },
            )
        total_parts = status.total_parts or 0
        missing = status.missing_parts
        ok = not missing and status.parts_in_ledger == total_parts
        text = (
            f"{status.parts_in_ledger} of {total_parts} parts in the ledger"
            if ok
            else f"parts missing: {ranges(missing, limit=30)} ({status.parts_in_ledger} of {total_parts} in the ledger)"
        )
        yield (
            PARTS,
            ok,
            text,
            {
                "total_parts": total_parts,
                "parts_in_ledger": status.parts_in_ledger,
                "missing_parts": ranges(missing, limit=30),
            },
        )
        expected, have = status.checksum_expected or "", status.checksum_in_ledger
        yield (
            CHECKSUM,
            status.checksum_ok is True,
            (
                f"checksum {have} matches"
                if status.checksum_ok
                else f"ledger checksum {have or '(none)'} != summary {expected}"
            ),
            {"expected": expected, "ledger": have},
        )
    dead = status.dead_letters
    parts = sorted({int(d["part_number"]) for d in dead})
    yield (
        DEAD,
        not dead,
        (
            "no dead letters"
            if not dead
            else f"{len(dead)} dead letter(s), parts {ranges(parts, limit=30)}: {dead[0]['reason']}"
        ),
        {"dead_letters": len(dead), "dead_parts": ranges(parts, limit=30)},
    )


Verdict = tuple[str, bool, str, dict[str, object]]


def verdicts(instance: dg.DagsterInstance, table: TableConfig, target: Any, partition: str | None) -> list[Verdict]:
    """The checks of one partition of ``table``'s import asset, judged on its latest materialization.

    Shared by the checks' own step (publish and copy runs) and the land run that
    publishes an export it completed (``tdtp_assets.jobs``): one judgement, two callers.
    """
    key = names.import_key(table.name)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    mat = records[0].asset_materialization if records else None
    export_id = (
        str(mat.metadata[names.META_EXPORT_ID].value) if mat and names.META_EXPORT_ID in mat.metadata else ""
    )
    if not export_id:
        why = f"partition {partition or '(all)'} was never published"
        return [(name, False, why, {}) for name in CHECKS]
    failed = mat.metadata.get(names.META_LAND_FAILURE) if mat else None
    land_failure = str(failed.value) if failed is not None else ""
    where = {"export_id": export_id, "partition": partition or ""}
    try:
        with failure_with_cause(f"reading {export_id} in {target.safe_url}"):
            with open_importer(target, table) as importer:
                status = importer.status(export_id)
            rows = target_partition_rows(target.url, table.target_table, export_id)
    except dg.Failure as failure:
        if not land_failure:
            raise
        # The land runs could not reach the target and neither can the check: the
        # land runs' cause is the answer, on every check.
        counted = mat.metadata.get(names.META_LAND_ATTEMPTS) if mat else None
        attempts = counted.value if counted is not None else "?"
        meta = {**where, names.META_LAND_FAILURE: land_failure, "check_error": failure.description or ""}
        why = f"not landed: {attempts} land run(s) failed: {land_failure}"
        return [(name, False, why, meta) for name in CHECKS]
    out: list[Verdict] = []
    for name, passed, description, metadata in judge(status, rows, table.target.mode):
        if land_failure and not passed:
            description = f"{description}; the land runs failed: {land_failure}"
        out.append((name, passed, description, {**where, **metadata}))
    passed, description, metadata = judge_schema(status)
    out.append((SCHEMA, passed, description, {**where, **metadata}))
    return out


def evaluations(
    instance: dg.DagsterInstance, table: TableConfig, target: Any, partition: str | None
) -> list[dg.AssetCheckEvaluation]:
    """The partition's checks as a land run records them, after its materialization.

    They judge the partition's latest materialization, the one the same run has just
    recorded, and Dagster ties a check to a materialization of its own run; so the UI
    shows them on that materialization without a pointer to it.  Blocking and
    severity as the check specs say (``schema_change`` warns and does not block).
    """
    return [
        dg.AssetCheckEvaluation(
            asset_key=names.import_key(table.name),
            check_name=name,
            passed=passed,
            description=description,
            metadata=metadata,
            severity=dg.AssetCheckSeverity.WARN if name == SCHEMA else dg.AssetCheckSeverity.ERROR,
            blocking=name != SCHEMA,
            partition=partition if table.partition else None,
        )
        for name, passed, description, metadata in verdicts(instance, table, target, partition)
    ]


def build_checks(table: TableConfig) -> dg.AssetChecksDefinition:
    """The four checks of one import asset, evaluated together (one status read per run)."""
    key = names.import_key(table.name)
    target_key = names.target_resource(table.name)
    with warnings.catch_warnings():
        # Partitioned check specs are marked preview in 1.13; they are what makes a
        # check's result belong to one partition.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [
            dg.AssetCheckSpec(
                name,
                asset=key,
                blocking=name != SCHEMA,
                description=DESCRIPTIONS[name],
                partitions_def=partitions_def_for(table.partition),
            )
            for name in CHECKS
        ]

    @dg.multi_asset_check(
        name=f"tdtp_checks_{table.name}",
        specs=specs,
        required_resource_keys={target_key},
        description=f"Reconcile {table.target_table} with the export summary, per partition.",
    )
    def import_checks(context: dg.AssetCheckExecutionContext):
        target = getattr(context.resources, target_key)
        for name, passed, description, metadata in verdicts(context.instance, table, target, run_partition(context)):
            yield _result(name, passed, description, metadata)

    return import_checks
