"""Parts fill their budget: a streaming export of a PostgreSQL table through ``tdtp export``
gives parts near ``--part-bytes``, not half of it.

Before the runs were sized for 95% of the budget (tdtp/parts.py ``_SIZER_AIM``), a run
sized from the last part's ratio overshot about every other time and was encoded again as
two halves: on this table most parts came out at 50% of the budget, twice as many parts
as needed, each run compressed twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

BUDGET = 300_000
RAMP = 4  # the first parts are small on purpose: the first one leaves early (tdtp/parts.py)


def test_streamed_parts_past_the_ramp_fill_their_budget(
    pg_url: str, pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    table = f"sizing_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(
        f"CREATE TABLE {table} AS SELECT i AS id, (i * 7919) % 100000 AS customer_id,"
        " round((i % 1000) * 1.37, 2)::numeric(12,2) AS amount, md5(i::text) AS note,"
        " timestamptz '2026-01-01' + i * interval '1 second' AS created_at, i % 2 = 0 AS flag,"
        " (i % 97) / 4.0::float8 AS score, 'item ' || i AS label FROM generate_series(1, 200000) i"
    )
    try:
        out = tmp_path / "parts"
        proc = subprocess.run(
            [sys.executable, "-m", "tdtp.cli", "export", "--source", pg_url, "--table", table,
             "--to", str(out), "--mode", "stream", "--part-bytes", str(BUDGET), "--quiet"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["rows"] == 200_000
        sizes = [
            p.stat().st_size
            for p in sorted(out.glob("*_part_*"), key=lambda p: int(p.stem.rpartition("_")[2].split(".")[0]))
        ]
        assert len(sizes) == result["parts"]
        full = sizes[RAMP:-1]
        assert full and max(sizes) <= BUDGET
        assert min(full) >= 0.85 * BUDGET, f"parts past the ramp: {sorted(full)[:5]} ... of {BUDGET}"
    finally:
        pg_conn.execute(f"DROP TABLE {table}")
