"""The tables file's ``part_raw_bytes``: a default beside ``part_bytes``, per-table overrides, a range."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tdtp.parts import DEFAULT_PART_RAW_BYTES
from tdtp_assets.tables_config import TablesConfigError, parse_tables

TABLES = """
defaults:
  part_raw_bytes: {default}
tables:
  orders:
    source: sqlite:///{{home}}/src.db
    table: orders
    target: {{url: "sqlite:///{{home}}/dw.db"}}
  logs:
    source: sqlite:///{{home}}/src.db
    table: logs
    part_raw_bytes: 1048576
    target: {{url: "sqlite:///{{home}}/dw.db"}}
"""


def parse(text: str):
    return parse_tables(yaml.safe_load(text), Path("tables.yaml"), Path("/data"))


def test_tables_inherit_the_default_and_may_set_their_own() -> None:
    minimal = TABLES.replace("defaults:\n  part_raw_bytes: {default}\n", "")
    config = parse(minimal.format())
    assert config.table("orders").part_raw_bytes == DEFAULT_PART_RAW_BYTES
    assert config.table("logs").part_raw_bytes == 1_048_576
    assert parse(TABLES.format(default=4_194_304)).table("orders").part_raw_bytes == 4_194_304


def test_a_cap_out_of_range_is_one_line_naming_the_key() -> None:
    with pytest.raises(TablesConfigError) as err:
        parse(TABLES.format(default=64 * 2**20 + 1))
    assert str(err.value).startswith("tables.yaml: key 'defaults.part_raw_bytes': Input should be less than or equal")
    assert "\n" not in str(err.value)
