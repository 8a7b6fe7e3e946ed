"""Jobs per table: export (for schedules), import-parts (for the sensor), publish (import asset + checks),
and copy (export + import in one run).

The import-parts job is the sensor's one hop (``land_parts`` -> ``report_parts`` ->
``publish_parts`` -> ``check_parts``): it lands a seq range, and, launched as a
follower, goes on reading the stream until every export begun in the range has sent
its summary (``tdtp.brokers.UntilExportsEnd``, like ``tdtp import --follow``); then
it materializes the import asset's partition of every export it published and
records that partition's four blocking checks, all in the same run.  No publish
run and no second sensor hop: the publish job is left for the exports a land run
could not finish (parts missing, a failed range given up on) and for the UI.

Jobs are per table because a job holds assets of one partitions definition only, and
because a run should initialize only its own table's resources (a missing secret of
one table must not stop another table's imports).

Executors: every job runs its steps in process.  On this kind of machine a
multiprocess step costs about a second to start (measured on the 2-core development
machine), more than landing a batch of parts takes; the importer's own worker
processes give the parallelism.
``fanout > 1`` in the tables file switches the import-parts job to the multiprocess
executor with that many ops landing sub-ranges side by side (``bench/dagster.py``
compares both); ``executor: celery`` sends them to Celery workers on other hosts
(``tdtp_assets/executors.py``).
"""

import inspect
import time
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from tdtp.brokers import UntilExportsEnd
from tdtp.importer import COMPLETE, FINALIZED, ExportStatus, ImportStats
from tdtp_assets import names
from tdtp_assets.checks import evaluations
from tdtp_assets.executors import land_executor
from tdtp_assets.failures import failure_with_cause
from tdtp_assets.importing import (
    landed_metadata,
    observe_exports,
    open_importer,
    partition_of,
    published_export,
)
from tdtp_assets.tables_config import TableConfig

#: The type ``dg.define_asset_job`` returns (an asset job, resolved when ``Definitions``
#: loads).  Dagster 1.13 exports the function but not its return class, which lives in a
#: private module (``dagster._core.definitions…``) free to move between releases; naming it
#: through the public function's signature keeps the annotations here, in
#: ``tdtp_assets/schedules.py`` and ``sensors/part_arrival.py`` on public API only.
AssetJob = inspect.signature(dg.define_asset_job).return_annotation


def run_tags(table: TableConfig) -> dict[str, str]:
    """Tags every launched run of a table carries (filters in the UI's run list).

    Limits per target key on the target's pool (``names.target_pool``), not on
    ``tdtp/target``: a UI backfill's runs carry no job tags.
    """
    return {names.TAG_TABLE: table.name, names.TAG_TARGET: table.target_label}


def build_export_job(table: TableConfig) -> AssetJob:
    return dg.define_asset_job(
        names.export_job_name(table.name),
        selection=dg.AssetSelection.assets(names.export_key(table.name)),
        description=f"Export {table.name}: one partition per run (schedules and backfills use it).",
        tags={names.TAG_TABLE: table.name},
        executor_def=dg.in_process_executor,
    )


def build_publish_job(table: TableConfig) -> AssetJob:
    """Materialize one partition of the import asset; its blocking checks run in the same run."""
    return dg.define_asset_job(
        names.publish_job_name(table.name),
        selection=dg.AssetSelection.assets(names.import_key(table.name)),
        description=f"Publish one export of {table.name} in the target and run its checks.",
        tags=run_tags(table),
        executor_def=dg.in_process_executor,
    )


def build_copy_job(table: TableConfig) -> AssetJob:
    """Export and import one partition in one run: the export step lands its parts as it goes.

    One run instead of export run + land runs + publish run and two sensor hops,
    each of which costs seconds to start (``tdtp_assets.copying``).  The import
    asset's blocking checks run in the same run.  The ``tdtp/lands_inline`` tag (also
    set by the export step of any run that selects both assets) tells the sensor, once
    the run is running, to hold back the seqs its landing starts from.
    """
    return dg.define_asset_job(
        names.copy_job_name(table.name),
        selection=dg.AssetSelection.assets(names.export_key(table.name), names.import_key(table.name)),
        description=(
            f"Copy {table.name} to {table.target_table}, one partition per run: export, land while exporting, "
            "publish and check in one run (no sensor hop)."
        ),
        tags={**run_tags(table), names.TAG_LANDING: table.name},
        executor_def=dg.in_process_executor,
    )


# What the report op hands on: one run's figures (the rest of ImportStats is per import call).
_RUN_FIGURES = (
    "parts_imported", "total_rows", "bytes", "duplicates", "retries", "dead_letters", "seconds",
    "first_part_seconds", "peak_rss_mb", "worker_peak_rss_mb",
)  # fmt: skip


