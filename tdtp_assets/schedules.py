"""Schedules for exports (or copies: ``job: copy``), from each table's ``schedule:`` entry.

A daily/hourly table exports its latest complete partition once per period (Dagster's
``build_schedule_from_partitioned_job`` picks the partition); a static table exports
every value on its cron; an unpartitioned table exports whole on its cron.  They
start stopped unless the tables file says ``running: true``: an export nobody asked
for should not appear just because the UI was opened.
"""

import dagster as dg

from tdtp_assets import names
from tdtp_assets.jobs import AssetJob
from tdtp_assets.partitions import partitions_def_for
from tdtp_assets.tables_config import TableConfig


def build_schedule(
    table: TableConfig, export_job: AssetJob, copy_job: AssetJob
) -> dg.ScheduleDefinition | None:
    """The table's schedule on its export job, or on its copy job with ``schedule: {job: copy}``.

    The schedule keeps the export job's name (``tdtp_export_<table>_schedule``) either
    way, so switching the job does not leave a stale schedule state behind.
    """
    spec = table.schedule
    if spec is None:
        return None
    status = dg.DefaultScheduleStatus.RUNNING if spec.running else dg.DefaultScheduleStatus.STOPPED
    name = f"{names.export_job_name(table.name)}_schedule"
    export_job = copy_job if spec.job == "copy" else export_job
    partition = table.partition
    if partition is not None and partition.kind in ("daily", "hourly") and not spec.cron:
        return dg.build_schedule_from_partitioned_job(
            export_job,
            name=name,
            minute_of_hour=spec.minute,
            hour_of_day=spec.hour if partition.kind == "daily" else None,
            default_status=status,
        )
    cron = spec.cron or f"{spec.minute} {spec.hour} * * *"
    pdef = partitions_def_for(partition)

    @dg.schedule(
        name=name, cron_schedule=cron, job=export_job, default_status=status, execution_timezone="UTC"
    )
    def export_schedule(context: dg.ScheduleEvaluationContext):
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        if pdef is None:
            return dg.RunRequest(run_key=f"{table.name}:{stamp}")
        return [
            dg.RunRequest(run_key=f"{table.name}:{key}:{stamp}", partition_key=key)
            for key in pdef.get_partition_keys()
        ]

    return export_schedule
