"""PostgreSQL side of ``bench/peers.py``: the source table, the target reset, and the checks a
run is judged by."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import psycopg
from peers_common import CHECK_SQL, COLUMNS, DLT_DATASET, SOURCE_DB, TARGET


def source_table(rows: int) -> str:
    return f"peers_src_{rows}"


def ensure_source(src: str, rows: int) -> None:
    """Create the source table unless it is there with ``rows`` rows (deterministic contents)."""
    name = source_table(rows)
    with psycopg.connect(src, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
        if found and conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == rows:
            return
        print(f"creating {name} in {SOURCE_DB} ...", file=sys.stderr, flush=True)
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} ({COLUMNS})")
        conn.execute(
            f"""INSERT INTO {name}
            SELECT g,
                   (g % 1000)::int,
                   ((g * 7919) % 1000000) / 100.0,
                   md5(g::text),
                   timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second',
                   g % 2 = 0,
                   g * 0.25::float8,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE 'item ' || (g % 97) END
            FROM generate_series(1::bigint, {int(rows)}::bigint) AS g"""
        )
        conn.execute(f"VACUUM ANALYZE {name}")


def table_check(url: str, table: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(CHECK_SQL.format(table)).fetchone()
    return tuple(Decimal(v) if isinstance(v, Decimal) else v for v in row)


def has_primary_key(url: str, table: str) -> bool:
    with psycopg.connect(url) as conn:
        return bool(
            conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p')",
                (table,),
            ).fetchone()[0]
        )


def copy_text_bytes(src: str, table: str) -> int:
    total = 0
    with psycopg.connect(src) as conn, conn.cursor() as cur, cur.copy(f"COPY {table} TO STDOUT") as copy:
        for data in copy:
            total += len(data)
    return total


def reset_target(tgt: str) -> None:
    """Drop whatever any contender left in the target database, then checkpoint."""
    with psycopg.connect(tgt, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
                (TARGET + "%",),
            ).fetchall()
        ]
        for name in names:
            conn.execute(f'DROP TABLE IF EXISTS public."{name}" CASCADE')
        for schema in ("tdtp", DLT_DATASET, DLT_DATASET + "_staging"):
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute("CHECKPOINT")  # every run starts without the previous run's dirty pages
