"""Parallel importer: TDTP parts from files or a broker into PostgreSQL or SQLite, exactly once.

This package's public API is what this module exports; the CLI and the Dagster
layer use nothing else (an ``import-linter`` contract in CI holds them to it).
The modules, top to bottom (each imports only modules below it; see
docs/architecture.md for the picture and one row's path):

  one_export    land one export only, from a seq to its summary (copy runs, import steps)
  lander_io     what a lander process and its caller exchange: job, ready line, result
  engine        ParallelImporter: import files / a log, finalize, status, reset, dead-letter replay
  dispatch      ImportRun: one import call's receive loop, backpressure, acks, finalize triggers
  live          the live publisher: an export's COPY publish transaction open while parts arrive
  tracking      what one run knows of each export and target table (landed parts, closed, lost)
  finalize      publish a ready export in one transaction (by its strategy); abandon, supersede
  work          one part in a worker: verify, decode, stage, retry
  status        ``tdtp status``: an export in one table, as committed and as the table is now
  readiness     is an export ready, waiting, blocked, superseded, abandoned; is a published one lost
  staging       a part's rows or body + its ledger row in one transaction; stage/load tables
  copy_publish  the copy strategy's publish: staged parts COPYed into the target
  swap_publish  the swap/attach strategies' publish: the load table renamed or attached in place
  swap_plan     at an export's first part: which strategy, and the load table it needs
  pg_copy       the one COPY FROM STDIN path into PostgreSQL
  writemode     the write modes' SQL and the one partition-filter reader
  evolve        schema evolution: an export's schema against its table, refused or applied at publish
  ledger        exports and part ledger rows, per target table
  dead_letters  failed parts kept with their reason
  catalog       PostgreSQL catalog queries (relations, columns, keys, indexes, partitions)
  bookkeeping   the bookkeeping tables' definitions and upgrades; DDL and publish locks
  target        the target database: dialect, connections, where bookkeeping lives
  stats, options, inputs   what a run reports, what a user sets, what a run receives
  outcome, errors   states and strategy names; how failures are classified and worded
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, loaded on first use (see __getattr__)
    from tdtp.importer.engine import ParallelImporter, export_status
    from tdtp.importer.lander_io import JOB_ENV, LANDER_MODULE, ExportLanding
    from tdtp.importer.lander_io import READY as LANDER_READY
    from tdtp.importer.one_export import land_export
    from tdtp.importer.options import ImportOptions
    from tdtp.importer.outcome import COMPLETE, FINALIZED, IMPORTING, SUPERSEDED, FinalizeResult, ranges
    from tdtp.importer.stats import ImportStats
    from tdtp.importer.status import ExportStatus
    from tdtp.sinks.schema_change import DISCARD_COLUMNS, EVOLVE, FREEZE, POLICIES, REFUSED, SchemaChange

#: The public names, by the module each lives in.  Loaded on first use (``__getattr__``),
#: so that ``from tdtp.importer import ImportOptions`` (tdtp copy's checks) or the
#: lander's protocol (tdtp/landing.py) does not import the whole engine: ~0.2 CPU-s and
#: the lander's start delayed by as much, measured on ``tdtp copy``.
_MODULES: dict[str, tuple[str, ...]] = {
    "tdtp.importer.engine": ("ParallelImporter", "export_status"),
    "tdtp.importer.lander_io": ("JOB_ENV", "LANDER_MODULE", "ExportLanding"),
    "tdtp.importer.one_export": ("land_export",),
    "tdtp.importer.options": ("ImportOptions",),
    "tdtp.importer.outcome": ("COMPLETE", "FINALIZED", "IMPORTING", "SUPERSEDED", "FinalizeResult", "ranges"),
    "tdtp.importer.stats": ("ImportStats",),
    "tdtp.importer.status": ("ExportStatus",),
    "tdtp.sinks.schema_change": ("DISCARD_COLUMNS", "EVOLVE", "FREEZE", "POLICIES", "REFUSED", "SchemaChange"),
}
#: Public name -> (module, name there).
_NAMES: dict[str, tuple[str, str]] = {
    **{name: (module, name) for module, names in _MODULES.items() for name in names},
    "LANDER_READY": ("tdtp.importer.lander_io", "READY"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _NAMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES])


# Spelled out (not derived from _NAMES) so that linters and type checkers see the
# re-exports; tests/tdtp/importer/test_public_names.py holds the two lists equal.
__all__ = [
    "COMPLETE",
    "DISCARD_COLUMNS",
    "EVOLVE",
    "FREEZE",
    "FINALIZED",
    "IMPORTING",
    "JOB_ENV",
    "LANDER_MODULE",
    "LANDER_READY",
    "POLICIES",
    "REFUSED",
    "SUPERSEDED",
    "ExportLanding",
    "ExportStatus",
    "FinalizeResult",
    "ImportOptions",
    "ImportStats",
    "ParallelImporter",
    "SchemaChange",
    "export_status",
    "land_export",
    "ranges",
]
