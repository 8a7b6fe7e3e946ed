"""The asset factory: one export asset and one import asset per table of the tables file.

``tdtp/export/<table>`` streams one partition's rows into the table's broker stream and
publishes the summary; ``tdtp/import/<table>`` is the table in the target, and a
materialization of one of its partitions means "that partition is published there".

Why two assets and not one: the export and the import run in different processes at
different times (the part-arrival sensor lands parts while the export is still
reading), and the graph should show that the target depends on the export.

All protocol work is the engine's (``tdtp.exporter``, ``tdtp.importer``); this module
wires partitions, resources and metadata.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import Field

from tdtp.brokers import PublishedSeqs
from tdtp.codec import export_message_id
from tdtp.exporter import export_to_log
from tdtp.packet import Schema
from tdtp.parts import PartOptions
from tdtp_assets import names
from tdtp_assets.connections import describe, scheme_of
from tdtp_assets.copying import InlineLander, run_materializes_import
from tdtp_assets.failures import failure_with_cause
from tdtp_assets.figures import transfer_metadata
from tdtp_assets.importing import latest_export, publish_export
from tdtp_assets.jobs import run_tags
from tdtp_assets.partitions import filter_as_dict, partition_filter_for, partitions_def_for, run_partition
from tdtp_assets.table_meta import (
    TABLE_NAME,
    code_version,
    column_schema_metadata,
    export_definition_metadata,
    import_definition_metadata,
    import_table_metadata,
    qualified_name,
    url_value,
)
from tdtp_assets.tables_config import TableConfig

# Dagster shows an icon for these kind names.
_KIND = {
    "postgresql": "postgres",
    "sqlite": "sqlite",
    "kafka": "kafka",
    "rabbitmq": "rabbitmq",
    "spool": "file",
}


def tag_run(context: dg.AssetExecutionContext, table: TableConfig) -> None:
    """Give the run the table's ``tdtp/table`` and ``tdtp/target`` tags if it lacks them.

    Runs of the table's jobs carry them from launch.  Runs Dagster builds itself (an
    asset backfill from the UI or ``launchPartitionBackfill``, Materialize in the UI,
    ``dagster asset materialize``) are ``__ASSET_JOB`` runs whose tags are only the
    launcher's: Dagster 1.13 adds no asset- or job-level tags to them.  So the first
    step of such a run tags it, and the run list filtered by table finds it from the
    moment it starts (queued, it carries ``dagster/backfill`` and ``dagster/partition``).
    """
    missing = {k: v for k, v in run_tags(table).items() if context.run.tags.get(k) != v}
    if not missing:
        return
    try:
        context.instance.add_run_tags(context.run.run_id, missing)
    except Exception as exc:  # a tag is for filtering; the step's work goes on without it
        context.log.warning(f"could not tag the run with {missing}: {exc}")


def _kinds(*conns: Any) -> set[str]:
    kinds = {"tdtp"}
    for conn in conns:
        kind = _KIND.get(scheme_of(conn))
        if kind:
            kinds.add(kind)
    return set(sorted(kinds)[:3])


def _landing_starter(context: dg.AssetExecutionContext, lander: InlineLander) -> Callable[[int], None]:
    """Called with the export's first seq: say on the run where its landing starts, then start it.

    The tag lets the sensor keep launching land runs for the seqs before it while this
    copy run is in flight (without it, the sensor holds back all of the table's seqs).
    """

    def start(first_seq: int) -> None:
        try:
            context.instance.add_run_tags(
                context.run.run_id, {names.TAG_LANDING_FROM: str(first_seq), names.TAG_EXPORT: lander.export_id}
            )
        except Exception as exc:  # the sensor then holds everything back until the run ends
            context.log.warning(f"could not tag the run with its landing's first seq: {exc}")
        lander.start(first_seq)

    return start


def build_export_asset(table: TableConfig, schema: Schema | None = None) -> dg.AssetsDefinition:
    """``tdtp/export/<table>_export``: stream one partition of the source into the broker.

    ``schema``: the source's columns when known at load time (see
    ``table_meta.source_schema_if_cheap``), shown on the definition.
    """
    name = table.name
    source_key, broker_key = names.source_resource(name), names.broker_resource(name)
    target_key = names.target_resource(name)
    what = f"table `{table.source_table}`" if table.source_table else "a query"
    description = (table.description + "\n\n" if table.description else "") + (
        f"Streams {what} from {describe(table.source)} as TDTP parts into {describe(table.broker)}, "
        "then publishes the export summary (TotalParts, TotalRows, checksum). Parts leave while rows "
        "are still being read; the part-arrival sensor imports them. When the same run also materializes "
        "the import asset (the copy job), this step lands the parts in the target while it exports them."
    )

    @dg.asset(
        key=names.export_key(name),
        partitions_def=partitions_def_for(table.partition),
        group_name=table.group,
        kinds=_kinds(table.source, table.broker),
        owners=table.owners,
        tags={"tdtp/table": name},
        description=description,
        # The target is needed only by a copy run; Dagster initializes resources per
        # step, and a URL is all that is resolved (no connection is opened unused).
        required_resource_keys={source_key, broker_key, target_key},
        metadata=export_definition_metadata(table, schema),
        code_version=code_version(table),
    )
    def export_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        tag_run(context, table)
        source = getattr(context.resources, source_key)
        broker = getattr(context.resources, broker_key)
        key = run_partition(context) or ""
        pfilter = partition_filter_for(table.partition, key)
        options = PartOptions(
            part_bytes=table.part_bytes,
            part_raw_bytes=table.part_raw_bytes,
            compress="" if table.compress == "none" else "zstd",
        )
        export_id = export_message_id("REF")
        lander: InlineLander | None = None
        if run_materializes_import(context, name):
            # Tag first, publish after: a sensor that sees these parts sees the tag too.
            # Cleared: a retried run copies its parent's tags, and those seqs are not this export's.
            context.instance.add_run_tags(
                context.run.run_id, {names.TAG_LANDING: name, names.TAG_LANDING_FROM: "", names.TAG_EXPORT: ""}
            )
            lander = InlineLander(table, getattr(context.resources, target_key), broker, export_id)
        with (
            failure_with_cause(
                f"exporting {name} partition {key or '(all)'} from {source.safe_url} to {broker.safe_url}"
            ),
            source.open(
                table=table.source_table,
                query=table.query,
                columns=table.columns,
                where=table.where,
                partition=pfilter,
            ) as src,
            broker.open() as log,
        ):
            columns = column_schema_metadata(src.schema)
            recorder = PublishedSeqs(log, on_first=_landing_starter(context, lander) if lander else None)
            try:
                stats = export_to_log(
                    src,
                    recorder,
                    options=options,
                    export_id=export_id,
                    partition=key,
                    table=name,
                    partition_filter=filter_as_dict(pfilter),
                ).as_dict()
            except BaseException:
                if lander is not None:
                    lander.abandon()
                raise
        context.log.info(
            f"exported {stats['rows']:,} rows in {stats['parts']} parts as {stats['export_id']} "
            f"(seq {recorder.first}..{recorder.last}) in {stats['seconds']:.2f} s"
        )
        landing: dict[str, Any] = {}
        if lander is not None:
            lander.finish(float(stats["seconds"]))
            landing = lander.metadata()
            if lander.error is not None:
                context.log.warning(
                    f"landing in this run failed ({landing['landing_error']}); the parts are in the broker, "
                    "the import step lands what is missing"
                )
            else:
                context.log.info(
                    f"landed {lander.stats.get('parts_imported', 0)} parts in the target while exporting "
                    f"({lander.stats.get('seconds', 0):.2f} s)"
                )
        return dg.MaterializeResult(
            metadata={
                **transfer_metadata(stats, rows=int(stats["rows"])),
                names.META_EXPORT_ID: stats["export_id"],
                names.META_PARTITION: key,
                names.META_FIRST_SEQ: dg.MetadataValue.int(
                    recorder.first if recorder.first is not None else -1
                ),
                names.META_LAST_SEQ: dg.MetadataValue.int(recorder.last if recorder.last is not None else -1),
                "checksum": stats.get("checksum", ""),
                "stream": url_value(table.broker),
                **columns,
                **_table_name(table.source, table.source_table),
                **landing,
            }
        )

    return export_asset


class ImportConfig(dg.Config):
    """Which export an import run publishes.  Empty: the latest export of the partition."""

    export_id: str = Field(default="", description="Export id to publish; the sensor sets it.")
    land_failure: str = Field(
        default="",
        description=(
            "Set by the sensor once the land runs of this export's seqs failed land_retries times: their "
            "cause. The run still tries to land and publish; if it cannot, the checks fail naming it."
        ),
    )
    land_attempts: int = Field(default=0, ge=0, description="How many land runs failed (with land_failure).")


def _table_name(conn: Any, table: str | None) -> dict[str, str]:
    name = qualified_name(conn, table)
    return {TABLE_NAME: name} if name else {}


def build_import_asset(table: TableConfig, schema: Schema | None = None) -> dg.AssetsDefinition:
    """``tdtp/import/<table>``: the table in the target; a partition materializes when it is published.

    ``schema``: the columns the parts will carry when known at load time (definition metadata).
    """
    name = table.name
    target_key, broker_key = names.target_resource(name), names.broker_resource(name)
    description = (table.description + "\n\n" if table.description else "") + (
        f"Table `{table.target_table}` in {describe(table.target.url)} (mode {table.target.mode}). "
        "Parts land in staging as they arrive (part-arrival sensor); a materialization publishes the "
        "partition in one transaction once the summary and every part are in, then the checks compare "
        "the target with the summary."
    )

    @dg.asset(
        key=names.import_key(name),
        deps=[names.export_key(name)],
        partitions_def=partitions_def_for(table.partition),
        group_name=table.group,
        kinds=_kinds(table.target.url),
        owners=table.owners,
        tags={"tdtp/table": name},
        description=description,
        required_resource_keys={target_key, broker_key},
        pool=names.target_pool(table.target_label),
        metadata=import_definition_metadata(table, schema),
        code_version=code_version(table),
        output_required=False,
    )
    def import_asset(context: dg.AssetExecutionContext, config: ImportConfig):
        tag_run(context, table)
        key = run_partition(context) or ""
        export = latest_export(context.instance, name, key or None, config.export_id)
        if not export and config.export_id:
            # Parts from a producer outside this Dagster (the CLI, another system): the
            # target's bookkeeping knows the export; only its seq range is unknown here.
            export = {names.META_EXPORT_ID: config.export_id, names.META_PARTITION: key, "latest": True}
        if not export:
            raise dg.Failure(
                f"{name}: no export of partition {key or '(all)'} is recorded; "
                f"materialize {names.export_key(name).to_user_string()} first"
            )
        if not export["latest"]:
            context.log.info(
                f"{export[names.META_EXPORT_ID]} was superseded by a newer export; nothing to publish"
            )
            return
        export_id = str(export[names.META_EXPORT_ID])
        target = getattr(context.resources, target_key)
        try:
            with failure_with_cause(f"publishing {export_id} of {name} into {target.safe_url}"):
                broker = getattr(context.resources, broker_key)
                metadata = publish_export(context, table, target, broker, export)
        except dg.Failure as failure:
            if not config.land_failure:
                raise
            # The land runs failed and so does this run: record the partition as not
            # published so the blocking checks run and fail naming the cause, rather
            # than the partition staying "Missing" with nothing to click.
            context.log.error(failure.description or "")
            metadata = {
                names.META_EXPORT_ID: export_id,
                "published": False,
                "publish_error": failure.description,
            }
        if metadata is None:
            return
        published = metadata.get("published")
        if config.land_failure and not getattr(published, "value", published):
            metadata[names.META_LAND_FAILURE] = config.land_failure
            metadata[names.META_LAND_ATTEMPTS] = config.land_attempts
        # Columns (the parts' schema: what this publish put in the target), table name, URL;
        # a schema the publish recorded itself stays.
        for key, value in import_table_metadata(table, export).items():
            metadata.setdefault(key, value)
        yield dg.MaterializeResult(metadata=metadata)

    return import_asset
