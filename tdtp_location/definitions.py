"""The code location: ``defs`` built from the tables file.

``TDTP_TABLES`` names the tables file (default: the demo, ``tdtp_assets/tables.demo.yaml``).  A
mistake in it fails loading with one error naming the table and the key; Dagster
shows it in the UI's code location status and in ``dagster definitions validate``.

This module is the only place that joins the packages together: assets, checks, jobs
and schedules from ``tdtp_assets``, the part-arrival sensor from ``sensors``, the
resources from ``resources``.  Keeping the assembly here, above all three, is what
lets ``tdtp_assets`` stay free of ``sensors`` although the sensor reads its names.

Every job runs in process by default: a run here lands or exports one batch, and a
new process per step (about a second each on small machines) would cost more than
the work (see ``tdtp_assets/jobs.py``).
"""

from __future__ import annotations

import warnings

import dagster as dg

from resources import PartBroker, SourceDatabase, TargetDatabase
from sensors import build_part_arrival_sensor
from tdtp_assets import names
from tdtp_assets.assets import build_export_asset, build_import_asset
from tdtp_assets.checks import build_checks
from tdtp_assets.jobs import (
    AssetJob,
    build_copy_job,
    build_export_job,
    build_import_parts_job,
    build_publish_job,
)
from tdtp_assets.schedules import build_schedule
from tdtp_assets.table_meta import source_schema_if_cheap
from tdtp_assets.tables_config import Connection, EnvRef, TablesConfig, load_tables

# Dagster copies a sensor with owners=None when it resolves the repository and warns
# that the (unused) parameter is beta; nothing here passes owners to a sensor.
warnings.filterwarnings(
    "ignore", message="Parameter `owners` of initializer `SensorDefinition", category=dg.BetaWarning
)


def _url(conn: Connection) -> str | dg.EnvVar:
    """``{env: NAME}`` becomes an EnvVar: resolved when a run starts, never stored or shown."""
    return dg.EnvVar(conn.env) if isinstance(conn, EnvRef) else conn


def build_resources(config: TablesConfig) -> dict[str, dg.ConfigurableResource]:
    """One source, one broker and one target resource per table, keyed by ``tdtp_assets.names``.

    Per table, so a run initializes only its own table's resources: a missing secret
    of one table must not stop another table's runs.
    """
    resources: dict[str, dg.ConfigurableResource] = {}
    for table in config.tables.values():
        resources[names.source_resource(table.name)] = SourceDatabase(
            url=_url(table.source), demo_db=table.demo_db
        )
        resources[names.broker_resource(table.name)] = PartBroker(url=_url(table.broker))
        resources[names.target_resource(table.name)] = TargetDatabase(url=_url(table.target.url))
    return resources


def build_definitions(config: TablesConfig) -> dg.Definitions:
    """Assets, checks, jobs, schedules, the sensor and resources for every table of ``config``."""
    with warnings.catch_warnings():
        # backfill_policy and partitioned check specs are beta/preview in 1.13 but are
        # exactly the features this location is about; say so once in the docs, not on
        # every load.
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return _build(config)


def _build(config: TablesConfig) -> dg.Definitions:
    """Per table: both assets, their checks, four jobs and the schedule; one sensor over all tables."""
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    jobs: list[dg.JobDefinition | AssetJob] = []
    schedules: list[dg.ScheduleDefinition] = []
    sensor_jobs: list[dg.JobDefinition | AssetJob] = []
    for table in config.tables.values():
        schema = source_schema_if_cheap(table)  # the Columns section before the first run
        assets += [build_export_asset(table, schema), build_import_asset(table, schema)]
        checks.append(build_checks(table))
        export_job = build_export_job(table)
        import_parts = build_import_parts_job(table)
        publish = build_publish_job(table)
        copy_job = build_copy_job(table)
        jobs += [export_job, import_parts, publish, copy_job]
        sensor_jobs += [import_parts, publish]
        schedule = build_schedule(table, export_job, copy_job)
        if schedule is not None:
            schedules.append(schedule)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=[build_part_arrival_sensor(config, sensor_jobs)],
        resources=build_resources(config),
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_tables())
