"""How the importer tells failures apart, and how it words them.

Retrying is worth it only for failures of the moment (a lost connection, a lock
timeout, a busy SQLite file); the same bytes hit every other failure again, so
those dead-letter at once.  Both the workers and the publisher ask
:func:`is_retryable`; every message a user reads about a refused value goes
through :func:`describe_pg_error`, so the COPY line and column of a bad value are
always named the same way.
"""

from __future__ import annotations

import sqlite3

import psycopg

from tdtp.packet import TdtpError


class TargetUnavailable(TdtpError):
    """The target could not be reached: worth retrying."""


class PublishError(TdtpError):
    """The target refused a part's rows while publishing (bad value, constraint, key conflict)."""

    def __init__(self, part: int, message: str, *, where: str = "") -> None:
        super().__init__(message, where=where or f"part {part}")
        self.part = part

    def at(self, where: str) -> PublishError:
        return PublishError(self.part, self.message, where=f"{where}: {self.where}")


def is_db_error(exc: BaseException | None) -> bool:
    """An error raised by either target driver."""
    return isinstance(exc, (sqlite3.Error, psycopg.Error))


def is_retryable(exc: BaseException) -> bool:
    """True for failures of the moment; False for what the same bytes would hit again."""
    if isinstance(exc, TargetUnavailable):
        return True
    if isinstance(exc, TdtpError):
        # Driver errors arrive wrapped (once or twice); a wrapped lock timeout is still transient.
        cause = exc.__cause__
        if isinstance(cause, TdtpError):
            return is_retryable(cause)
        return is_db_error(cause) and is_retryable(cause)
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text
    if isinstance(exc, sqlite3.Error):
        return False
    if isinstance(exc, psycopg.OperationalError):
        return True  # connection lost, lock timeout, deadlock, serialization failure, shutdown
    # Other driver errors (bad value, constraint, undefined column) recur with the same part.
    return not isinstance(exc, psycopg.Error)


def is_transient_db_error(exc: BaseException) -> bool:
    """A driver error worth retrying (what a publish retries; anything else ends it)."""
    return is_db_error(exc) and is_retryable(exc)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, or its class name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe_pg_error(exc: psycopg.Error) -> str:
    """The server's message plus its context (the COPY line and column of a bad value)."""
    diag = exc.diag
    text = diag.message_primary or first_line(exc)
    if diag.message_detail:
        text += f" ({diag.message_detail.strip()})"
    if diag.context:
        text += f" [{diag.context.strip().splitlines()[0]}]"
    return text


def error_text(exc: BaseException, source: str) -> str:
    """One line naming where and what, for dead letters and the run's error list."""
    if isinstance(exc, TdtpError):
        text = str(exc)
        return text if source in text else f"{source}: {text}"
    return f"{source}: {type(exc).__name__}: {first_line(exc)}"
