"""Fixtures of the Dagster unit tests: a small SQLite source under a temporary home, an instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """A temporary TDTP home holding the small SQLite source of ``tests.e2e.support``."""
    from tests.e2e.support import make_sqlite_source

    make_sqlite_source(tmp_path / "source.db")
    return tmp_path


@pytest.fixture()
def instance() -> Iterator[Any]:
    """An ephemeral Dagster instance (``instance_for_test``)."""
    import dagster as dg

    with dg.instance_for_test() as inst:
        yield inst
