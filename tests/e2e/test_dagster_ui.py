"""The demo in the Dagster UI (`dg dev`): Columns on both assets, two labels, sizes formatted.

One run of ``tests/e2e/ui_check.py`` (demo, ``dg dev``, GraphQL, then headless Chromium);
the tests assert on its facts.  The page checks need Debian's ``chromium`` and the
``playwright`` package (``.[ui]``); without them they are skipped, naming what is missing,
and the same facts are still asserted over GraphQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import ui_check

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ui_check.Report:
    work = tmp_path_factory.mktemp("ui")
    return ui_check.run(work, work / "shots")


def facts(report: ui_check.Report, prefix: str) -> dict[str, tuple[bool, str]]:
    return {what: (passed, detail) for what, passed, detail in report.facts if what.startswith(prefix)}


def test_graphql_shows_columns_sizes_urls_and_two_labels(report: ui_check.Report) -> None:
    found = facts(report, "graphql:")
    assert len(found) == 7, found
    assert all(passed for passed, _ in found.values()), found


def test_no_superseded_commands_and_no_ignored_instance_file(report: ui_check.Report) -> None:
    found = facts(report, "demo:") | facts(report, "dg dev:")
    assert len(found) == 3 and all(passed for passed, _ in found.values()), found


def test_pages_show_columns_two_labels_and_formatted_sizes(report: ui_check.Report) -> None:
    if report.browser_skipped:
        pytest.skip(report.browser_skipped)
    found = facts(report, "page:")
    assert len(found) == 7, found
    assert all(passed for passed, _ in found.values()), found
    assert all(Path(shot).stat().st_size > 10_000 for shot in report.screenshots)
