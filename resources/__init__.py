"""Dagster resources over the engine's connections: source and target databases, part brokers.

Each is a ``ConfigurableResource`` holding one URL, so a URL can come from the
environment (``dagster.EnvVar``) and never be written into code or run storage.  They
open engine objects; they hold no protocol logic.
"""

from resources.brokers import PartBroker
from resources.databases import SourceDatabase, TargetDatabase

__all__ = ["PartBroker", "SourceDatabase", "TargetDatabase"]
