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
from tdtp.importer.bookkeeping import ensure_bookkeeping
from tdtp.importer.dead_letters import dead_letter_body, open_dead_letters
from tdtp.importer.dispatch import ImportRun
from tdtp.importer.finalize import finalize_export, reset_export
from tdtp.importer.inputs import Incoming, expand_paths, file_items, log_items
from tdtp.importer.ledger import export_tables
from tdtp.importer.options import ImportOptions
from tdtp.importer.outcome import FinalizeResult
from tdtp.importer.stats import ImportStats
from tdtp.importer.status import ExportStatus, partition_rows, read_status
from tdtp.importer.target import Target
from tdtp.packet import TdtpError


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

    def table_of(self, export_id: str, table: str | None = None) -> str:
        """The target table meant for an export: given, the import's ``table``, or the only one it is in."""
        table = table or self.options.table
        if table:
            return table
        tables = export_tables(self.target, self.conn, export_id)
        if len(tables) > 1:
            raise TdtpError(
                f"export {export_id} is in tables {', '.join(tables)}: say which one (--table)",
                where=export_id,
            )
        return tables[0] if tables else ""

    def finalize(self, export_id: str, table: str | None = None) -> FinalizeResult:
        """Publish an export if it is complete (idempotent); otherwise say what it waits for."""
        return finalize_export(
            self.target,
            self.conn,
            export_id,
            self.table_of(export_id, table),
            publish_wait=self.options.publish_wait_seconds,
            abandon_after=self.options.abandon_after_seconds,
        )

    def status(self, export_id: str, table: str | None = None) -> ExportStatus:
        """An export's state in one target table, as committed (see :func:`tdtp.importer.status.read_status`)."""
        return read_status(self.target, self.conn, export_id, self.table_of(export_id, table))

    def reset(self, export_id: str, table: str | None = None, *, force: bool = False) -> int:
        """Forget an export in a table so that the next import lands it from scratch; returns dead letters settled.

        What a user does after a conflicting duplicate (remove the wrong copy, reset,
        import again): the export's ledger rows, staged rows and load table go, and its
        open dead letters are settled as "reset".  Rows already published stay; the
        next import of the export replaces them (replace mode).  A published append or
        upsert export is refused unless ``force``: importing it again would add its rows twice.
        """
        table = self.table_of(export_id, table)
        return reset_export(self.target, self.conn, export_id, table, force=force)

    def partition_rows(self, export_id: str, table: str | None = None) -> int | None:
        """Rows now in the target table for the export's partition (None: export or table missing).

        What a row-count check compares with the summary's TotalRows.
        """
        table = table or self.options.table or self.status(export_id).table or None
        if table is None:
            return None
        # A connection of its own, without creating bookkeeping: a read must not write.
        try:
            conn = self.target.connect(lock_timeout=self.options.lock_timeout_seconds)
        except TdtpError:
            return None
        try:
            return partition_rows(self.target, conn, export_id, table)
        finally:
            conn.close()

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
                    table_hint=d.table_name,
                    dead_letter_id=d.id,
                )

        return self._run(replay=True).run(items(), files=False)


def export_status(target_url: str, export_id: str, table: str | None = None) -> ExportStatus:
    """``tdtp status``: an export's progress in a target table, read from committed bookkeeping."""
    with ParallelImporter(target_url, ImportOptions(workers=1, table=table)) as importer:
        return importer.status(export_id)
