"""Fixtures of the end-to-end tests that run Dagster's own processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest


@pytest.fixture()
def dagster_pg_url(pg_url: str) -> Iterator[str]:
    """A database of its own for Dagster's storage (runs, events, schedules), dropped afterwards.

    Shared by the webserver, the daemon, run workers and Celery workers through
    ``DAGSTER_PG_URL``; in the ``postgresql+psycopg2://`` form dagster-postgres takes.
    """
    base, _, _ = pg_url.rpartition("/")
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg2://", 1)
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
