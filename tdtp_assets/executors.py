"""Which Dagster executor runs a table's import-parts job (its land ops).

``local`` (the default) keeps every step on the host of the run: in process, or the
multiprocess executor when ``fanout > 1`` (see ``tdtp_assets/jobs.py`` for why).
``celery`` hands each step to dagster-celery workers on any number of hosts, through
the Celery broker the tables file names (``defaults.celery_broker``; docs/deploy.md
shows how to start the workers).  The fan-out is the same: ``fanout`` land ops per run,
each a Celery task; the per-target pool still bounds how many land at once.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from tdtp_assets.tables_config import EnvRef, TableConfig


def celery_config(table: TableConfig) -> dict[str, Any]:
    """The celery executor's config: broker (a URL or ``{env: NAME}``, read when a run starts), backend, queue.

    The queue is Celery's ``task_default_queue``, where dagster-celery sends every step
    without a ``dagster-celery/queue`` tag; workers consume it with ``-q NAME``.
    """
    config: dict[str, Any] = {"backend": table.celery_backend}
    if table.celery_queue is not None:
        config["config_source"] = {"task_default_queue": table.celery_queue}
    broker = table.celery_broker
    if isinstance(broker, EnvRef):
        config["broker"] = {"env": broker.env}
    elif broker is not None:
        config["broker"] = broker
    return config


def land_executor(table: TableConfig) -> dg.ExecutorDefinition:
    """The executor of the table's import-parts job."""
    if table.executor == "celery":
        # Imported only for a table that uses it: Celery adds about 0.16 s to every load of
        # the code location (python -X importtime on the development machine).
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_config(table), name="celery")
    if table.fanout > 1:
        return dg.multiprocess_executor.configured({"max_concurrent": table.fanout})
    return dg.in_process_executor
