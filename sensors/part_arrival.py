"""The part-arrival sensor: turns new messages in each table's stream into land runs, one hop per export.

Each tick, per table:

1. Polls the stream's high watermark (the next seq; no part body is read) and
   launches land runs (``tdtp_import_parts_<table>``) for the seqs that arrived since
   the cursor, at most ``max_parts_per_run`` per run so one run's fixed cost (a few
   seconds) is spread over many parts.  ``run_key = "<stream>:<from>-<until>"``: a seq
   range is launched once, also across daemon restarts (Dagster checks run keys
   against run storage), and the cursor moves past it so the next tick never asks
   again (#3726: run-key dedupe alone would re-check every key on every tick).  A
   tick that finds nothing new keeps polling for up to the interval less a second
   (``arrival_wait_seconds``): the daemon starts a tick every 5 s at best, and an
   export's first part should not wait for the next one.
2. The newest range's run follows the stream (``follow`` in the cursor, the
   ``tdtp/follow`` tag on the run): it lands on until the exports begun in its range
   have sent their summaries, then publishes each export it completed, materializes
   its import partition and records that partition's four blocking checks, in the
   same run (``tdtp_assets.jobs``).  Until it is over the table's later seqs wait;
   then the cursor moves past the last seq it read (its ``tdtp/followed_until_seq``
   tag).  So landing overlaps exporting, and an export costs one sensor hop.
3. Reads the land runs' observations since the cursor (by storage id).  An export a
   land run left complete but unpublished gets a run of the import asset for its
   partition (publish + checks).  One whose summary is in but that still misses
   parts waits until no land run of the table is in flight, then gets the same run,
   so its checks fail and say what is missing instead of waiting forever.

Copy runs (``tdtp_copy_<table>``, or both assets selected in one run) land their
own parts (``tdtp_assets.copying``).  While one is running, the seqs from where its
landing starts wait (the cursor stops before them; before its first part, all of the
table's new seqs wait); afterwards the seq ranges such runs recorded as landed in
full are left out of the land runs and the cursor moves past them.  The
sensor reads each export materialization once and keeps the ranges ahead of its
seq cursor in its cursor.  A range launched anyway would only be skipped as
duplicates by the target's ledger.

4. Re-launches land runs that failed, with backoff, and past ``land_retries`` fails
   the partitions' checks with the cause (``sensors.land_retries``): the cursor moved
   past a failed range, so without this nothing would launch it again.

A stream that cannot be read is said in the tick itself (``tick_result``): the tick
fails with one line naming the stream and the error, or, when it has progress to
save, is skipped with that line as its skip reason.

The cursor is JSON: ``{"seq": {stream: last launched seq}, "obs": {table: storage id},
"waiting": {table: {export_id: partition}}, "mats": {table: storage id},
"landed": {table: {export_id: [first, until, [other exports]]}}, "passed": {table: [export_id]},
"retry": {table: {"pending": {range: attempt}, "seen": {run_id: time}, "after": time}},
"follow": {table: {"id": follow tag, "until": range end, "at": time}}}``.
A tick polls the brokers (one cheap call each, every 0.2 s for at most 4 s while
nothing arrives) and makes a few small storage queries per table (at most
``_PAGES_PER_TICK`` pages of export materializations, one query for failed land runs),
far inside Dagster's 60 s tick limit.
"""

import json
import math
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from sensors.land_retries import RetryState, land_request, retry_requests
from tdtp_assets import names
from tdtp_assets.failures import one_line, root_cause
from tdtp_assets.jobs import AssetJob, run_tags
from tdtp_assets.partitions import partitions_def_for
from tdtp_assets.tables_config import TableConfig, TablesConfig

SENSOR_NAME = "tdtp_part_arrival"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
_PUBLISHABLE = ("finalized", "complete")
# Export materializations read per storage query, looking for ranges copy runs landed,
# and at most this many queries per tick.
_PAGE = 500
_PAGES_PER_TICK = 20
# How many passed exports the cursor remembers per table (a range naming an older one
# is launched again: its parts land as duplicates, nothing is lost).
_PASSED_KEPT = 200
_STUCK = ("importing", "blocked")
# dagster-daemon's sensor loop floor (``MIN_INTERVAL_LOOP_TIME`` in 1.13), and how often a
# waiting tick polls the high watermarks.
_DAEMON_FLOOR_SECONDS = 5
_POLL_SECONDS = 0.2
# A following land run the sensor requested but cannot find in run storage after this
# long was never created (the launch was lost): its later seqs stop waiting for it.
_FOLLOW_LOST_SECONDS = 300.0


