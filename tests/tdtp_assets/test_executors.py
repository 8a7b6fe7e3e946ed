"""Where a table's land ops run: ``executor: celery`` (tables file or TDTP_EXECUTOR), and the
spool refusal a multi-host executor gets when the code location loads.

The Celery run itself (two workers landing parts) is tests/e2e/test_dagster_celery.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tdtp_assets import names
from tdtp_assets.tables_config import TablesConfigError
from tests.e2e.support import definitions_for, dg_check_defs, tables_doc

BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def celery_doc(home: Path) -> dict:
    doc = tables_doc(home)
    doc["defaults"].update(
        {"broker": "rabbitmq://guest:guest@127.0.0.1:5672/{table}", "celery_broker": BROKER}
    )
    doc["tables"]["events"].update({"executor": "celery", "fanout": 3})
    return doc


def land_job(defs, table: str):
    return defs.resolve_job_def(names.import_parts_job_name(table))


def executor_config(job) -> dict:
    """The executor's config as a run resolves it (``{env: ..}`` values read now)."""
    result = job.executor_def.apply_config_mapping({})
    assert result.success, result.errors
    return result.value["config"]


def test_executor_celery_puts_the_land_job_on_celery_with_the_files_broker(tmp_path: Path) -> None:
    defs = definitions_for(celery_doc(tmp_path), tmp_path)
    events, people = land_job(defs, "events"), land_job(defs, "people")
    assert events.executor_def.name == "celery"
    # The broker from the file reaches Celery as the executor's config (checked by Dagster's schema).
    assert executor_config(events)["broker"] == BROKER
    assert people.executor_def.name == "in_process"  # the other table keeps the default
    # The graph is the same: plan -> land (fanned out) -> report -> publish -> check
    assert {node.name for node in events.graph.nodes} == {
        "plan_parts_events", "land_parts_events", "report_parts_events", "publish_parts_events", "check_parts_events"
    }  # fmt: skip


def test_broker_from_the_environment_is_read_when_a_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = celery_doc(tmp_path)
    doc["defaults"]["celery_broker"] = {"env": "CELERY_BROKER_URL"}
    events = land_job(definitions_for(doc, tmp_path), "events")
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://app:secret@mq:5672//")
    assert executor_config(events)["broker"] == "amqp://app:secret@mq:5672//"


def test_celery_queue_from_the_file_is_where_dagster_celery_sends_the_steps(tmp_path: Path) -> None:
    """``celery_queue`` becomes Celery's default queue in the app dagster-celery builds for a run."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app

    def queue_of(config: dict) -> str:
        executor = CeleryExecutor.for_cli(broker=config["broker"], config_source=config.get("config_source"))
        return make_app(executor.app_args()).conf.task_default_queue

    doc = celery_doc(tmp_path)
    plain = executor_config(land_job(definitions_for(doc, tmp_path), "events"))
    assert "config_source" not in plain and queue_of(plain) == "dagster"  # unset: dagster-celery's default
    doc["defaults"]["celery_queue"] = "tdtp_prod"
    assert queue_of(executor_config(land_job(definitions_for(doc, tmp_path), "events"))) == "tdtp_prod"
    doc["defaults"]["celery_queue"] = "no spaces"
    with pytest.raises(TablesConfigError, match="celery_queue"):
        definitions_for(doc, tmp_path)


def test_instance_level_executor_applies_where_the_file_names_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = celery_doc(tmp_path)
    del doc["tables"]["events"]["executor"]
    doc["tables"]["people"]["executor"] = "local"
    monkeypatch.setenv("TDTP_EXECUTOR", "celery")
    defs = definitions_for(doc, tmp_path)
    assert land_job(defs, "events").executor_def.name == "celery"
    assert land_job(defs, "people").executor_def.name == "in_process"
    monkeypatch.setenv("TDTP_EXECUTOR", "kubernetes")
    with pytest.raises(
        TablesConfigError, match=r"TDTP_EXECUTOR='kubernetes' is not an executor; use one of local, celery"
    ):
        definitions_for(doc, tmp_path)


def test_a_local_spool_with_celery_is_refused_in_one_line(tmp_path: Path) -> None:
    doc = celery_doc(tmp_path)
    doc["defaults"]["broker"] = "spool:///{home}/spool/{table}"
    with pytest.raises(TablesConfigError) as caught:
        definitions_for(doc, tmp_path)
    message = str(caught.value)
    assert message == (
        f"{tmp_path / 'tables.yaml'}: table 'events', key 'executor': celery lands parts on other hosts, "
        f"which cannot read the local spool spool:///{tmp_path}/spool/events; use a rabbitmq:// or kafka:// "
        "broker, or set shared_spool: true if every worker mounts that directory at the same path"
    )
    doc["tables"]["events"]["shared_spool"] = True  # declared shared: loads
    assert land_job(definitions_for(doc, tmp_path), "events").executor_def.name == "celery"


def test_check_defs_refuses_a_local_spool_with_celery(tmp_path: Path) -> None:
    """What a user sees when the code location loads (``dg check defs``, as the README runs it)."""
    doc = celery_doc(tmp_path)
    doc["defaults"]["broker"] = "spool:///{home}/spool/{table}"
    tables = tmp_path / "tables.yaml"
    tables.write_text(yaml.safe_dump(doc))
    proc = dg_check_defs(tables, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert [x for x in output.splitlines() if "cannot read the local spool" in x] == [
        f"tdtp_assets.tables_config.TablesConfigError: {tables}: table 'events', key 'executor': celery lands "
        f"parts on other hosts, which cannot read the local spool spool:///{tmp_path}/spool/events; use a "
        "rabbitmq:// or kafka:// broker, or set shared_spool: true if every worker mounts that directory at the "
        "same path"
    ]