@dataclass(frozen=True)
class LandedRange:
    """What one land op hands to the report op: its seq range (inclusive) and the importer's figures."""

    first: int
    last: int
    stats: ImportStats


class PartRange(dg.Config):
    """The stream positions an import-parts run lands (inclusive)."""

    from_seq: int = Field(ge=0, description="First seq to import (inclusive).")
    until_seq: int = Field(ge=0, description="Last seq to import (inclusive).")
    follow: bool = Field(
        default=False,
        description=(
            "Go on reading past until_seq until every export begun in the range has sent its summary "
            "(the sensor sets it on the range it launches as soon as parts arrive; fanout 1 only)."
        ),
    )


#: A following land run stops when no message arrived for this long (an export whose
#: producer died without a summary); whoever reads on lands what comes later.
FOLLOW_IDLE_SECONDS = 60.0


#: In-run retries of a land op (a blip of the target or broker); the sensor re-launches a
#: range whose run failed anyway (``land_retries`` in the tables file).
LAND_OP_RETRIES = 2


def split_range(first: int, last: int, pieces: int) -> list[tuple[int, int]]:
    """``first..last`` in at most ``pieces`` contiguous, near-equal inclusive sub-ranges."""
    count = last - first + 1
    pieces = max(1, min(pieces, count))
    size, extra = divmod(count, pieces)
    out, start = [], first
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0) - 1
        out.append((start, end))
        start = end + 1
    return out


def publish_completed(
    context: dg.OpExecutionContext, importer: Any, export_ids: list[str]
) -> tuple[list[ExportStatus], dict[str, dict]]:
    """Each touched export's status, after publishing the ones that are complete and not yet published.

    The importer publishes an export by itself once its last part lands; this catches
    one whose publish it left for later (a finalize it could not take then).
    """
    statuses, finalized = [], {}
    for export_id in export_ids:
        status = importer.status(export_id)
        if status.state == COMPLETE:
            result = importer.finalize(export_id)
            finalized[export_id] = result.as_dict()
            context.log.info(f"{export_id}: {result.describe()}")
            status = importer.status(export_id)
        statuses.append(status)
    return statuses, finalized


def to_materialize(instance: dg.DagsterInstance, table: TableConfig, statuses: list[ExportStatus]) -> list:
    """The exports this run materializes: published, and not yet what their partition records.

    A range that only met duplicates of an export published earlier leaves it alone.
    """
    return [
        s
        for s in statuses
        if s.state == FINALIZED
        and (partition_of(table, s) or not table.partition)
        and published_export(instance, table, partition_of(table, s)) != s.export_id
    ]


def plan_op_name(table: str) -> str:
    return f"plan_parts_{table}"


