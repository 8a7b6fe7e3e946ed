"""The one-run copy: the export step lands its own parts in the target while it exports them.

Why: every Dagster run costs seconds to start (process, ``import dagster``, code
location), and the sensor path is a chain of at least three runs plus two sensor
hops (export run -> land runs -> publish run).  When one run materializes both
``tdtp/export/<table>`` and ``tdtp/import/<table>`` (the ``tdtp_copy_<table>`` job,
or both assets selected in the UI), the export step starts the engine's importer in
a process of its own as soon as it publishes its first part; the import step that
follows in the same run finds the export landed and only publishes and checks.

How the lander gets the parts: it reads them back from the broker, from the export's
first seq until it has seen that export's summary, exactly like a land run does.
Handing parts over in memory would save the read-back, but that costs next to
nothing (measured: the 1M-row demo's 15 parts and summary, 16 MB, read back from
the spool in 4 ms; over RabbitMQ or Kafka it is one more network read of bytes the
importer has to decode anyway), and the broker path keeps three properties for
free: the export never waits for the importer (the broker is the buffer), the
landing is the same code as every other landing (ledger, acks, dead letters), and
when the lander fails every part is still in the broker for the import step or the
sensor to land (the ledger skips what the lander already got in).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from tdtp.importer import ImportStats
from tdtp.landing import LanderProcess
from tdtp_assets import names
from tdtp_assets.tables_config import TableConfig

# How long the export step waits for its lander after the summary is in the broker,
# beyond the export's own duration; past it the lander is stopped and the import step
# lands whatever is missing (the ledger keeps that exactly-once).
_JOIN_GRACE_SECONDS = 120.0


def run_materializes_import(context: dg.AssetExecutionContext, table: str) -> bool:
    """True when this run also materializes ``tdtp/import/<table>`` (a copy run).

    ``run.asset_selection`` is what a launch from the UI or GraphQL selected; a job
    that runs all of its assets (the copy job, ``dg.materialize``) leaves it empty or
    None, and then the job's asset layer says which assets it executes.
    """
    key = names.import_key(table)
    selection = context.run.asset_selection
    if selection:
        return key in selection
    return key in context.job_def.asset_layer.selected_asset_keys


class InlineLander:
    """Lands one export's parts into the target in a process of its own, beside the export step.

    The process is ``python -m tdtp.importer.one_export``: it lands only this export's
    messages (a copy run of another partition may be exporting into the same stream
    at the same time; its messages are its own lander's, or the sensor's, to land),
    from the export's first seq to its summary, and reports back as JSON.

    A process, not a thread: measured on the 1M-row demo (SQLite target, 2 cores), a
    lander thread made the copy run 37 s against 20 s for ``tdtp export`` beside
    ``tdtp import --follow``, because the export's row encoding and the importer's
    SQLite writer took turns on one GIL.  A fresh interpreter, not a fork of the run
    worker: the run worker runs threads (Dagster's logging, event writes), and a fork
    taken while one of them holds a lock leaves that lock held forever in the child.
    The fresh interpreter imports only the engine (no Dagster), about 0.2 s, while
    the export goes on; the job (URLs included) goes in its environment, not on its command line.

    ``start(first_seq)`` is called with the seq to read from (never past the export's
    first message); ``finish()`` after the summary is published waits for the landing
    and keeps its figures; ``abandon()`` stops it when the export failed (a killed
    landing loses nothing: each part and its ledger row commit together).  A landing
    error is kept, never raised: the export must complete whatever happens to it.
    """

    def __init__(self, table: TableConfig, target: Any, broker: Any, export_id: str) -> None:
        self._job = {
            "target_url": target.url,
            "broker_url": broker.url,
            "table": table.target_table,
            "mode": table.target.mode,
            "require_hashes": table.target.require_hashes,
            "schema": table.target.schema_policy,
            "workers": table.workers,
            "export_id": export_id,
        }
        self.export_id = export_id
        self.from_seq: int | None = None
        self.stats: dict[str, Any] = {}
        self.summary_seq: int | None = None
        self.others: list[str] = []
        self.complete = False
        self.error: str | None = None
        self._lander: LanderProcess | None = None

    def start(self, first_seq: int) -> None:
        self.from_seq = first_seq
        # The engine's lander process (tdtp.landing): stderr to a file it quotes on failure.
        self._lander = LanderProcess(self._job)
        self._lander.start(first_seq)
        if self._lander.error is not None:  # no process (file or memory limits): the export goes on without it
            self.error = self._lander.error
            self._lander = None

    def abandon(self) -> None:
        """Stop the landing (the export failed, or waiting for it did): the import step or the sensor lands the rest."""
        if self._lander is not None:
            self._lander.abandon()
            self._lander = None

    def finish(self, export_seconds: float) -> None:
        """Wait for the landing to reach the summary; stop it if it takes far longer than the export did.

        Whatever interrupts the wait (the run being terminated) stops the landing too.
        """
        lander, self._lander = self._lander, None
        if lander is None:
            return
        landing = lander.finish(timeout=_JOIN_GRACE_SECONDS + 2 * export_seconds)
        self.stats = landing.stats.as_dict() if landing.error is None else {}
        self.summary_seq = landing.summary_seq
        self.others = landing.others
        self.complete = landing.complete
        self.error = landing.error

    @property
    def landed_everything(self) -> bool:
        """The lander read up to this export's summary without error and the export is complete.

        Complete in the target's ledger, not just "read to the summary": a lander that
        started past the export's first part must not claim it.
        """
        return self.error is None and self.summary_seq is not None and self.complete

    def metadata(self) -> dict[str, Any]:
        """What the export materialization says about the landing (read by the import step and the sensor)."""
        ok = self.landed_everything
        peak = max(
            float(self.stats.get("peak_rss_mb") or 0), float(self.stats.get("worker_peak_rss_mb") or 0)
        )
        meta: dict[str, Any] = {
            names.META_LANDED_INLINE: dg.MetadataValue.bool(ok),
            "landed_seconds": dg.MetadataValue.float(round(float(self.stats.get("seconds") or 0.0), 3)),
            "landed_parts": dg.MetadataValue.int(int(self.stats.get("parts_imported") or 0)),
            "landed_duplicates": dg.MetadataValue.int(int(self.stats.get("duplicates") or 0)),
            "landed_dead_letters": dg.MetadataValue.int(int(self.stats.get("dead_letters") or 0)),
            "landed_first_part_seconds": dg.MetadataValue.float(
                round(float(self.stats.get("first_part_seconds") or 0.0), 3)
            ),
            "landed_peak_rss_mb": dg.MetadataValue.float(round(peak, 1)),
        }
        if ok and self.from_seq is not None and self.summary_seq is not None:
            # The seqs the lander actually read (not the publisher's view of them, an
            # estimate on RabbitMQ streams with concurrent exporters).
            meta[names.META_LANDED_FROM] = dg.MetadataValue.int(self.from_seq)
            meta[names.META_LANDED_UNTIL] = dg.MetadataValue.int(self.summary_seq)
            # Other exports met in that range, left alone: the sensor may skip the range
            # only when each of them was landed in full by its own copy run.
            meta[names.META_LANDED_AROUND] = dg.MetadataValue.text(",".join(o or "?" for o in self.others))
        if self.error is not None:
            meta["landing_error"] = self.error[:1000]
        return meta


def inline_figures(export: dict[str, Any]) -> ImportStats | None:
    """The export run's landing figures as one land run's stats (None: it landed nothing)."""
    if not export.get(names.META_LANDED_INLINE) and not export.get("landed_parts"):
        return None
    return ImportStats(
        seconds=float(export.get("landed_seconds") or 0.0),
        duplicates=int(export.get("landed_duplicates") or 0),
        dead_letters=int(export.get("landed_dead_letters") or 0),
        first_part_seconds=export.get("landed_first_part_seconds") or None,
        peak_rss_mb=float(export.get("landed_peak_rss_mb") or 0.0),
    )
