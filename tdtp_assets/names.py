"""Names shared by assets, checks, jobs and the sensor: asset keys, resource keys, tags.

Kept in one place because the sensor finds runs and events by these names; a rename
in one module but not another would silently stop imports.
"""

from __future__ import annotations

import dagster as dg

TAG_TABLE = "tdtp/table"
TAG_TARGET = "tdtp/target"
TAG_STREAM = "tdtp/stream"
TAG_EXPORT = "tdtp/export_id"
TAG_SEQ_RANGE = "tdtp/seq_range"
# On a run whose export step lands its own parts (a copy run): the sensor defers the
# table's land runs while such a run is in flight.
TAG_LANDING = "tdtp/lands_inline"
# ... and, once its landing started, the first seq it lands from (and TAG_EXPORT, the
# export it lands): the sensor launches land runs for the seqs before the earliest
# such seq of the copy runs in flight.
TAG_LANDING_FROM = "tdtp/landing_from_seq"
# On a land run the sensor re-launched after a failure: which re-launch it is (1, 2, ...).
TAG_LAND_ATTEMPT = "tdtp/land_attempt"
# On the import run launched once a range's land runs failed ``land_retries`` times.
TAG_LAND_FAILED = "tdtp/land_failed"
# On a land run that follows the stream past its range until the exports begun in it
# end (its id in the sensor's cursor), and the last seq it read, set when it is done.
TAG_FOLLOW = "tdtp/follow"
TAG_FOLLOWED_UNTIL = "tdtp/followed_until_seq"

# Metadata keys written on export materializations and read back by the import asset.
META_EXPORT_ID = "export_id"
META_FIRST_SEQ = "first_seq"
META_LAST_SEQ = "summary_seq"
META_PARTITION = "partition"
# Written by a copy run's export step: whether it landed its parts itself, and which
# seqs (inclusive) the sensor may then skip.
META_LANDED_INLINE = "landed_inline"
META_LANDED_FROM = "landed_from_seq"
META_LANDED_UNTIL = "landed_until_seq"
META_LANDED_AROUND = "landed_around_exports"

# On an import materialization recorded after the land runs failed: their cause, how many.
META_LAND_FAILURE = "land_failure"
META_LAND_ATTEMPTS = "land_attempts"

# Observation metadata the import-parts job writes and the sensor reads.
META_SUMMARY_LANDED = "summary_landed"
META_COMPLETE = "complete"
META_UNTIL_SEQ = "until_seq"
# On the observation of an export the land run itself published, checked and
# materialized: the sensor launches no import run for it.
META_PUBLISHED_HERE = "published_by_land_run"


def target_pool(target_label: str) -> str:
    """The concurrency pool of everything that writes into one target (import asset, land ops).

    With ``concurrency.pools.granularity: run`` (our dagster.yaml) a pool's limit caps the
    runs in progress that contain such a step, however the run was launched: sensor,
    schedule, the copy job, or a UI backfill of both assets (whose runs carry no job tags).
    """
    return f"tdtp/target/{target_label}"


# Asset keys.  The UI labels a node (graph, catalog list, side bar) by the key's last
# component, so the two assets of a table must differ there: the export is
# ``<table>_export`` and the import, the table in the target that downstream assets
# depend on, is the table's own name.  Before issue 13 the export was
# ``tdtp/export/<table>`` (README, "Asset keys": the migration).
EXPORT_SUFFIX = "_export"


def export_key(table: str) -> dg.AssetKey:
    """``tdtp/export/<table>_export``: the parts of one partition streamed into the broker."""
    return dg.AssetKey(["tdtp", "export", table + EXPORT_SUFFIX])


def import_key(table: str) -> dg.AssetKey:
    """``tdtp/import/<table>``: the table in the target (the key downstream assets depend on)."""
    return dg.AssetKey(["tdtp", "import", table])


def export_op_name(table: str) -> str:
    """The op name Dagster derives from the export asset key (in-process results, run config)."""
    return "__".join(export_key(table).path)


def source_resource(table: str) -> str:
    return f"source_{table}"


def broker_resource(table: str) -> str:
    return f"broker_{table}"


def target_resource(table: str) -> str:
    return f"target_{table}"


def export_job_name(table: str) -> str:
    return f"tdtp_export_{table}"


def import_parts_job_name(table: str) -> str:
    return f"tdtp_import_parts_{table}"


def publish_job_name(table: str) -> str:
    return f"tdtp_publish_{table}"


def land_publish_op_name(table: str) -> str:
    return f"publish_parts_{table}"


def land_check_op_name(table: str) -> str:
    return f"check_parts_{table}"


def copy_job_name(table: str) -> str:
    return f"tdtp_copy_{table}"


def import_op_name(table: str) -> str:
    """The op name Dagster derives from the import asset key (used in run config)."""
    return "__".join(import_key(table).path)
