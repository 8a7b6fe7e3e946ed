"""Failed land runs are launched again, with backoff, until their range lands.

The part-arrival sensor's cursor moves past a seq range once it launched the
range's land run, so a run that fails would otherwise be forgotten: its parts stay
in the broker, nothing launches them again, and the import partition stays
"Missing".  Each tick therefore reads the land runs that failed since the last
tick (one run-storage query per table, by update time) and keeps each failed range
in the cursor until its next attempt is due:

- attempt ``n`` (the ``n``-th re-launch) waits ``land_retry_seconds * 2**(n-1)``
  after the failure, at most ``land_retry_max_seconds``, and gets a run key of its
  own (``<stream>:<first>-<last>:retry-<n>``).  The target's ledger makes landing a
  range again safe: parts already in are counted as duplicates.
- once ``land_retries`` re-launches failed too, every export with messages in the
  range gets its import asset's run (``tdtp_publish_<table>``, run key
  ``<stream>:land_failed:<export_id>``) with the cause in its config: it tries to land
  and publish the export itself and, if it cannot, records the partition as not
  published so its blocking checks fail and name the cause.  Re-launches go on at
  the capped interval, so a range lands by itself once the cause is fixed.

Failed runs are found by update time with an overlap (run workers stamp their own
clock, so a run that failed a moment before another may be written after it); the
ids of the runs already counted are kept for that overlap, so none counts twice.
Due times derive from the failed run's own timestamp, so a tick whose cursor is not
stored computes the same on the next one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from tdtp_assets import names
from tdtp_assets.failures import one_line
from tdtp_assets.jobs import plan_op_name, run_tags
from tdtp_assets.partitions import partitions_def_for
from tdtp_assets.tables_config import TableConfig

# Seconds of overlap when reading failed runs by update time.
OVERLAP_SECONDS = 120.0
# Failed runs read per table and tick (the rest next tick: the watermark moves by what was read).
_RUNS_PER_TICK = 100
# Export materializations searched for the exports of a range that is given up on.
_EXPORTS_SEARCHED = 500


@dataclass
class RetryState:
    """One table's failed ranges waiting for their next attempt, and the failed runs already counted.

    ``pending``: ``"<first>-<last>"`` -> ``{"n": failed attempts, "at": time of the last
    failure, "cause": one line, "run": its run id}``.  ``seen``: run id -> its update time;
    ``after``: the latest update time read.
    """

    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    after: float = 0.0

    @classmethod
    def parse(cls, doc: dict[str, Any] | None) -> RetryState:
        doc = doc or {}
        return cls(
            pending={k: dict(v) for k, v in (doc.get("pending") or {}).items()},
            seen={k: float(v) for k, v in (doc.get("seen") or {}).items()},
            after=float(doc.get("after") or 0.0),
        )

    def dump(self) -> dict[str, Any]:
        return {"pending": self.pending, "seen": self.seen, "after": self.after}

    @property
    def empty(self) -> bool:
        return not self.pending and not self.seen and not self.after


def backoff_seconds(table: TableConfig, attempt: int) -> float:
    """The wait before re-launch ``attempt`` (1, 2, ...): doubling from ``land_retry_seconds``, capped."""
    return min(table.land_retry_seconds * 2 ** max(0, attempt - 1), table.land_retry_max_seconds)


def failure_cause(instance: dg.DagsterInstance, run_id: str) -> str:
    """One line saying why a run failed: its failed step's description, else the run failure's text.

    The land op fails with ``dg.Failure`` whose description names the root cause
    (``tdtp_assets.failures``); a run that died before its step (a missing secret, a
    crashed worker) has only the run failure event.
    """
    text = ""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        user = getattr(data, "user_failure_data", None)
        error = getattr(data, "error", None)
        text = (user.description if user and user.description else "") or (error.message if error else "")
        if text:
            break
    if not text:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
            data = entry.dagster_event.event_specific_data if entry.dagster_event else None
            error = getattr(data, "error", None)
            text = (error.message if error else "") or entry.message or ""
    text = text.split("Failure: ", 1)[1] if text.startswith("dagster.") and "Failure: " in text else text
    return one_line(text or f"run {run_id} failed (no failure event)", 400)


def only_checks_failed(instance: dg.DagsterInstance, table: TableConfig, run_id: str) -> bool:
    """True when the run's one failed step is its blocking checks: the range landed and was published."""
    failed = {
        entry.dagster_event.step_key
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        if entry.dagster_event is not None
    }
    return failed == {names.land_check_op_name(table.name)}


def read_failures(instance: dg.DagsterInstance, table: TableConfig, state: RetryState) -> None:
    """Add the land runs of ``table`` that failed since the last read to ``state.pending``."""
    since = dt.datetime.fromtimestamp(max(0.0, state.after - OVERLAP_SECONDS), tz=dt.UTC)
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=names.import_parts_job_name(table.name),
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=since,
        ),
        limit=_RUNS_PER_TICK,
        order_by="update_timestamp",
        ascending=True,
    )
    for record in records:
        run = record.dagster_run
        stamp = record.update_timestamp.timestamp()
        state.after = max(state.after, stamp)
        if run.run_id in state.seen:
            continue
        state.seen[run.run_id] = stamp
        key = run.tags.get(names.TAG_SEQ_RANGE) or ""
        first, _, last = key.partition("-")
        if not (first.isdigit() and last.isdigit()):
            continue  # not a range the sensor launched (a hand-made run); nothing to re-launch
        if only_checks_failed(instance, table, run.run_id):
            continue  # landed and published; its red checks say what is wrong, landing again would not
        failed = int(run.tags.get(names.TAG_LAND_ATTEMPT) or 0) + 1
        known = state.pending.get(key)
        if known and known["n"] >= failed:
            continue
        state.pending[key] = {
            "n": failed,
            "at": stamp,
            "cause": failure_cause(instance, run.run_id),
            "run": run.run_id,
        }
    state.seen = {k: v for k, v in state.seen.items() if v >= state.after - OVERLAP_SECONDS}


