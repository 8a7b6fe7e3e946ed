"""Glue between Dagster steps and the engine's importer: land a seq range, publish an export.

The import-parts job lands ranges of the stream (parts go to staging and the ledger;
the importer publishes an export by itself once it is complete), and reports every
export it touched as an observation of the import asset's partition.  The import
asset publishes one export (a no-op when the importer already did) and records the
figures.  Both read the truth from the target's bookkeeping tables via the engine,
never from what a step remembers, so a retried or re-executed step sees the same.
"""

from __future__ import annotations

import time
from typing import Any

import dagster as dg

from tdtp.importer import ExportStatus, ImportOptions, ImportStats, ParallelImporter, land_export, ranges
from tdtp_assets import names
from tdtp_assets.copying import inline_figures
from tdtp_assets.figures import export_figures, import_metadata
from tdtp_assets.table_meta import import_table_metadata
from tdtp_assets.tables_config import TableConfig

# Observation metadata that carries one land run's figures, summed per export later.
_FIGURE_KEYS = ("parts_imported", "total_rows", "bytes", "seconds", "duplicates", "retries", "dead_letters")


def open_importer(target: Any, table: TableConfig, *, workers: int = 1) -> ParallelImporter:
    """The engine's importer for ``table`` on the target resource, with the table's import settings."""
    return target.importer(
        table=table.target_table,
        mode=table.target.mode,
        workers=workers,
        require_hashes=table.target.require_hashes,
        schema=table.target.schema_policy,
    )


def partition_of(table: TableConfig, status: ExportStatus) -> str | None:
    """The Dagster partition an export belongs to (None for an unpartitioned table)."""
    return (status.partition or None) if table.partition else None


def observe_exports(
    context: dg.OpExecutionContext,
    table: TableConfig,
    statuses: list[ExportStatus],
    stats: ImportStats,
    seq_range: tuple[int, int],
    published_here: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Log what a land run did to each export it touched, on the import asset's partition.

    The sensor reads these observations to launch the import asset's run for a
    partition whose export is stuck (or complete, when this run left it unpublished),
    and the import asset sums the figures of every land run of its export.  An export
    in ``published_here`` is materialized and checked by this run itself.
    """
    run_figures = stats.as_dict()  # rounded as the CLI prints them
    for status in statuses:
        figures = export_figures(run_figures, status.export_id)
        partition = partition_of(table, status)
        if table.partition and not partition:
            context.log.warning(f"export {status.export_id} carries no partition key; not reported")
            continue
        context.log_event(
            dg.AssetObservation(
                asset_key=names.import_key(table.name),
                partition=partition,
                metadata={
                    names.META_EXPORT_ID: status.export_id,
                    "state": status.state,
                    names.META_SUMMARY_LANDED: status.summary_received,
                    names.META_COMPLETE: status.complete,
                    names.META_PUBLISHED_HERE: status.export_id in published_here,
                    "finalized": status.finalized,
                    "parts_in_ledger": status.parts_in_ledger,
                    "total_parts": -1 if status.total_parts is None else status.total_parts,
                    "missing_parts": ranges(status.missing_parts),
                    "from_seq": seq_range[0],
                    names.META_UNTIL_SEQ: seq_range[1],
                    **{f"run_{k}": figures[k] or 0 for k in _FIGURE_KEYS},
                    "run_first_part_seconds": figures["first_part_seconds"] or 0.0,
                    "run_peak_rss_mb": max(figures["peak_rss_mb"], figures["worker_peak_rss_mb"]),
                },
            )
        )


def latest_export(
    instance: dg.DagsterInstance, table: str, partition: str | None, export_id: str = ""
) -> dict:
    """Facts of the partition's latest export (or of ``export_id``) from its materialization metadata."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=names.export_key(table), asset_partitions=[partition] if partition else None
        ),
        limit=50 if export_id else 1,
    ).records
    for record in records:
        mat = record.asset_materialization
        if mat is None:
            continue
        meta = {k: v.value for k, v in mat.metadata.items()}
        if not export_id or meta.get(names.META_EXPORT_ID) == export_id:
            meta["latest"] = record is records[0]
            return meta
    return {}