@dataclass
class Cursor:
    """The sensor's progress; survives daemon restarts in Dagster's storage."""

    seq: dict[str, int] = field(default_factory=dict)
    obs: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, dict[str, str]] = field(default_factory=dict)
    # Per table: storage id of the last export materialization read, and the ranges copy
    # runs landed that end after ``seq`` ({export_id: [first, until, [other exports]]}).
    mats: dict[str, int] = field(default_factory=dict)
    landed: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    # Per table: the latest exports whose landed ranges the seq cursor passed (their
    # messages all lie behind it, so a range that met them needs nothing more for them).
    passed: dict[str, list[str]] = field(default_factory=dict)
    # Per table: failed land ranges waiting for their next attempt (``sensors.land_retries``).
    retry: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per table: the following land run in flight ({"id", "until", "at"}); later seqs wait for it.
    follow: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        doc = json.loads(text)
        return cls(
            seq={k: int(v) for k, v in doc.get("seq", {}).items()},
            obs={k: int(v) for k, v in doc.get("obs", {}).items()},
            waiting={k: dict(v) for k, v in doc.get("waiting", {}).items()},
            mats={k: int(v) for k, v in doc.get("mats", {}).items()},
            landed={k: dict(v) for k, v in doc.get("landed", {}).items()},
            passed={k: list(v) for k, v in doc.get("passed", {}).items()},
            retry={k: dict(v) for k, v in doc.get("retry", {}).items()},
            follow={k: dict(v) for k, v in doc.get("follow", {}).items()},
        )

    def dump(self) -> str:
        doc: dict[str, Any] = {"seq": self.seq, "obs": self.obs}
        if any(self.waiting.values()):
            doc["waiting"] = {k: v for k, v in self.waiting.items() if v}
        if self.mats:
            doc["mats"] = self.mats
        if any(self.landed.values()):
            doc["landed"] = {k: v for k, v in self.landed.items() if v}
        if any(self.passed.values()):
            doc["passed"] = {k: v for k, v in self.passed.items() if v}
        if self.retry:
            doc["retry"] = self.retry
        if self.follow:
            doc["follow"] = self.follow
        return json.dumps(doc, sort_keys=True)


def seq_ranges(last_launched: int, high_watermark: int, batch: int) -> list[tuple[int, int]]:
    """Inclusive ranges covering ``last_launched+1 .. high_watermark-1``, at most ``batch`` seqs each."""
    first, last = last_launched + 1, high_watermark - 1
    return [(a, min(a + batch - 1, last)) for a in range(first, last + 1, batch)]


def publish_request(
    table: TableConfig, export_id: str, partition: str | None, *, stuck: bool
) -> dg.RunRequest:
    suffix = ":incomplete" if stuck else ""
    return dg.RunRequest(
        run_key=f"{table.stream_label}:publish:{export_id}{suffix}",
        job_name=names.publish_job_name(table.name),
        partition_key=partition,
        run_config={"ops": {names.import_op_name(table.name): {"config": {"export_id": export_id}}}},
        tags={**run_tags(table), names.TAG_EXPORT: export_id},
    )


def _valid_partition(table: TableConfig, partition: str | None, context: dg.SensorEvaluationContext) -> bool:
    pdef = partitions_def_for(table.partition)
    if pdef is None:
        return True
    if partition and pdef.has_partition_key(partition):
        return True
    context.log.warning(
        f"{table.name}: export partition {partition!r} is not a partition of this asset; skipped"
    )
    return False


class BrokerUnreachable(Exception):
    """A tick could read no part of a table's stream: the tick fails with this one line."""


