"""Parallel importer: TDTP parts from files or a broker into PostgreSQL or SQLite, exactly once.

Modules, each with one job:
  options   ImportOptions
  target    the target database: dialect, connections, where bookkeeping lives
  ledger    bookkeeping tables: part ledger, exports, dead letters
  staging   per-export staging tables; a part's rows + ledger row in one transaction
  finalize  atomic publish by write mode (replace / upsert / append)
  publish   PostgreSQL copy strategy: one COPY in the publish transaction, live while parts arrive
  swap      PostgreSQL swap/attach strategies: workers load a table, a rename or ATTACH publishes it
  work      one part in a worker: verify, decode, stage, retry
  inputs    files, broker messages and dead letters as received items
  engine    the dispatcher (ParallelImporter): backpressure, acks, finalize triggers
  one_export  land one export only, from a seq to its summary (copy runs, import steps)
  status    ExportStatus for ``tdtp status``
  stats     ImportStats
"""

from tdtp.importer.engine import ParallelImporter, export_status
from tdtp.importer.finalize import FinalizeResult
from tdtp.importer.options import ImportOptions
from tdtp.importer.stats import ImportStats
from tdtp.importer.status import ExportStatus

__all__ = [
    "ExportStatus",
    "FinalizeResult",
    "ImportOptions",
    "ImportStats",
    "ParallelImporter",
    "export_status",
]