def land_figures(
    instance: dg.DagsterInstance, table: TableConfig, partition: str | None, export_id: str
) -> dict:
    """Time, memory and incident counts of the land runs that carried ``export_id`` (one observation each).

    Each observation carries the export's own share of its land run (its parts, rows,
    bytes and the time they were in work), so a run that lands three partitions gives
    each its own rate.
    """
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(
            asset_key=names.import_key(table.name), asset_partitions=[partition] if partition else None
        ),
        limit=500,
    ).records
    out: dict[str, Any] = {"seconds": 0.0, "first_part_seconds": None, "peak_rss_mb": 0.0, "land_runs": 0}
    out.update({k: 0 for k in ("duplicates", "retries", "dead_letters")})
    seen_runs: set[str] = set()
    for record in records:
        obs = record.event_log_entry.asset_observation
        if obs is None:
            continue
        meta = {k: v.value for k, v in obs.metadata.items()}
        if meta.get(names.META_EXPORT_ID) != export_id or record.run_id in seen_runs:
            continue
        seen_runs.add(record.run_id)
        out["seconds"] += float(meta.get("run_seconds") or 0)
        for k in ("duplicates", "retries", "dead_letters"):
            out[k] += int(meta.get(f"run_{k}") or 0)
        fp = float(meta.get("run_first_part_seconds") or 0)
        if fp and (out["first_part_seconds"] is None or fp < out["first_part_seconds"]):
            out["first_part_seconds"] = fp
        out["peak_rss_mb"] = max(out["peak_rss_mb"], float(meta.get("run_peak_rss_mb") or 0))
    out["land_runs"] = len(seen_runs)
    return out


def published_export(instance: dg.DagsterInstance, table: TableConfig, partition: str | None) -> str:
    """The export the partition's latest import materialization records as published ("" : none).

    One recorded as not published (the land runs failed, ``land_failure``) does not
    count: once a re-launch lands it, it is materialized again, with its checks.
    """
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=names.import_key(table.name), asset_partitions=[partition] if partition else None
        ),
        limit=1,
    ).records
    mat = records[0].asset_materialization if records else None
    value = mat.metadata.get(names.META_EXPORT_ID) if mat is not None else None
    published = mat.metadata.get("published") if mat is not None else None
    if value is None or published is None or published.value is not True:
        return ""
    return str(value.value)


def landed_metadata(
    instance: dg.DagsterInstance,
    table: TableConfig,
    target: Any,
    status: ExportStatus,
    finalize: dict[str, Any],
    publish_seconds: float,
) -> dict[str, Any]:
    """The import materialization's metadata for an export a land run published: its land runs' figures.

    The export's own figures (bytes, export seconds) come from its materialization
    when it is recorded already; the land run may see the summary a moment before the
    export run writes it, and then they are left out rather than waited for.
    """
    partition = partition_of(table, status)
    export = latest_export(instance, table.name, partition, status.export_id)
    figures = land_figures(instance, table, partition, status.export_id)
    meta = import_metadata(
        status,
        figures,
        rows_in_target=target_partition_rows(target.url, table.target_table, status.export_id),
        export=export,
        finalize=finalize,
        publish_seconds=publish_seconds,
    )
    meta["landed_in"] = "land runs"
    # Columns, table name and target URL, as every import materialization carries them.
    for key, value in import_table_metadata(table, export).items():
        meta.setdefault(key, value)
    return meta


def target_partition_rows(target_url: str, table: str, export_id: str) -> int | None:
    """Rows now in the target table for the export's partition (all rows when unpartitioned).

    The engine counts with the importer's own partition predicate, so the count
    covers exactly the rows that replace mode put there; None when the export or
    the table is not there.
    """
    with ParallelImporter(target_url, ImportOptions(workers=1, table=table)) as importer:
        return importer.partition_rows(export_id, table)


