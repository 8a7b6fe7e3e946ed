"""The demo source: a deterministic SQLite database generated on first use.

The demo must work offline with no configuration, so its source cannot be downloaded
or shipped (1M rows is too big for the repository).  It is generated in SQL by a
recursive CTE inside one transaction — a couple of seconds — into a temporary file
that is renamed into place, so two runs that start at once never see half a database.

Every value is a pure function of the row number: two machines generate the same
bytes, and a test can compute what any partition must contain.

It lives in ``resources`` because the source resource (``resources/databases.py``)
generates it on first use, and resources sit below the assets and the sensor: the
module is plain ``sqlite3`` with no Dagster in it, so anything above may read it too
(tests, ``bench/dagster.py``).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

ORDERS_ROWS = 1_000_000
START_DAY = dt.date(2026, 1, 1)
DAYS = 30
CUSTOMERS_ROWS = 30_000
PRODUCTS_ROWS = 500
REGIONS = ("eu", "us", "apac")
STATUSES = ("new", "paid", "shipped", "delivered", "returned")

# Seconds between consecutive orders: 1M orders spread evenly over 30 days.
_STEP = DAYS * 86_400 / ORDERS_ROWS

_SCHEMA = """
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    customer_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    status TEXT NOT NULL,
    note TEXT
);
CREATE INDEX orders_created_at ON orders (created_at);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    email TEXT,
    since DATE NOT NULL,
    vip BOOLEAN NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    price DECIMAL(10,2) NOT NULL,
    weight REAL
);
"""

# Values come from multiplicative hashing of the row number (fast, deterministic, spread).
_ORDERS = f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {ORDERS_ROWS})
INSERT INTO orders
SELECT i + 1,
       strftime('%Y-%m-%d %H:%M:%S', '{START_DAY.isoformat()}', '+' || CAST(i * {_STEP!r} AS INTEGER) || ' seconds'),
       (i * 7919) % {CUSTOMERS_ROWS} + 1,
       (i * 104729) % {PRODUCTS_ROWS} + 1,
       (i * 31) % 7 + 1,
       printf('%.2f', ((i * 2654435761) % 100000) / 100.0),
       CASE (i * 13) % 5 {" ".join(f"WHEN {k} THEN '{s}'" for k, s in enumerate(STATUSES))} END,
       CASE WHEN i % 10 = 0 THEN NULL
            WHEN i % 10 = 1 THEN 'gift | wrap \\ "fragile" <ok> & fast'
            ELSE 'order ' || (i + 1) END
FROM n
"""

_CUSTOMERS = f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {CUSTOMERS_ROWS})
INSERT INTO customers
SELECT i + 1,
       'Customer ' || (i + 1),
       CASE i % 3 {" ".join(f"WHEN {k} THEN '{r}'" for k, r in enumerate(REGIONS))} END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 'c' || (i + 1) || '@example.com' END,
       date('2020-01-01', '+' || ((i * 37) % 2000) || ' days'),
       (i % 11 = 0)
FROM n
"""

_PRODUCTS = f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {PRODUCTS_ROWS})
INSERT INTO products
SELECT i + 1, 'Product ' || (i + 1), printf('%.2f', 1 + ((i * 7877) % 50000) / 100.0), ((i * 17) % 1000) / 10.0
FROM n
"""


def demo_partition_days() -> list[str]:
    """The daily partition keys that hold demo orders."""
    return [(START_DAY + dt.timedelta(days=d)).isoformat() for d in range(DAYS)]


def expected_orders_on(day: str) -> int:
    """Rows the demo ``orders`` table has on one day (computed, not queried)."""
    start = (dt.date.fromisoformat(day) - START_DAY).days * 86_400
    end = start + 86_400

    def first_at_or_after(second: int) -> int:
        # Smallest i with int(i * step) >= second, clamped to the table.
        i = max(int(second / _STEP) - 2, 0)
        while i < ORDERS_ROWS and int(i * _STEP) < second:
            i += 1
        return min(i, ORDERS_ROWS)

    return first_at_or_after(end) - first_at_or_after(start)


def ensure_demo_db(path: str | Path) -> bool:
    """Create the demo database at ``path`` unless it exists; True when it was generated now."""
    target = Path(path)
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.executescript(_SCHEMA)
        with conn:
            conn.execute(_ORDERS)
            conn.execute(_CUSTOMERS)
            conn.execute(_PRODUCTS)
    finally:
        conn.close()
    if target.exists():  # another process won the race; its file is identical
        tmp.unlink(missing_ok=True)
        return False
    os.replace(tmp, target)
    return True
