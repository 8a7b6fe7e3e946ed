#!/usr/bin/env bash
# Install, then run the demo chain on embedded defaults (SQLite source generated on first use,
# file spool, SQLite warehouse; no server), then serve the Dagster UI.
#   bash scripts/demo.sh              # chain for one day, then `dg dev` on http://127.0.0.1:3000
#   bash scripts/demo.sh --headless   # chain only
#   DEMO_PARTITION=2026-01-12 bash scripts/demo.sh --headless
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .

export TDTP_HOME="${TDTP_HOME:-$PWD/.tdtp}"
export DAGSTER_HOME="${DAGSTER_HOME:-$TDTP_HOME/dagster_home}"
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"

partition="${DEMO_PARTITION:-2026-01-07}"
echo "demo: exporting and importing orders for $partition (the first run generates 1M demo rows)"
# Both assets in one run: a copy run (export, land while exporting, publish, checks).
.venv/bin/dg launch --assets 'tdtp/export/orders_export,tdtp/import/orders' --partition "$partition"

.venv/bin/python - "$TDTP_HOME" "$partition" <<'PY'
import sqlite3, sys
home, day = sys.argv[1], sys.argv[2]
with sqlite3.connect(f"{home}/demo.db") as src, sqlite3.connect(f"{home}/warehouse.db") as dst:
    q = "SELECT count(*) FROM orders WHERE created_at >= ? AND created_at < date(?, '+1 day')"
    a, b = src.execute(q, (day, day)).fetchone()[0], dst.execute(q, (day, day)).fetchone()[0]
print(f"demo: orders {day}: {a} rows in the source, {b} in the warehouse")
sys.exit(0 if a == b else 1)
PY

if [ "${1:-}" != "--headless" ]; then
  echo "demo: starting dg dev on http://127.0.0.1:3000 (Ctrl-C to stop)"
  exec .venv/bin/dg dev -h 127.0.0.1 -p 3000
fi
