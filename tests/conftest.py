"""Shared fixtures: real PostgreSQL and RabbitMQ from the machine, Tansu started per session.

Every test that needs PostgreSQL gets its own throw-away database, created here and
dropped at the end, so tests never see each other's tables.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.broker_support import deleted_after

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_dagster"]

PG_ADMIN_URL = os.environ.get("TDTP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ_URL_BASE = os.environ.get("TDTP_TEST_RABBITMQ", "rabbitmq://guest:guest@127.0.0.1:5672")


def _pg_url_for(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session (dropped afterwards)."""
    dbname = f"tdtp_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield _pg_url_for(dbname)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture()
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture()
def pg_schema(pg_conn: psycopg.Connection) -> Iterator[str]:
    """A schema of its own for one test, dropped with everything in it afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    pg_conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        pg_conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """Base URL of the machine's RabbitMQ; append ``/STREAM?queue_type=...``."""
    if not port_open("127.0.0.1", 5672):
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672 (.ci/run starts it)")
    return RABBITMQ_URL_BASE


@pytest.fixture()
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture()
def rabbitmq_stream(rabbitmq_url: str, unique_name: str) -> Iterator[str]:
    """``rabbitmq://…/<unique_name>?queue_type=stream``: a stream of the test's own, deleted when it ends."""
    with deleted_after(f"{rabbitmq_url}/{unique_name}?queue_type=stream") as url:
        yield url