def build_import_parts_job(table: TableConfig) -> dg.JobDefinition:
    """Land a range of the table's stream: plan -> land (fanned out) -> report.

    The report step turns what happened to each export into an observation of the
    import asset's partition; the sensor reads those to launch the publish run.
    """
    name = table.name
    target_key, broker_key = names.target_resource(name), names.broker_resource(name)
    fanout = table.fanout
    workers_per_op = max(1, table.workers // fanout)

    @dg.op(
        name=plan_op_name(name), out=dg.DynamicOut(list), description="Split the seq range over the land ops."
    )
    def plan(context: dg.OpExecutionContext, config: PartRange):
        if config.until_seq < config.from_seq:
            raise dg.Failure(f"until_seq {config.until_seq} is before from_seq {config.from_seq}")
        pieces = split_range(config.from_seq, config.until_seq, fanout)
        follow = config.follow and len(pieces) == 1  # sub-ranges side by side cannot follow
        for first, last in pieces:
            yield dg.DynamicOutput([first, last, follow], mapping_key=f"seq_{first}_{last}")

    @dg.op(
        name=f"land_parts_{name}",
        required_resource_keys={target_key, broker_key},
        pool=names.target_pool(table.target_label),
        retry_policy=dg.RetryPolicy(max_retries=LAND_OP_RETRIES, delay=2, backoff=dg.Backoff.EXPONENTIAL),
        description="Import the parts of a seq range into staging (ledger-protected, idempotent).",
    )
    def land(context: dg.OpExecutionContext, seq_range: list) -> LandedRange:
        target = getattr(context.resources, target_key)
        broker = getattr(context.resources, broker_key)
        where = f"landing seq {seq_range[0]}..{seq_range[1]} of {name} into {target.safe_url}"
        # until_seq is exclusive in the engine; our ranges are inclusive.
        with (
            failure_with_cause(
                where,
                retry_number=context.retry_number,
                max_retries=LAND_OP_RETRIES,
                metadata={"from_seq": seq_range[0], "until_seq": seq_range[1]},
            ),
            open_importer(target, table, workers=workers_per_op) as importer,
            broker.open() as log,
        ):
            first, last = seq_range[0], seq_range[1]
            if len(seq_range) > 2 and seq_range[2]:
                view = UntilExportsEnd(log, until_seq=last, adopt_limit=table.max_parts_per_run)
                stats = importer.import_log(view, from_seq=first, follow=True, timeout=FOLLOW_IDLE_SECONDS)
                last = max(last, view.last_seq if view.last_seq is not None else last)
                # The sensor holds the table's later seqs back until it reads this.
                context.instance.add_run_tags(context.run.run_id, {names.TAG_FOLLOWED_UNTIL: str(last)})
            else:
                stats = importer.import_log(log, from_seq=first, until_seq=last + 1)
        context.log.info(
            f"seq {first}..{last}: {stats.parts_imported} parts, {stats.total_rows:,} rows, "
            f"{stats.duplicates} duplicates, {stats.dead_letters} dead letters in {stats.seconds:.2f} s"
        )
        return LandedRange(first=first, last=last, stats=stats)

    @dg.op(
        name=f"report_parts_{name}",
        required_resource_keys={target_key},
        pool=names.target_pool(table.target_label),
        description="Report each touched export's state on the import asset's partition.",
    )
    def report(context: dg.OpExecutionContext, results: list) -> dict:
        target = getattr(context.resources, target_key)
        total = ImportStats.combined([r.stats for r in results])
        export_ids = sorted({eid for r in results for eid in r.stats.exports})
        started = time.perf_counter()
        with (
            failure_with_cause(f"publishing {len(export_ids)} export(s) in {target.safe_url}"),
            open_importer(target, table) as importer,
        ):
            statuses, finalized = publish_completed(context, importer, export_ids)
        first = min(r.first for r in results)
        last = max(r.last for r in results)
        here = to_materialize(context.instance, table, statuses)
        observe_exports(context, table, statuses, total, (first, last), published_here={s.export_id for s in here})
        for status in statuses:
            context.log.info(status.describe())
        context.add_output_metadata(
            {
                "parts_imported": total.parts_imported,
                "rows": total.total_rows,
                "bytes": total.bytes,
                "duplicates": total.duplicates,
                "dead_letters": total.dead_letters,
                "exports": ", ".join(f"{s.export_id}: {s.state}" for s in statuses),
            }
        )
        figures = total.as_dict()
        return {
            **{k: figures[k] for k in _RUN_FIGURES},
            "publish": [(s, finalized.get(s.export_id, {})) for s in here],
            "publish_seconds": time.perf_counter() - started,
        }

    @dg.op(
        name=names.land_publish_op_name(name),
        required_resource_keys={target_key},
        pool=names.target_pool(table.target_label),
        description="Materialize the import asset's partition of every export this run published.",
    )
    def publish(context: dg.OpExecutionContext, reported: dict) -> list:
        target = getattr(context.resources, target_key)
        partitions = []
        for status, finalize in reported["publish"]:
            partition = partition_of(table, status)
            with failure_with_cause(f"recording {status.export_id} of {name} as published"):
                meta = landed_metadata(
                    context.instance, table, target, status, finalize, reported["publish_seconds"]
                )
            context.log_event(
                dg.AssetMaterialization(asset_key=names.import_key(name), partition=partition, metadata=meta)
            )
            partitions.append(partition)
        return partitions

    @dg.op(
        name=names.land_check_op_name(name),
        required_resource_keys={target_key},
        pool=names.target_pool(table.target_label),
        description="Evaluate the checks of every partition this run published (a failed blocking one fails the run).",
    )
    def check(context: dg.OpExecutionContext, partitions: list):
        target = getattr(context.resources, target_key)
        failed = []
        for partition in partitions:
            with failure_with_cause(f"checking partition {partition or '(all)'} of {name}"):
                results = evaluations(context.instance, table, target, partition)
            for evaluation in results:
                context.log_event(evaluation)
                if not evaluation.passed and evaluation.blocking:
                    failed.append(f"{partition or '(all)'} {evaluation.check_name}: {evaluation.description}")
        # Logged events are written when the op yields: the evaluations, red ones included,
        # must be stored before a failure ends the step.
        yield dg.Output(None)
        if failed:
            # A blocking check that fails fails its run, here as in a publish run.
            raise dg.Failure(f"{len(failed)} check(s) failed: " + "; ".join(failed))

    @dg.job(
        name=names.import_parts_job_name(name),
        description=f"Land a range of {name}'s part stream into {table.target_table} (launched by the sensor).",
        tags={**run_tags(table), names.TAG_STREAM: name},
        executor_def=land_executor(table),
    )
    def import_parts() -> None:
        check(publish(report(plan().map(land).collect())))

    return import_parts
