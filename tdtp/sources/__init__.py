"""Streaming row readers: PostgreSQL, SQLite, CSV, JSON and JSONL (plain or gzip).

``open_source(url, ...)`` picks the backend from the URL scheme and returns a
:class:`Source`: a context manager with the discovered ``schema`` (already declaring
the export markers, see ``tdtp.values.schema_for_export``) and ``lines()``, the row
lines the part builder consumes.  NULL is the whole field ``NULL_SENTINEL`` in those
lines; the part builder swaps in the part's Null marker.

Backends are imported lazily so a file export never loads a database driver.
"""

from __future__ import annotations

from collections.abc import Sequence

from tdtp.packet import TdtpError
from tdtp.sources.base import DEFAULT_BATCH_ROWS, PartitionFilter, Source, SourceError
from tdtp.urls import CSV, JSON, JSONL, POSTGRESQL, SQLITE, parse_url

__all__ = ["DEFAULT_BATCH_ROWS", "PartitionFilter", "Source", "SourceError", "open_source"]


def open_source(
    url: str,
    *,
    table: str | None = None,
    query: str | None = None,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    partition: PartitionFilter | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    fast: bool = True,
) -> Source:
    """Open a source for one table, query or file.

    ``where`` and ``query`` are the user's own SQL (trusted configuration); table and
    column names are validated and quoted.  ``fast`` picks PostgreSQL's COPY path
    (the default) over its server-side-cursor path; other backends ignore it.
    """
    parsed = parse_url(url)
    if table is not None and query is not None:
        raise TdtpError("give a source either table= or query=, not both")
    if parsed.scheme == POSTGRESQL:
        from tdtp.sources.postgres import PostgresSource

        if table is None and query is None:
            raise TdtpError(f"a PostgreSQL source needs table= or query= ({parsed.redacted})")
        return PostgresSource(
            parsed, table=table, query=query, columns=columns, where=where,
            partition=partition, batch_rows=batch_rows, fast=fast,
        )  # fmt: skip
    if parsed.scheme == SQLITE:
        from tdtp.sources.sqlite import SqliteSource

        if table is None and query is None:
            raise TdtpError(f"a SQLite source needs table= or query= ({parsed.redacted})")
        return SqliteSource(
            parsed, table=table, query=query, columns=columns, where=where,
            partition=partition, batch_rows=batch_rows,
        )  # fmt: skip
    if parsed.scheme in (CSV, JSON, JSONL):
        from tdtp.sources.files import FileSource

        if query is not None:
            raise TdtpError(f"a {parsed.scheme} file source takes no query= (use where= to filter rows)")
        return FileSource(
            parsed, table=table, columns=columns, where=where, partition=partition, batch_rows=batch_rows
        )
    raise TdtpError(f"no source for URL scheme {parsed.scheme!r}")  # pragma: no cover - parse_url guards
