"""Partitions from the tables file, and the row filter each partition key stands for.

Dagster names partitions (``2026-01-05``, ``2026-01-05-13:00``, ``eu``); the engine
selects rows by a :class:`~tdtp.sources.base.PartitionFilter`.  This module is the one
translation between the two, so the export reads exactly the rows the importer's
replace mode later deletes for the same key.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from tdtp.sources import PartitionFilter
from tdtp_assets.tables_config import Partitioning

_HOURLY_FMT = "%Y-%m-%d-%H:%M"


def _date_text(value: dt.date | dt.datetime, hourly: bool) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime(_HOURLY_FMT if hourly else "%Y-%m-%d")
    return value.strftime("%Y-%m-%d-00:00" if hourly else "%Y-%m-%d")


def partitions_def_for(spec: Partitioning | None) -> dg.PartitionsDefinition | None:
    """The Dagster partitions a table's export and import assets share (None: unpartitioned)."""
    if spec is None:
        return None
    if spec.kind == "static":
        return dg.StaticPartitionsDefinition(list(spec.values or []))
    hourly = spec.kind == "hourly"
    start = _date_text(spec.start, hourly)  # type: ignore[arg-type]
    end = _date_text(spec.end, hourly) if spec.end is not None else None
    if hourly:
        return dg.HourlyPartitionsDefinition(start_date=start, end_date=end, timezone="UTC")
    return dg.DailyPartitionsDefinition(start_date=start, end_date=end, timezone="UTC")


def partition_filter_for(spec: Partitioning | None, key: str | None) -> PartitionFilter | None:
    """The rows of partition ``key``: a UTC day, a UTC hour or one value of the column."""
    if spec is None or not key:
        return None
    if spec.kind == "daily":
        return PartitionFilter(spec.column, "day", key)
    if spec.kind == "hourly":
        hour = dt.datetime.strptime(key, _HOURLY_FMT)
        return PartitionFilter(spec.column, "hour", hour.strftime("%Y-%m-%dT%H:00"))
    return PartitionFilter(spec.column, "value", key)


def filter_as_dict(pf: PartitionFilter | None) -> dict[str, str] | None:
    """The form the exporter puts into the summary (``Summary.extra["partition_filter"]``)."""
    if pf is None:
        return None
    return {"column": pf.column, "kind": pf.kind, "value": pf.value}


def run_partition(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> str | None:
    """The one partition this run covers (None: unpartitioned).

    Every partition is its own export (own export id and summary): that is what lets
    the importer replace exactly that partition, so a run never covers a range.
    Backfills launch one run per partition (no backfill policy); a single-partition
    range, as some launchers send, counts as that partition.
    """
    if context.has_partition_key:
        return context.partition_key
    if context.has_partition_key_range:
        keys = list(context.partition_keys)
        if len(keys) == 1:
            return keys[0]
        raise dg.Failure(
            f"one partition per run, got {len(keys)} ({keys[0]}..{keys[-1]}); launch one run each"
        )
    return None