def land_request(
    table: TableConfig, first: int, last: int, attempt: int = 0, *, follow: str = ""
) -> dg.RunRequest:
    """The land run of seqs ``first..last`` (inclusive); ``attempt`` > 0: its ``attempt``-th re-launch.

    The first launch's run key is ``<stream>:<first>-<last>``: stable, so a range is
    launched once, daemon restarts included.  Each re-launch has a key of its own.
    ``follow`` (an id the sensor's cursor keeps) makes it read on past ``last`` until
    the exports begun in the range end; a re-launch lands its range only.
    """
    stream = table.stream_label
    tags = {**run_tags(table), names.TAG_STREAM: stream, names.TAG_SEQ_RANGE: f"{first}-{last}"}
    config: dict[str, Any] = {"from_seq": first, "until_seq": last}
    if attempt:
        tags[names.TAG_LAND_ATTEMPT] = str(attempt)
    elif follow:
        tags[names.TAG_FOLLOW] = follow
        config["follow"] = True
    return dg.RunRequest(
        run_key=f"{stream}:{first}-{last}" + (f":retry-{attempt}" if attempt else ""),
        job_name=names.import_parts_job_name(table.name),
        run_config={"ops": {plan_op_name(table.name): {"config": config}}},
        tags=tags,
    )


def exports_in_range(instance: dg.DagsterInstance, table: TableConfig, first: int, last: int) -> list[dict]:
    """The recorded exports of ``table`` with messages in ``first..last``: export id, partition."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=names.export_key(table.name)), limit=_EXPORTS_SEARCHED
    ).records
    out: dict[str, dict] = {}
    for record in records:
        mat = record.asset_materialization
        if mat is None:
            continue
        meta = {k: v.value for k, v in mat.metadata.items()}
        lo, hi = int(meta.get(names.META_FIRST_SEQ, -1)), int(meta.get(names.META_LAST_SEQ, -1))
        export_id = str(meta.get(names.META_EXPORT_ID) or "")
        if export_id and 0 <= lo <= last and hi >= first and export_id not in out:
            out[export_id] = {"export_id": export_id, "partition": str(meta.get(names.META_PARTITION) or "")}
    return list(out.values())


def failed_import_requests(
    context: dg.SensorEvaluationContext, table: TableConfig, first: int, last: int, entry: dict[str, Any]
) -> list[dg.RunRequest]:
    """The import asset's run for each export in a range given up on: it fails its checks naming the cause."""
    pdef = partitions_def_for(table.partition)
    requests = []
    exports = exports_in_range(context.instance, table, first, last)
    if not exports:
        context.log.warning(
            f"{table.name}: seq {first}-{last} failed {entry['n']} land runs ({entry['cause']}); no export "
            "of this table is recorded there (a producer outside Dagster?), so no partition to fail"
        )
    for export in exports:
        partition = export["partition"] or None
        if pdef is not None and not (partition and pdef.has_partition_key(partition)):
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{table.stream_label}:land_failed:{export['export_id']}",
                job_name=names.publish_job_name(table.name),
                partition_key=partition if pdef is not None else None,
                run_config={
                    "ops": {
                        names.import_op_name(table.name): {
                            "config": {
                                "export_id": export["export_id"],
                                "land_failure": entry["cause"],
                                "land_attempts": int(entry["n"]),
                            }
                        }
                    }
                },
                tags={
                    **run_tags(table),
                    names.TAG_EXPORT: export["export_id"],
                    names.TAG_LAND_FAILED: f"{first}-{last}",
                },
            )
        )
    return requests


def retry_requests(
    context: dg.SensorEvaluationContext, table: TableConfig, state: RetryState, now: float
) -> list[dg.RunRequest]:
    """Read new failures of ``table``'s land runs; the re-launches due now, and the failed imports past the limit.

    A range past ``land_retries`` gets its failed import runs at once (on the tick
    that reads the failure), not when its next re-launch is due: the partition should
    show the cause as soon as the limit is reached.
    """
    if not state.after:
        # First tick (or a cursor from before retries existed): failures from here on,
        # not every failed land run in the instance's history.
        state.after = now
    read_failures(context.instance, table, state)
    requests: list[dg.RunRequest] = []
    for key, entry in sorted(state.pending.items()):
        failed = int(entry["n"])
        first, last = (int(x) for x in key.split("-"))
        if failed > table.land_retries and not entry.get("told"):
            entry["told"] = True
            # One run per export (its run key): later failures find the key taken.
            requests += failed_import_requests(context, table, first, last, entry)
        if now < float(entry["at"]) + backoff_seconds(table, failed):
            continue
        context.log.info(
            f"{table.name}: land run for seq {key} failed {failed} time(s) ({entry['cause']}); launching it again"
        )
        requests.append(land_request(table, first, last, failed))
        del state.pending[key]
    return requests
