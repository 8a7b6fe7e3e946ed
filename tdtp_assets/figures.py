"""Materialization metadata: the same figures on every export and import materialization.

``dagster/row_count`` is Dagster's own key (the UI charts it); the rest are the
engine's transfer figures, so a user compares a Dagster run with a CLI run directly.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from tdtp.importer import ExportStatus
from tdtp_assets.table_meta import SIZE_BYTES


def _f(value: Any, digits: int = 3) -> dg.MetadataValue:
    return dg.MetadataValue.float(round(float(value or 0.0), digits))


def _i(value: Any) -> dg.MetadataValue:
    return dg.MetadataValue.int(int(value or 0))


def transfer_metadata(stats: dict[str, Any], *, rows: int) -> dict[str, Any]:
    """Rows, parts, size in bytes, throughput, first-part latency, peak RSS, duplicates, retries, dead letters."""
    return {
        "dagster/row_count": _i(rows),
        "parts": _i(stats.get("parts")),
        # Encoded bytes of the parts, under Dagster's size key: the UI shows "1.9MB".
        SIZE_BYTES: _i(stats.get("bytes")),
        "rows_per_second": _f(stats.get("rows_per_second"), 1),
        "mb_per_second": _f(stats.get("mb_per_second"), 2),
        "seconds": _f(stats.get("seconds"), 4),  # the rate above is rows / these seconds
        "first_part_seconds": _f(stats.get("first_part_seconds")),
        "peak_rss_mb": _f(stats.get("peak_rss_mb"), 1),
        "duplicates": _i(stats.get("duplicates")),
        "retries": _i(stats.get("retries")),
        "dead_letters": _i(stats.get("dead_letters")),
    }


def export_figures(run: dict[str, Any], export_id: str) -> dict[str, Any]:
    """A land run's figures (``ImportStats.as_dict``) narrowed to one export's share of it.

    Parts, rows, bytes and seconds become the export's own (the time its parts were in
    work), so the throughput recorded for a partition is that partition's, not the
    run's.  Incident counts and memory stay the run's.  Without a share (figures from
    an engine before per-export shares) the run's figures are returned as they are.
    """
    share = (run.get("per_export") or {}).get(export_id)
    if not share:
        return run
    return {
        **run,
        "parts_imported": share["parts"],
        "total_rows": share["rows"],
        "bytes": share["bytes"],
        "seconds": share["seconds"],
        "rows_per_second": share["rows_per_second"],
    }


def import_metadata(
    status: ExportStatus,
    figures: dict[str, Any],
    *,
    rows_in_target: int | None,
    export: dict[str, Any],
    finalize: dict[str, Any],
    publish_seconds: float,
) -> dict[str, Any]:
    """Metadata of an import materialization: the transfer figures plus the export's state."""
    # Rows and parts are the export's own (from the ledger); bytes are the parts' sizes as
    # exported; time is what the runs that landed them spent.
    seconds = float(figures.get("seconds") or 0.0)
    rows = status.rows_in_ledger
    nbytes = int(export.get(SIZE_BYTES) or export.get("bytes") or 0)  # "bytes": before issue 13
    meta = transfer_metadata(
        {
            **figures,
            "parts": status.parts_in_ledger,
            "bytes": nbytes,
            "rows_per_second": rows / seconds if seconds else 0.0,
            "mb_per_second": nbytes / 1e6 / seconds if seconds else 0.0,
            "dead_letters": max(len(status.dead_letters), int(figures.get("dead_letters") or 0)),
        },
        rows=rows_in_target if rows_in_target is not None else status.published_rows,
    )
    meta.update(
        {
            "export_id": status.export_id,
            "state": status.state,
            "published": dg.MetadataValue.bool(status.finalized),
            "total_parts": _i(status.total_parts),
            "total_rows": _i(status.total_rows),
            "rows_in_ledger": _i(status.rows_in_ledger),
            "published_rows": _i(status.published_rows),
            "missing_parts": ", ".join(str(p) for p in status.missing_parts[:50]),
            "open_dead_letters": _i(len(status.dead_letters)),
            "checksum": status.checksum_expected or "",
            "land_runs": _i(figures.get("land_runs")),
            "publish_seconds": _f(publish_seconds),
            "export_seconds": _f(export.get("seconds")),
        }
    )
    if finalize.get("reason"):
        meta["finalize_reason"] = str(finalize["reason"])
    if status.note:
        meta["note"] = status.note
    return meta
