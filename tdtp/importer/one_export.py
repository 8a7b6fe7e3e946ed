"""Land one export from a part log: its messages only, from a seq to its summary.

Used where one export is landed on its own while other exports may share the
stream: the copy run's lander (run as ``python -m tdtp.importer.one_export``, a
fresh interpreter beside the Dagster run worker) and the import step that lands
an export no sensor landed.  Other exports' messages are stepped over and named
(:class:`tdtp.brokers.OnlyExport`); the read ends at the export's summary
(:class:`tdtp.brokers.UntilSummary`) or, without ``follow``, once caught up.

As a process it reads its job as one JSON object from the environment variable
``TDTP_LAND_JOB`` (URLs stay out of the process list) and writes its result as one
JSON object on stdout::

    {"target_url", "broker_url", "table", "mode", "workers", "export_id", "from_seq"}
    -> {"stats": {...}, "summary_seq", "others": [...], "state", "complete"} or {"error": "..."}

``from_seq: null`` starts the process ahead of its export (``tdtp copy``): it connects
to the target and the broker first, then reads the seq to land from as one line on
stdin and answers ``ready`` on stdout once its reader is in place, so the export publishes its first part to a
reader already waiting for it rather than a process start ahead of it.  An empty
stdin (the export failed before its first part) ends it with an error result and
nothing landed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from tdtp.allocator import keep_freed_memory
from tdtp.brokers import LogView, OnlyExport, PartLog, UntilSummary, open_broker
from tdtp.importer.engine import ParallelImporter
from tdtp.importer.lander_io import JOB_ENV, READY, ExportLanding
from tdtp.importer.options import ImportOptions
from tdtp.metrics import map_big_buffers
from tdtp.sinks.schema_change import EVOLVE

#: The lander process stops when no message came for this long (its parent may be gone,
#: killed without a chance to stop it); whoever lands the export next lands the rest.
IDLE_TIMEOUT_SECONDS = 600.0


def land_export(
    importer: ParallelImporter,
    log: PartLog,
    export_id: str,
    *,
    from_seq: int,
    follow: bool,
    timeout: float | None = None,
) -> ExportLanding:
    """Land ``export_id``'s messages from ``from_seq`` on; with ``follow``, wait for the rest until its summary."""
    own = OnlyExport(log, export_id)
    reader = UntilSummary(own, export_id)
    stats = importer.import_log(reader, from_seq=from_seq, follow=follow, timeout=timeout)
    return ExportLanding(
        stats=stats,
        summary_seq=reader.summary_seq,
        others=sorted(own.others),
        state=importer.status(export_id).state,
    )



class _SaysReady(LogView):
    """A log whose read writes the ready line once the reader is in place: the export may publish."""

    def read(self, **kwargs: Any) -> Any:
        return self._log.read(on_open=_say_ready, **kwargs)


def _say_ready() -> None:
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()


JOB_KEYS = ("target_url", "broker_url", "table", "mode", "workers", "export_id", "from_seq")


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One landing as the lander process does it: open broker and target, land, return the result."""
    missing = [k for k in JOB_KEYS if k not in job]
    if missing:
        raise ValueError(f"{JOB_ENV} lacks {', '.join(missing)}")
    options = ImportOptions(
        mode=job["mode"],
        table=job["table"],
        workers=int(job["workers"]),
        require_hashes=bool(job.get("require_hashes", False)),
        schema=str(job.get("schema", EVOLVE)),
    )
    importer = ParallelImporter(job["target_url"], options)
    with importer, open_broker(job["broker_url"]) as log:
        from_seq = job["from_seq"]
        if from_seq is None:
            importer.conn  # noqa: B018 - connect and create the bookkeeping now, before the first part
            line = sys.stdin.readline().strip()
            if not line:
                raise ValueError("no seq to land from: the export ended before its first part")
            from_seq = line
            log = _SaysReady(log)
        landing = land_export(
            importer,
            log,
            job["export_id"],
            from_seq=int(from_seq),
            follow=True,
            timeout=IDLE_TIMEOUT_SECONDS,
        )
    return landing.as_dict()


def main() -> int:
    map_big_buffers()  # as tdtp import: part buffers mapped whole (tdtp/metrics.py)
    keep_freed_memory()  # a process that lands one export and exits (tdtp/allocator.py)
    try:
        # Taken out of the environment first: the importer's worker processes need no URLs from it.
        text = os.environ.pop(JOB_ENV, None)
        if text is None:
            raise ValueError(f"{JOB_ENV} is not set: it holds the landing's job as JSON")
        result = run_job(json.loads(text))
    except BaseException as exc:  # reported to the parent, which decides; never a traceback only
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
