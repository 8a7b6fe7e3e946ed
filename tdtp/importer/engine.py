"""The importer's front door: :class:`ParallelImporter` imports TDTP parts from files or a broker.

Each ``import_*`` call is one :class:`tdtp.importer.dispatch.ImportRun` with its own
worker pool; this class owns the target, the receiving process's connection and
the calls that read or settle bookkeeping (finalize, status, dead-letter replay).
How the layers below fit together is in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tdtp.brokers.base import PartLog
from tdtp.importer.dispatch import ImportRun
from tdtp.importer.finalize import finalize_export
from tdtp.importer.inputs import Incoming, expand_paths, file_items, log_items
from tdtp.importer.ledger import dead_letter_body, ensure_bookkeeping, open_dead_letters
from tdtp.importer.options import ImportOptions
from tdtp.importer.outcome import FinalizeResult
from tdtp.importer.stats import ImportStats
from tdtp.importer.status import ExportStatus, partition_rows, read_status
from tdtp.importer.target import Target


class ParallelImporter:
    """Imports TDTP parts from files or a broker into PostgreSQL or SQLite, exactly once.

    One instance per target; each ``import_*`` call runs its own worker pool.
    """

    def __init__(self, target_url: str, options: ImportOptions | None = None) -> None:
        self.options = options or ImportOptions()
        self.options.validate()
        self.target = Target.parse(target_url)
        self._conn: Any = None

    # ----------------------------------------------------------------- plumbing
    @property
    def conn(self) -> Any:
        """The receiving process's own connection (summaries, dead letters, finalize)."""
        if self._conn is None:
            self._conn = self.target.connect(lock_timeout=self.options.lock_timeout_seconds)
            ensure_bookkeeping(self.target, self._conn)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ParallelImporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, *, log: PartLog | None = None, replay: bool = False) -> ImportRun:
        return ImportRun(self.target, self.options, self.conn, log=log, replay=replay)

    # --------------------------------------------------------------- public API
    def import_files(self, paths: Sequence[str | Path]) -> ImportStats:
        """Import part files and ``*_summary.json`` files (directories are scanned)."""
        summaries, parts = expand_paths(paths)
        return self._run().run(file_items(summaries, parts), files=True)

    def import_log(
        self,
        log: PartLog,
        *,
        from_seq: int | None = None,
        after_seq: int | None = None,
        online: bool = False,
        follow: bool = False,
        timeout: float | None = None,
        until_seq: int | None = None,
    ) -> ImportStats:
        """Import from a broker's part log: replay from a position, optionally follow live parts.

        Without ``follow`` the import stops at the caught-up marker; ``until_seq``
        stops before that seq (Dagster runs import a fixed range).
        """
        reader = log.read(
            from_seq=from_seq, after_seq=after_seq, online=online, follow=follow, timeout=timeout
        )
        run = self._run(log=log)
        try:
            return run.run(log_items(reader, until_seq), files=False)
        finally:
            reader.close()

    def finalize(self, export_id: str) -> FinalizeResult:
        """Publish an export if it is complete (idempotent); otherwise say what it waits for."""
        return finalize_export(self.target, self.conn, export_id)

    def status(self, export_id: str) -> ExportStatus:
        return read_status(self.target, self.conn, export_id)

    def partition_rows(self, export_id: str, table: str | None = None) -> int | None:
        """Rows now in the target table for the export's partition (None: export or table missing).

        What a row-count check compares with the summary's TotalRows.
        """
        table = table or self.options.table
        if table is None:
            status = self.status(export_id)
            table = status.table or None
        return None if table is None else partition_rows(self.target, self.conn, export_id, table)

    def replay_dead_letters(self, export_id: str | None = None) -> ImportStats:
        """Retry the stored bodies of open dead letters (after the cause was fixed)."""
        letters = open_dead_letters(self.target, self.conn, export_id)

        def items() -> Iterator[Incoming]:
            for d in letters:
                yield Incoming(
                    "data",
                    dead_letter_body(self.target, self.conn, d.id),
                    f"dead letter #{d.id}",
                    export_hint=d.export_id,
                    part_hint=d.part_number,
                    dead_letter_id=d.id,
                )

        return self._run(replay=True).run(items(), files=False)


def export_status(target_url: str, export_id: str) -> ExportStatus:
    """``tdtp status``: an export's progress in a target, read from committed bookkeeping."""
    with ParallelImporter(target_url, ImportOptions(workers=1)) as importer:
        return importer.status(export_id)
