"""Checks of a whole tables file made when the code location loads, after each entry validated.

What a run would otherwise find only after exporting parts into the broker fails
the load here, with one line naming the table and the key: URL schemes, a query on
a file source, a schema on a SQLite target, two tables on one stream, a local spool
under a multi-host executor.  ``config`` is a ``tdtp_assets.tables_config.TablesConfig``
(passed in: that module calls these, so this one cannot import it).
"""

from __future__ import annotations

from typing import Any

from tdtp_assets.connections import EnvRef, describe, scheme_of

_BROKER_SCHEMES = ("spool", "rabbitmq", "kafka")
_SOURCE_SCHEMES = ("sqlite", "postgresql", "csv", "json", "jsonl")
_TARGET_SCHEMES = ("sqlite", "postgresql")
_FILE_SOURCES = ("csv", "json", "jsonl")
#: Executors whose land ops may run on another host than the export's.
MULTI_HOST = ("celery",)


class ConfigProblem(Exception):
    """One problem line; ``tables_config.parse_tables`` raises it as its ``TablesConfigError``."""


def check_config(config: Any) -> str | None:
    """Every load-time check, in order: the first problem's one line, or None."""
    try:
        _check_connections(config)
        _check_streams(config)
        _check_executors(config)
    except ConfigProblem as problem:
        return str(problem)
    return None


def _check_connections(config: Any) -> None:
    """Source, broker and target URL schemes, and the write mode against the target, at load time.

    What a run would otherwise find only after exporting parts into the broker (an
    unknown target scheme fails the import, not the export) fails the code location
    here, with one line naming the table and the key.  An ``{env: ..}`` value is
    checked when the run reads it.
    """
    for name, table in config.tables.items():
        where = f"{config.path}: table {name!r}"
        for key, conn, allowed in (
            ("source", table.source, _SOURCE_SCHEMES),
            ("broker", table.broker, _BROKER_SCHEMES),
            ("target.url", table.target.url, _TARGET_SCHEMES),
        ):
            if isinstance(conn, EnvRef):
                continue
            scheme = scheme_of(conn)
            if "://" not in conn or scheme not in allowed:
                shown = f"scheme {scheme!r}" if "://" in conn else "not a URL"
                raise ConfigProblem(
                    f"{where}, key {key!r}: {shown} is not one of {', '.join(s + '://' for s in allowed)}"
                )
        source = scheme_of(table.source)
        if source in _FILE_SOURCES and table.query:
            raise ConfigProblem(
                f"{where}, key 'query': a {source}:// source is a file and takes no query "
                "(name it with table: and filter with where:)"
            )
        if scheme_of(table.target.url) == "sqlite" and "." in table.target_table:
            raise ConfigProblem(
                f"{where}, key 'target.table': {table.target_table!r} names a schema, and a SQLite target "
                "has none (give a plain table name)"
            )


def _check_streams(config: Any) -> None:
    """Each table needs a stream of its own: an import run loads a whole seq range into one target."""
    owners: dict[str, str] = {}
    for name, table in config.tables.items():
        if isinstance(table.broker, EnvRef):
            continue
        stream = table.broker.split("?", 1)[0]
        if stream in owners:
            raise ConfigProblem(
                f"{config.path}: table {name!r}, key 'broker': stream {describe(stream)} is already used by "
                f"table {owners[stream]!r}; give each table its own stream (e.g. end the URL with {{table}})"
            )
        owners[stream] = name


def _check_executors(config: Any) -> None:
    """A multi-host executor cannot read a spool on one host's disk: refused at load unless declared shared.

    Land ops on Celery run on whichever worker host takes them; each would find its
    own empty directory at the spool's path and land nothing (or half an export).
    """
    for name, table in config.tables.items():
        broker = table.broker
        if table.executor not in MULTI_HOST or isinstance(broker, EnvRef) or scheme_of(broker) != "spool":
            continue
        if not table.shared_spool:
            raise ConfigProblem(
                f"{config.path}: table {name!r}, key 'executor': {table.executor} lands parts on other hosts, "
                f"which cannot read the local spool {describe(broker)}; use a rabbitmq:// or kafka:// broker, "
                "or set shared_spool: true if every worker mounts that directory at the same path"
            )