def high_watermarks(
    context: dg.SensorEvaluationContext, tables: list[TableConfig]
) -> tuple[dict[str, int], dict[str, str]]:
    """Every table's high watermark, polled side by side, and the streams that could not be read.

    A poll is network-bound (an empty RabbitMQ stream takes about a second to probe),
    so polling in threads keeps a tick short with many tables.  A broker that fails
    does not stop the other tables; it is returned as ``{table: "<stream>: <error>"}``
    for the tick to report.
    """

    def poll(table: TableConfig) -> tuple[str, int | None, str]:
        broker = getattr(context.resources, names.broker_resource(table.name))
        try:
            return table.name, broker.high_watermark(), ""
        except Exception as exc:
            cause = root_cause(exc)  # the engine's errors name the broker URL (redacted) already
            where = "" if broker.safe_url in cause else f" at {broker.safe_url}"
            why = one_line(f"cannot read stream {table.stream_label!r}{where}: {cause}", 400)
            context.log.error(why)
            return table.name, None, why

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(tables)))) as pool:
        polled = list(pool.map(poll, tables))
    marks = {name: hw for name, hw, _ in polled if hw is not None}
    return marks, {name: why for name, _, why in polled if why}


def arrival_wait_seconds(interval_seconds: float) -> float:
    """How long a tick that finds no new part waits for one: the interval less a second, at most 4 s.

    Why: dagster-daemon starts a sensor tick at most every 5 s (docs/architecture.md,
    DESIGN §4), so a part that arrives just after a tick waits up to 5 s for the next
    one, and then a run start (about 3.5 s) before anything lands.  A tick that keeps
    polling the high watermarks (cheap: no part body is read) for about as long as the
    daemon's interval sees a first part within a fraction of a second and requests its
    land run right away.  With ``interval_seconds: 1`` (tests) a tick does not wait.
    """
    return max(0.0, min(float(interval_seconds), float(_DAEMON_FLOOR_SECONDS)) - 1.0)


def await_arrivals(
    context: dg.SensorEvaluationContext, tables: list[TableConfig], cursor: Cursor, wait: float
) -> tuple[dict[str, int], dict[str, str]]:
    """The high watermarks, polled again every ``_POLL_SECONDS`` for up to ``wait`` seconds until a part arrives.

    Returns at once when a table has seqs past the cursor that no following land run
    is taking care of, or when a stream cannot be read (the tick says so now).
    """
    deadline = time.monotonic() + wait
    while True:
        marks, unreadable = high_watermarks(context, tables)
        arrived = any(
            marks.get(t.name) is not None
            and marks[t.name] - 1 != cursor.seq.get(t.stream_label, -1)
            and t.name not in cursor.follow
            for t in tables
        )
        if arrived or unreadable or time.monotonic() + _POLL_SECONDS > deadline:
            return marks, unreadable
        time.sleep(_POLL_SECONDS)


def _land_requests(
    context: dg.SensorEvaluationContext, table: TableConfig, cursor: Cursor, hw: int | None, now: float
) -> list[dg.RunRequest]:
    if hw is None:
        return []
    stream = table.stream_label
    broker = getattr(context.resources, names.broker_resource(table.name))
    last = cursor.seq.get(stream, -1)
    if hw - 1 < last:
        context.log.warning(
            f"{table.name}: stream {broker.safe_url} is at seq {hw - 1}, behind the cursor {last}; "
            "was the stream recreated?  Starting over from its beginning."
        )
        last = cursor.seq[stream] = -1  # said once, even when this tick launches nothing
        cursor.landed.pop(table.name, None)  # seqs of the old stream
        cursor.passed.pop(table.name, None)
    if table.name in cursor.follow:
        if hw - 1 < last:
            cursor.follow.pop(table.name)  # the stream was recreated: what it read is gone
        else:
            read_until = follower_end(context.instance, table, cursor.follow[table.name], now)
            if read_until is None:
                return []  # it lands whatever arrives until its exports end; what comes after waits for it
            cursor.follow.pop(table.name)
            if read_until > last:
                last = cursor.seq[stream] = read_until
    if hw - 1 <= last:
        return []
    # A copy run lands its own parts; launching land runs for them now would only make
    # duplicates.  Seqs from the earliest one a copy run in flight lands from wait (the
    # cursor stops before them), so whatever it does not land is launched once it is over.
    hold, landing = copy_runs_in_flight(context.instance, table)
    end = min(hw - 1, hold - 1)
    if end <= last:
        context.log.info(f"{table.name}: a copy run is landing its own parts; land runs wait for it")
        return []
    landed = landed_inline(context.instance, table, cursor)
    if landed is None:
        context.log.info(f"{table.name}: still reading earlier export materializations; land runs next tick")
        return []
    # Exports that copy runs in flight land from beyond ``end`` have no message up to it;
    # the ones the cursor passed have none after ``last``.
    beyond = {export_id for export_id, start in landing.items() if start > end}
    passed = cursor.passed.setdefault(table.name, [])
    ranges = [
        piece
        for first, until in without_ranges((last + 1, end), covered_ranges(landed, last, beyond | set(passed)))
        for piece in seq_ranges(first - 1, until + 1, table.max_parts_per_run)
    ]
    cursor.seq[stream] = end
    kept = cursor.landed.get(table.name, {})
    cursor.landed[table.name] = still_needed(kept, end)
    passed += [e for e in kept if e not in cursor.landed[table.name] and e not in passed]
    del passed[:-_PASSED_KEPT]
    requests = [land_request(table, a, b) for a, b in ranges[:-1]]
    if ranges:
        a, b = ranges[-1]
        # The newest range follows the stream until the exports begun in it end (one
        # hop: it publishes and checks them), unless its seqs end where a copy run's
        # landing starts (that run lands its own export) or several ops share it.
        if table.fanout == 1 and math.isinf(hold) and b == hw - 1:
            follow_id = f"{a}-{b}@{now:.3f}"
            cursor.follow[table.name] = {"id": follow_id, "until": b, "at": now}
            requests.append(land_request(table, a, b, follow=follow_id))
        else:
            requests.append(land_request(table, a, b))
    return requests