def publish_export(
    context: dg.AssetExecutionContext,
    table: TableConfig,
    target: Any,
    broker: Any,
    export: dict[str, Any],
) -> dict[str, Any] | None:
    """Make sure the export is landed and published; return the import materialization's metadata.

    Normally the sensor's land runs already did both and this only reads the state.
    When they did not (sensor stopped, parts dead-lettered) it lands the export's own
    seq range, known from the export's metadata, and finalizes; an export that still
    cannot be published is materialized with ``published: false`` so the blocking
    checks fail and say what is missing.  None: a newer export of the partition was
    published first, so this one has nothing to materialize.
    """
    export_id = str(export[names.META_EXPORT_ID])
    started = time.perf_counter()
    landed_here: ImportStats | None = None
    finalize: dict[str, Any] = {}
    with open_importer(target, table, workers=table.workers) as importer:
        status = importer.status(export_id)
        if not status.finalized and not status.complete:
            first, last = int(export.get(names.META_FIRST_SEQ, -1)), int(export.get(names.META_LAST_SEQ, -1))
            if first >= 0 and last >= first:
                context.log.info(f"{export_id}: {status.state}; landing it from seq {first} to its summary in this run")
                with broker.open() as log:
                    # Only this export: the others in the range are their own runs' to land.
                    # Its summary ends the read, not ``last``: on a RabbitMQ stream with
                    # several writers that is an estimate and may fall short of it.
                    landed_here = land_export(importer, log, export_id, from_seq=first, follow=False).stats
                status = importer.status(export_id)
        if not status.finalized and status.complete:
            result = importer.finalize(export_id)
            finalize = result.as_dict()
            context.log.info(f"{export_id}: {result.describe()}")
            status = importer.status(export_id)
    if status.state == "superseded":
        context.log.info(f"{export_id}: superseded ({status.note}); nothing to publish")
        return None
    if status.schema_refusal and not status.finalized:  # freeze, or a change no policy may make
        raise dg.Failure(description=status.schema_refusal, metadata={names.META_EXPORT_ID: export_id})
    if not status.finalized:
        context.log.warning(f"{export_id} is not published:\n{status.describe()}")
    partition = export.get(names.META_PARTITION) or None
    figures = land_figures(context.instance, table, partition, export_id)
    land_runs = int(figures["land_runs"])
    inline = inline_figures(export)
    if inline:
        figures = _merge(figures, inline)
    if landed_here:
        figures = _merge(figures, landed_here)
    rows_in_target = target_partition_rows(target.url, table.target_table, export_id)
    meta = import_metadata(
        status,
        figures,
        rows_in_target=rows_in_target,
        export=export,
        finalize=finalize,
        publish_seconds=time.perf_counter() - started,
    )
    meta["landed_in"] = _landed_in(export, land_runs, landed_here is not None)
    return meta


def _landed_in(export: dict[str, Any], land_runs: int, landed_here: bool) -> str:
    """Where the parts were landed, in words a user reads on the materialization."""
    where = []
    if export.get(names.META_LANDED_INLINE):
        where.append("export run")
    elif export.get("landed_parts"):
        where.append("export run (partly)")
    if land_runs:
        where.append("land runs")
    if landed_here:
        where.append("import run")
    return " + ".join(where) or "earlier runs"


def _merge(figures: dict[str, Any], stats: ImportStats) -> dict[str, Any]:
    """Add one more landing (the export run's, or this run's own) to the land runs' figures."""
    more = stats.as_dict()  # rounded as the CLI prints them
    out = dict(figures)
    out["seconds"] += more["seconds"]
    for k in ("duplicates", "retries", "dead_letters"):
        out[k] += more[k]
    if out["first_part_seconds"] is None:
        out["first_part_seconds"] = more["first_part_seconds"]
    out["peak_rss_mb"] = max(out["peak_rss_mb"], more["peak_rss_mb"])
    out["land_runs"] += 1
    return out
