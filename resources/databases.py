"""Source and target database resources."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from resources.demo import ensure_demo_db
from tdtp.importer import ImportOptions, ParallelImporter
from tdtp.sources import PartitionFilter, Source, open_source
from tdtp.urls import redact


class SourceDatabase(dg.ConfigurableResource):
    """Where rows are read from: ``sqlite:///…``, ``postgresql://…`` (or a CSV/JSON file URL).

    ``demo_db`` is set only for the demo: the SQLite file is generated on first use,
    so `dagster dev` works offline without a setup step.
    """

    url: str = Field(description="Source URL; use an EnvVar when it has a password.")
    demo_db: str | None = Field(
        default=None, description="Generate the demo database at this path if missing."
    )

    @contextmanager
    def open(
        self,
        *,
        table: str | None = None,
        query: str | None = None,
        columns: list[str] | None = None,
        where: str | None = None,
        partition: PartitionFilter | None = None,
    ) -> Iterator[Source]:
        if self.demo_db:
            ensure_demo_db(self.demo_db)
        with open_source(
            self.url, table=table, query=query, columns=columns, where=where, partition=partition
        ) as src:
            yield src

    @property
    def safe_url(self) -> str:
        return redact(self.url)


class TargetDatabase(dg.ConfigurableResource):
    """Where parts are imported: ``sqlite:///…`` or ``postgresql://…``.

    The importer keeps its ledger, export summaries and dead letters in this same
    database, so every check reads committed state from one place.
    """

    url: str = Field(description="Target URL; use an EnvVar when it has a password.")

    def importer(
        self,
        *,
        table: str,
        mode: str = "replace",
        workers: int = 1,
        require_hashes: bool = False,
        schema: str = "evolve",
    ) -> ParallelImporter:
        options = ImportOptions(
            workers=workers, mode=mode, table=table, require_hashes=require_hashes, schema=schema
        )
        return ParallelImporter(self.url, options)

    @property
    def safe_url(self) -> str:
        return redact(self.url)
