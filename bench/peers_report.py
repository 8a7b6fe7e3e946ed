"""The table ``bench/peers.py`` prints at the end: medians, rates and ratios per contender."""

from __future__ import annotations

import statistics

from peers_common import LABELS, Ctx


def fmt_ratio(seconds: float | None, ref: float | None) -> str:
    if seconds is None or not ref:
        return "-"
    return f"{seconds / ref:.2f}x"


def report(ctx: Ctx, order: list[str], times: dict[str, list[float]], failed: dict[str, str]) -> None:
    med = {k: statistics.median(v) for k, v in times.items() if v}
    pipes = [med[k] for k in ("copy_psql", "copy_psycopg") if k in med]
    anchor = min(pipes) if pipes else None
    anchor_name = next((k for k in ("copy_psql", "copy_psycopg") if k in med and med[k] == anchor), None)
    sling, dlt = med.get("sling"), med.get("dlt")
    mb = f"{ctx.copy_bytes / 1e6:.1f}"
    print()
    print(
        f"end-to-end copy of {ctx.rows:,} rows ({mb} MB as COPY text), PostgreSQL -> PostgreSQL; "
        f"median of {max((len(v) for v in times.values()), default=0)} run(s); "
        f"ratios = seconds / reference seconds (anchor: {LABELS.get(anchor_name or '', '-')})"
    )
    head = ("contender", "seconds", "runs", "rows/s", "MB/s", "x copy", "x sling", "x dlt", "pk")
    rows: list[tuple[str, ...]] = []
    for key in order:
        label = LABELS[key]
        if key in med:
            s = med[key]
            rows.append(
                (
                    label,
                    f"{s:.2f}",
                    " ".join(f"{t:.2f}" for t in times[key]),
                    f"{ctx.rows / s:,.0f}",
                    f"{ctx.copy_bytes / 1e6 / s:.1f}",
                    fmt_ratio(s, anchor),
                    fmt_ratio(s, sling),
                    fmt_ratio(s, dlt),
                    ctx.notes.get(f"pk:{key}", "?"),
                )
            )
    widths = [
        max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(len(head))
    ]
    line = "  ".join(h.ljust(widths[i]) if i in (0, 2) else h.rjust(widths[i]) for i, h in enumerate(head))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(widths[i]) if i in (0, 2) else c.rjust(widths[i]) for i, c in enumerate(r)))
    for key in order:
        if key in failed:
            print(f"{LABELS[key]}: {failed[key]}")
    for key, note in sorted(ctx.notes.items()):
        if key.startswith("note:"):
            print(f"{LABELS[key[5:]]}: seconds inside its process, Python and imports excluded:{note}")