def follower_end(
    instance: dg.DagsterInstance, table: TableConfig, follow: dict[str, Any], now: float
) -> int | None:
    """The last seq the following land run read, once it is over; None while it is in flight.

    A run that failed or never said where it stopped counts as having read its
    range only (what it landed beyond is skipped by the ledger when launched again).
    A run that never appeared (the launch was lost) is given up on after a while.
    """
    runs = instance.get_runs(filters=dg.RunsFilter(tags={names.TAG_FOLLOW: str(follow["id"])}), limit=1)
    until = int(follow["until"])
    if not runs:
        return until if now - float(follow["at"]) > _FOLLOW_LOST_SECONDS else None
    run = runs[0]
    if run.status in IN_FLIGHT:
        return None
    read = run.tags.get(names.TAG_FOLLOWED_UNTIL) or ""
    if run.status == dg.DagsterRunStatus.SUCCESS and read.isdigit():
        return max(until, int(read))
    return until


def still_needed(kept: dict[str, list[Any]], cursor_seq: int) -> dict[str, list[Any]]:
    """The kept ranges that end after ``cursor_seq``, and those the kept ones name as met.

    A range wholly behind the cursor is done with, unless a range still kept names its
    export among the ones it stepped over: that one is covered only while it is known.
    """
    out = {e: entry for e, entry in kept.items() if entry[1] > cursor_seq}
    named = {other for entry in out.values() for other in entry[2]}
    out.update({e: entry for e, entry in kept.items() if e in named})
    return out


def copy_runs_in_flight(instance: dg.DagsterInstance, table: TableConfig) -> tuple[float, dict[str, int]]:
    """The first seq land runs must leave to copy runs in flight (``inf``: none), and export id -> that seq.

    A copy run (tag ``tdtp/lands_inline``) says which export it lands and where its
    landing starts (``tdtp/export_id``, ``tdtp/landing_from_seq``) right after its first
    part.  A running one that has not said yet (or whose tag is not a seq) holds
    everything from the cursor on (``-inf``): its first part may already be in the
    stream.  One not running yet (queued, starting) holds nothing, whatever tags a
    retry copied from its parent: the high watermark was read before the runs, so
    whatever it publishes lies beyond it.
    """
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={names.TAG_LANDING: table.name}, statuses=[dg.DagsterRunStatus.STARTED])
    )
    hold: float = math.inf
    landing: dict[str, int] = {}
    for run in runs:
        # Empty: the export step started and cleared what a retried run copied from its parent.
        start = run.tags.get(names.TAG_LANDING_FROM) or ""
        if not start.isdigit():
            return -math.inf, {}
        hold = min(hold, int(start))
        export_id = run.tags.get(names.TAG_EXPORT) or ""
        if export_id:
            landing[export_id] = int(start)
    return hold, landing


