"""Row writers: PostgreSQL (COPY), SQLite (executemany), CSV / JSON / JSONL files.

``open_sink(url)`` picks the backend from the URL scheme.  Every sink takes either
row lines (``write_lines``: the text of decoded packets, markers from the schema, the
importer's path) or Python rows (``write_rows``).  Database sinks keep one
transaction: ``commit()`` ends it, and a clean ``with`` exit commits.

The parallel importer does not use these classes: it calls the connection-level
functions ``tdtp.sinks.postgres.copy_lines`` and ``tdtp.sinks.sqlite.write_rows``
inside its own transactions, next to its ledger writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from tdtp.packet import Schema, TdtpError
from tdtp.urls import CSV, JSON, JSONL, POSTGRESQL, SQLITE, parse_url

__all__ = ["Sink", "open_sink"]


@runtime_checkable
class Sink(Protocol):
    """Where rows land; a context manager."""

    def create_table(self, schema: Schema, table: str, *, if_not_exists: bool = True) -> None: ...

    def write_lines(self, schema: Schema, table: str, lines: Iterable[str]) -> int: ...

    def write_rows(self, schema: Schema, table: str, rows: Iterable[Sequence[Any]]) -> int: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Sink: ...

    def __exit__(self, *exc: object) -> None: ...


def open_sink(url: str) -> Sink:
    """Open the sink a URL names (file sinks create/overwrite the file on first write)."""
    parsed = parse_url(url)
    if parsed.scheme == POSTGRESQL:
        from tdtp.sinks.postgres import PostgresSink

        return PostgresSink(parsed)
    if parsed.scheme == SQLITE:
        from tdtp.sinks.sqlite import SqliteSink

        return SqliteSink(parsed)
    if parsed.scheme in (CSV, JSON, JSONL):
        from tdtp.sinks.files import FileSink

        return FileSink(parsed)
    raise TdtpError(f"no sink for URL scheme {parsed.scheme!r}")  # pragma: no cover - parse_url guards
