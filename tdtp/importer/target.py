"""The target database of an import: dialect, connections and where bookkeeping lives.

Bookkeeping (ledger, exports, dead letters, staging tables) lives in the target
database itself so that a part's rows and its ledger row commit together.  On
PostgreSQL it sits in its own schema ``tdtp`` (out of the way of users' schemas,
one place to grant or drop); on SQLite, which has no schemas, in the main
database with the same ``_tdtp_`` table names.  SQL in this package is written
with ``%s`` placeholders; :meth:`Target.sql` turns them into ``?`` for SQLite.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any

from tdtp.packet import TdtpError
from tdtp.sinks.ddl import POSTGRESQL, SQLITE, qualified, quote_ident
from tdtp.urls import parse_url

BOOK_SCHEMA = "tdtp"
LEDGER = "_tdtp_ledger"
EXPORTS = "_tdtp_exports"
DEAD_LETTERS = "_tdtp_dead_letters"
STAGE_PREFIX = "_tdtp_stage_"
STAGE_PARTS = "_tdtp_stage_parts"


@dataclass(frozen=True)
class Target:
    """A parsed target URL; cheap to pickle into worker processes."""

    url: str
    dialect: str
    path: str = ""

    @classmethod
    def parse(cls, url: str) -> Target:
        parsed = parse_url(url)
        if parsed.scheme == POSTGRESQL:
            return cls(url=url, dialect=POSTGRESQL)
        if parsed.scheme == SQLITE:
            return cls(url=url, dialect=SQLITE, path=parsed.path)
        raise TdtpError(
            f"cannot import into {parsed.redacted!r}: targets are postgresql://... or sqlite:///...",
            where="--target",
        )

    @property
    def is_pg(self) -> bool:
        return self.dialect == POSTGRESQL

    @property
    def redacted(self) -> str:
        return parse_url(self.url).redacted

    def connect(self, *, lock_timeout: float = 30.0, autocommit: bool = True) -> Any:
        """An autocommit connection: every transaction in this package is explicit.

        ``autocommit=False`` (PostgreSQL) is for the publisher, whose one
        transaction stays open across many statements and threads' hand-offs.
        """
        if self.is_pg:
            import psycopg

            try:
                conn = psycopg.connect(self.url, autocommit=autocommit)
            except psycopg.OperationalError as exc:
                raise TdtpError(f"cannot connect to {self.redacted}: {exc}".strip()) from exc
            conn.execute(f"SET lock_timeout = {int(lock_timeout * 1000)}")
            if not autocommit:
                conn.commit()
            return conn
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=lock_timeout, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise TdtpError(f"cannot open {self.redacted}: {exc}") from exc
        return conn

    # ------------------------------------------------------------------ names
    def book(self, table: str) -> str:
        """Quoted name of a bookkeeping (or staging) table."""
        if self.is_pg:
            return f"{quote_ident(BOOK_SCHEMA)}.{quote_ident(table)}"
        return quote_ident(table, dialect=SQLITE)

    def table(self, name: str) -> str:
        """Quoted name of a user table (``schema.table`` on PostgreSQL)."""
        return qualified(name, dialect=self.dialect)

    def ident(self, name: str) -> str:
        return quote_ident(name, dialect=self.dialect, what="column")

    def sql(self, text: str) -> str:
        return text if self.is_pg else text.replace("%s", "?")

    # ------------------------------------------------------------- execution
    def execute(self, conn: Any, text: str, params: tuple | list = ()) -> Any:
        """Run one statement and return its cursor (both drivers' cursors fetch the same way)."""
        return conn.execute(self.sql(text), params)

    def transaction(self, conn: Any) -> Any:
        """A context manager around one transaction, for either driver."""
        if self.is_pg:
            return conn.transaction()
        return _SqliteTransaction(conn)


def stage_name(export_id: str, table: str) -> str:
    """Staging table of one export into one table: a stable name any process can compute."""
    digest = hashlib.sha1(f"{export_id}\0{table}".encode()).hexdigest()[:16]
    return f"{STAGE_PREFIX}{digest}"


class _SqliteTransaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``/``ROLLBACK``: take the write lock up front.

    IMMEDIATE avoids the deadlock where two readers both try to upgrade to writers.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