def landed_inline(instance: dg.DagsterInstance, table: TableConfig, cursor: Cursor) -> dict[str, list[Any]] | None:
    """The ranges copy runs landed in full and the cursor has not passed: export id -> (first, until, others).

    Each export materialization is read once: the ones written since the last read
    are added to what the cursor keeps (a copy run records its range when its lander
    read up to its own summary and found the export complete).  However many copy
    runs a backfill ran while the sensor held its land runs back, every range is known.
    None: more than ``_PAGES_PER_TICK`` pages are still unread (a first tick over a long
    history); the cursor keeps the place and the next tick reads on, so no tick runs
    into Dagster's time limit.
    """
    kept = cursor.landed.setdefault(table.name, {})
    for _ in range(_PAGES_PER_TICK):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=names.export_key(table.name), after_storage_id=cursor.mats.get(table.name)),
            limit=_PAGE,
            ascending=True,
        ).records
        for record in records:
            cursor.mats[table.name] = record.storage_id
            mat = record.asset_materialization
            if mat is None or names.META_LANDED_UNTIL not in mat.metadata:
                continue
            meta = {k: v.value for k, v in mat.metadata.items()}
            around = str(meta.get(names.META_LANDED_AROUND) or "")
            kept[str(meta.get(names.META_EXPORT_ID))] = [
                int(meta[names.META_LANDED_FROM]),
                int(meta[names.META_LANDED_UNTIL]),
                [x for x in around.split(",") if x],
            ]
        if len(records) < _PAGE:
            return kept
    return None


def covered_ranges(
    landed: Mapping[str, Sequence[Any]], after: int, beyond: AbstractSet[str] = frozenset()
) -> list[tuple[int, int]]:
    """The ranges of ``landed`` (export id -> first, until, other exports met) the sensor may skip.

    A range is covered when each other export met in it is in ``landed`` too (its
    messages lie in its own range, landed by its own copy run), or in ``beyond``:
    exports whose messages all lie past the seqs being launched now.
    """
    accounted = landed.keys() | beyond
    out = [
        (first, until)
        for first, until, others in landed.values()
        if until > after and until >= first and set(others) <= accounted
    ]
    return sorted(out)


