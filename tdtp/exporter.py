"""Export a source to part files or to a broker's part log, measuring as it goes.

This is the one place that wires ``sources -> parts -> destination``; the CLI and the
Dagster export asset both call it, so the figures a user sees are the same in both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from tdtp.brokers.headers import EXPORT_ID, KIND, KIND_SUMMARY, PART, PARTITION, ROWS, TABLE, TOTAL_PARTS
from tdtp.metrics import Progress, TransferStats, peak_rss_mb
from tdtp.packet import Schema, Summary, TdtpError
from tdtp.part_files import part_file_name, part_files_glob, summary_file_name
from tdtp.parts import Part, PartOptions, build_parts


class LineSource(Protocol):
    name: str
    schema: Schema

    def lines(self) -> Iterator[str]: ...

    def blocks(self) -> Iterator[bytes]: ...


class PartSink(Protocol):
    def publish(self, body: bytes, headers: dict[str, str]) -> int: ...


def _run(
    source: LineSource,
    options: PartOptions,
    deliver: Callable[[Part], None],
    finish: Callable[[Summary], None],
    *,
    export_id: str | None,
    partition: str,
    progress: Progress | None,
    table: str | None = None,
    partition_filter: dict[str, str] | None = None,
    spool_dir: Path | None = None,
    before_first_publish: Callable[[], None] | None = None,
) -> TransferStats:
    started = time.perf_counter()
    stats = TransferStats(table=table or source.name, partition=partition)
    for item in build_parts(
        source.schema,
        blocks=source.blocks(),
        checked=True,  # every Source refuses values XML cannot carry
        table=stats.table,
        export_id=export_id,
        options=options,
        partition=partition,
        summary_extra={"partition_filter": partition_filter} if partition_filter else None,
        spool_dir=spool_dir,
    ):
        if isinstance(item, Summary):
            finish(item)
            stats.export_id = item.export_id
            stats.checksum = item.checksum
            break
        if stats.first_publish_at is None:
            if before_first_publish is not None:
                before_first_publish()
            stats.first_publish_at = time.time()
        deliver(item)
        if stats.first_part_seconds is None:
            stats.first_part_seconds = time.perf_counter() - started
        stats.rows += item.rows
        stats.parts += 1
        stats.bytes += len(item.body)
        stats.raw_bytes += item.raw_bytes
        if progress:
            progress.update(stats.rows, stats.parts)
        del item  # delivered: the next part is built without this one's body still held
    stats.seconds = time.perf_counter() - started
    stats.peak_rss_mb = peak_rss_mb()
    if progress:
        progress.update(stats.rows, stats.parts, force=True)
    return stats


def export_to_dir(
    source: LineSource,
    out_dir: str | Path,
    *,
    options: PartOptions | None = None,
    base_name: str | None = None,
    export_id: str | None = None,
    partition: str = "",
    progress: Progress | None = None,
    partition_filter: dict[str, str] | None = None,
    table: str | None = None,
    overwrite: bool = False,
) -> TransferStats:
    """Write numbered part files (and, in stream mode, a summary file) into ``out_dir``.

    A batch export keeps its finished parts in a temporary file in ``out_dir`` until
    the last one is known: on the disk the parts go to anyway, not in memory.

    Part files an earlier export of the same name left there would be imported with
    the new ones (a directory import takes every export it finds), so they are refused
    unless ``overwrite`` removes them first.
    """
    options = options or PartOptions()
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    base = base_name or f"{_safe_file_stem(table or source.name)}.tdtp.xml"
    _clear_earlier_export(directory, base, overwrite)
    ends: dict[str, str] = {}  # the first and the last part file's names

    def deliver(part: Part) -> None:
        # Batch parts know their total (a lone part keeps the plain name, as Go does).
        path = directory / part_file_name(base, part.number, part.total_parts)
        _write_atomically(path, part.body)
        ends.setdefault("first_file", path.name)
        ends["last_file"] = path.name

    def finish(summary: Summary) -> None:
        if not options.batch:
            _write_atomically(directory / summary_file_name(base), summary.to_json())

    stats = _run(
        source,
        options,
        deliver,
        finish,
        export_id=export_id,
        partition=partition,
        progress=progress,
        table=table,
        partition_filter=partition_filter,
        spool_dir=directory,
    )
    # The directory and how many part files, not every path: thousands at 100M rows.
    stats.extra.update(directory=str(directory), part_files=stats.parts, **ends)
    if not options.batch:
        stats.extra["summary_file"] = summary_file_name(base)
    return stats


def export_to_log(
    source: LineSource,
    log: PartSink,
    *,
    options: PartOptions | None = None,
    export_id: str | None = None,
    partition: str = "",
    table: str | None = None,
    progress: Progress | None = None,
    partition_filter: dict[str, str] | None = None,
    before_first_publish: Callable[[], None] | None = None,
) -> TransferStats:
    """Publish every part (confirmed by the broker) and then the summary message.

    ``partition_filter`` (``{"column", "kind", "value"}``) travels in the summary so the
    importer's replace mode removes exactly that partition's old rows from the target.
    ``before_first_publish`` runs once the first part is built, before it is handed
    over (``tdtp copy`` waits there for its lander: the source is read meanwhile); it
    may raise to stop the export with nothing published.
    """
    options = options or PartOptions()

    def deliver(part: Part) -> None:
        log.publish(part.body, part.headers())

    def finish(summary: Summary) -> None:
        log.publish(
            summary.to_json(),
            {
                KIND: KIND_SUMMARY,
                EXPORT_ID: summary.export_id,
                TABLE: summary.table,
                PARTITION: summary.partition,
                PART: "0",
                ROWS: str(summary.total_rows),
                TOTAL_PARTS: str(summary.total_parts),
            },
        )

    return _run(
        source,
        options,
        deliver,
        finish,
        export_id=export_id,
        partition=partition,
        progress=progress,
        table=table,
        partition_filter=partition_filter,
        before_first_publish=before_first_publish,
    )



def _clear_earlier_export(directory: Path, base: str, overwrite: bool) -> None:
    candidates = {
        directory / base,
        directory / summary_file_name(base),
        *directory.glob(part_files_glob(base)),
    }
    earlier = sorted(p for p in candidates if p.exists())
    if not earlier:
        return
    if not overwrite:
        raise TdtpError(
            f"holds {len(earlier)} file(s) of an earlier export ({earlier[0].name}, ...); "
            "remove them, choose another directory, or pass --overwrite",
            where=str(directory),
        )
    for path in earlier:
        path.unlink()


def _safe_file_stem(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return cleaned.strip(".") or "export"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
