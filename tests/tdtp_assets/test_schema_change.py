"""Schema evolution through a Dagster materialization (issue 14): the one-run copy of a partition,
into real SQLite and PostgreSQL targets, after the source gained a column.

- ``evolve`` (the default): the column is added, the run succeeds, and the non-blocking
  ``schema_change`` check reports the added column in its metadata.
- ``freeze`` (``schema:`` in the tables file): the run fails with the one refusal line
  and nothing of the partition lands.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from tests.e2e.support import DAYS, definitions_for, tables_doc
from tests.tdtp_assets.test_copy import materialize_copy


def _target(request: pytest.FixtureRequest, home: Path) -> tuple[dict[str, Any], Any]:
    """The events table's target in the tables file, and a function running SQL on it."""
    if request.param == "sqlite":
        def run(sql: str) -> list[tuple]:
            with sqlite3.connect(home / "target.db") as conn:
                return conn.execute(sql.format(t="events")).fetchall()

        return {"url": "sqlite:///{home}/target.db", "table": "events"}, run
    url, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")

    def run_pg(sql: str) -> list[tuple]:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(sql.format(t=f"{schema}.events")).fetchall()

    return {"url": url, "table": f"{schema}.events"}, run_pg


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, home: Path) -> tuple[dict[str, Any], Any]:
    return _target(request, home)


def _add_source_column(home: Path) -> None:
    with sqlite3.connect(home / "source.db") as conn:
        conn.execute("ALTER TABLE events ADD COLUMN extra INTEGER")
        conn.execute("UPDATE events SET extra = id * 10")


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {ev.check_name: ev for ev in result.get_asset_check_evaluations()}


def test_an_added_column_evolves_the_target_and_the_schema_check_reports_it(
    home: Path, instance: dg.DagsterInstance, target: tuple[dict[str, Any], Any]
) -> None:
    doc = tables_doc(home)
    doc["tables"]["events"]["target"], run = target
    defs = definitions_for(doc, home)
    first = materialize_copy(defs, instance, DAYS[0])
    assert first.success
    assert _checks(first)["schema_change"].passed

    _add_source_column(home)
    second = materialize_copy(defs, instance, DAYS[1])
    assert second.success  # the schema check does not block
    check = _checks(second)["schema_change"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("schema changed (evolve): added extra")
    added = check.metadata["added"].value
    assert [name for name, _ in added] == ["extra"]
    assert all(_checks(second)[name].passed for name in _checks(second) if name != "schema_change")
    assert run("SELECT count(*), count(extra) FROM {t}") == [(3000, 1500)]  # day one's rows: NULL


def test_freeze_fails_the_run_with_the_one_refusal_line(
    home: Path, instance: dg.DagsterInstance, target: tuple[dict[str, Any], Any]
) -> None:
    doc = tables_doc(home)
    doc["tables"]["events"]["target"], run = target
    doc["tables"]["events"]["target"] = {**doc["tables"]["events"]["target"], "schema": "freeze"}
    defs = definitions_for(doc, home)
    assert materialize_copy(defs, instance, DAYS[0]).success

    _add_source_column(home)
    refused = materialize_copy(defs, instance, DAYS[1])
    assert not refused.success
    message = refused.get_step_failure_events()[0].event_specific_data.error.message
    assert "schema change refused for" in message and "(schema: freeze): added extra (" in message
    assert run("SELECT count(*) FROM {t}") == [(1500,)]  # nothing of day two landed