def without_ranges(span: tuple[int, int], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``span`` (inclusive) minus the sorted inclusive ``holes``: the pieces still to launch."""
    pieces, start = [], span[0]
    for first, until in holes:
        if until < start or first > span[1]:
            continue
        if first > start:
            pieces.append((start, first - 1))
        start = max(start, until + 1)
    if start <= span[1]:
        pieces.append((start, span[1]))
    return pieces


def _publish_requests(
    context: dg.SensorEvaluationContext, table: TableConfig, cursor: Cursor, landing_now: bool
) -> list[dg.RunRequest]:
    after = cursor.obs.get(table.name)
    records = context.instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=names.import_key(table.name), after_storage_id=after),
        limit=1000,
        ascending=True,
    ).records
    waiting = cursor.waiting.setdefault(table.name, {})
    requests: dict[str, dg.RunRequest] = {}
    for record in records:
        cursor.obs[table.name] = record.storage_id
        obs = record.event_log_entry.asset_observation
        if obs is None:
            continue
        meta = {k: v.value for k, v in obs.metadata.items()}
        export_id = str(meta.get(names.META_EXPORT_ID) or "")
        state = str(meta.get("state") or "")
        partition = record.partition_key
        if not export_id or not _valid_partition(table, partition, context):
            continue
        if meta.get(names.META_PUBLISHED_HERE):
            waiting.pop(export_id, None)  # the land run published and checked it itself
            continue
        if state in _PUBLISHABLE:
            waiting.pop(export_id, None)
            requests[export_id] = publish_request(table, export_id, partition, stuck=False)
        elif state in _STUCK and meta.get(names.META_SUMMARY_LANDED):
            waiting[export_id] = partition or ""
    if waiting and not landing_now:
        busy = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=names.import_parts_job_name(table.name), statuses=IN_FLIGHT),
            limit=1,
        )
        if not busy:
            for export_id, partition in list(waiting.items()):
                requests.setdefault(
                    export_id, publish_request(table, export_id, partition or None, stuck=True)
                )
                del waiting[export_id]
    return list(requests.values())


_POOLS_READY: set[tuple[str, str]] = set()


def ensure_target_pools(context: dg.SensorEvaluationContext, tables: list[TableConfig]) -> None:
    """Give each target's pool the instance's default limit now, before runs queue up for it.

    Dagster's run queue learns of a pool only in the pass that first sees a run using it,
    and does not limit that pass: a backfill of both assets queued at once would start
    all its runs into one target.  Done once per daemon process and instance (one
    storage read); a limit a user set for a pool is left alone.
    """
    instance = context.instance
    storage = instance.event_log_storage
    default = instance.global_op_concurrency_default_limit
    if default is None or not storage.supports_global_concurrency_limits:
        return
    pools = {names.target_pool(t.target_label) for t in tables}
    todo = sorted(p for p in pools if (instance.root_directory or "", p) not in _POOLS_READY)
    if not todo:
        return
    try:
        limits = {limit.name: limit for limit in storage.get_pool_limits()}
        for pool in todo:
            limit = limits.get(pool)
            # Dagster's own rule: set when unset, or when it came from an older default.
            # (initialize_concurrency_limit_to_default would also overwrite a limit a
            # user set for the pool, so it is called only then.)
            if limit is None or (limit.from_default and limit.limit != default):
                storage.initialize_concurrency_limit_to_default(pool)
            _POOLS_READY.add((instance.root_directory or "", pool))
    except Exception as exc:  # the sensor's job is importing; a limit it cannot set is a warning
        context.log.warning(f"could not set the default limit of pools {', '.join(todo)}: {exc}")


def tick_result(
    context: dg.SensorEvaluationContext,
    cursor: Cursor,
    requests: list[dg.RunRequest],
    unreadable: dict[str, str],
) -> dg.SensorResult:
    """The tick's result; a stream that could not be read is said in the tick itself.

    With nothing to save (no run requested, the cursor as it was), the tick fails
    (red in the UI, the error on the tick): an outage stands out.  When it has runs
    or progress of other tables to save, failing would throw them away, so the runs
    are requested (the error is in the tick's log) or the tick is skipped with the
    error as its skip reason, and the cursor is kept either way.  The cursor never
    moves for an unreadable stream, so nothing of it is skipped.
    """
    text = cursor.dump()
    if not unreadable:
        return dg.SensorResult(run_requests=requests, cursor=text)
    why = "; ".join(unreadable[name] for name in sorted(unreadable))
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=text)
    if text == Cursor.parse(context.cursor).dump():
        raise BrokerUnreachable(why)
    return dg.SensorResult(skip_reason=why, cursor=text)


def build_part_arrival_sensor(
    config: TablesConfig, jobs: list[dg.JobDefinition | AssetJob]
) -> dg.SensorDefinition:
    tables = list(config.tables.values())
    broker_keys = {names.broker_resource(t.name) for t in tables}
    wait = arrival_wait_seconds(config.sensor.interval_seconds)

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=jobs,
        minimum_interval_seconds=config.sensor.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING
        if config.sensor.running
        else dg.DefaultSensorStatus.STOPPED,
        required_resource_keys=broker_keys,
        description=(
            "Polls each table's part stream (high watermark only) and launches a land run as soon as parts "
            "arrive; the run follows the stream until the exports begun in it end, then publishes them and "
            "runs their checks (one hop). Exports left incomplete get the import asset's run."
        ),
    )
    def part_arrival(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        ensure_target_pools(context, tables)
        cursor = Cursor.parse(context.cursor)
        requests: list[dg.RunRequest] = []
        marks, unreadable = await_arrivals(context, tables, cursor, wait)
        now = time.time()
        for table in tables:
            hw = marks.get(table.name)
            landing = _land_requests(context, table, cursor, hw, now)
            requests += landing
            retries = RetryState.parse(cursor.retry.get(table.name))
            relaunched = retry_requests(context, table, retries, now)
            requests += relaunched
            cursor.retry[table.name] = retries.dump()
            # Parts held back for a copy run, or a failed range waiting for its next
            # attempt, count as landing: a stuck export may still get its missing parts.
            held_back = hw is not None and hw - 1 > cursor.seq.get(table.stream_label, -1)
            landing_now = bool(landing) or bool(relaunched) or held_back or bool(retries.pending)
            requests += _publish_requests(context, table, cursor, landing_now=landing_now)
        return tick_result(context, cursor, requests, unreadable)

    return part_arrival
