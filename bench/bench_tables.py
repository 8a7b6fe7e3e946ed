"""The benchmark table and databases, shared by the bench scripts (run as scripts, so this
directory is on ``sys.path``)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg


def db_url(admin: str, name: str) -> str:
    """The admin URL pointed at database ``name``."""
    return urlunsplit(urlsplit(admin)._replace(path="/" + name))


def ensure_db(admin: str, name: str) -> str:
    """Create database ``name`` if missing; return its URL."""
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return db_url(admin, name)


def ensure_mixed_table(pg: str, name: str, rows: int) -> None:
    """A deterministic mixed-type table: ints, numeric, md5 text, timestamptz, bool, float8,
    and a text column that is NULL in every tenth row.  Kept between runs when complete."""
    with psycopg.connect(pg, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
        if found and conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == rows:
            return
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(
            f"""CREATE TABLE {name} AS
            SELECT g AS id,
                   g % 1000 AS customer_id,
                   ((g * 7919) % 1000000) / 100.0 AS amount,
                   md5(g::text) AS note,
                   timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
                   g % 2 = 0 AS flag,
                   g * 0.25::float8 AS score,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE 'item ' || (g % 97) END AS label
            FROM generate_series(1::bigint, {int(rows)}) AS g"""
        )
        conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
        conn.execute(f"VACUUM ANALYZE {name}")
