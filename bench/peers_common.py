"""The vocabulary of ``bench/peers.py``: its databases, table names, contenders and labels, the
context a contender runs in and the exception that skips one.  The ``peers_*`` modules are
imported by ``bench/peers.py``, run as a script, so this directory is on ``sys.path``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS_SCRIPT = ROOT / "bench" / "peers.py"  # children are this script run again with --child

DEFAULT_ADMIN = os.environ.get("TDTP_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_RABBITMQ = os.environ.get("TDTP_BENCH_RABBITMQ", "rabbitmq://guest:guest@127.0.0.1:5672")
SOURCE_DB = "tdtp_bench"
TARGET_DB = "tdtp_bench_target"
TARGET = "peers_dst"
DLT_DATASET = "peers_dlt"
COLUMNS = (
    "id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2) NOT NULL, "
    "note text NOT NULL, created_at timestamptz NOT NULL, flag boolean NOT NULL, "
    "score double precision NOT NULL, label text"
)
CHECK_SQL = "SELECT count(*), coalesce(sum(id), 0), count(label), coalesce(sum(amount), 0) FROM {}"

CONTENDERS = (
    "copy_psql",
    "copy_psycopg",
    "tdtp_spool_seq",
    "tdtp_spool_pipe",
    "tdtp_rabbitmq",
    "sling",
    "dlt",
)
LABELS = {
    "copy_psql": "COPY pipe: psql | psql",
    "copy_psycopg": "COPY pipe: psycopg",
    "tdtp_spool_seq": "tdtp spool, sequential",
    "tdtp_spool_pipe": "tdtp spool, pipelined",
    "tdtp_rabbitmq": "tdtp RabbitMQ stream, pipelined",
    "sling": "Sling",
    "dlt": "dlt",
}


class Skip(Exception):
    """The contender cannot run here (tool missing); the message says why."""


@dataclass
class Ctx:
    src: str
    tgt: str
    rows: int
    table: str
    rabbitmq: str
    workers: int | None
    timeout: float
    tmp: Path
    dlt_backend: str
    copy_bytes: int = 0
    expected: tuple[Any, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)
