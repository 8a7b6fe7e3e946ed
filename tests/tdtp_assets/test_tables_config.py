"""The tables file: defaults, placeholders, secrets from the environment, one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from tdtp_assets.partitions import partition_filter_for, partitions_def_for
from tdtp_assets.tables_config import (
    DEMO_TABLES_FILE,
    EnvRef,
    TablesConfigError,
    load_tables,
    parse_tables,
)
from tdtp_location.definitions import build_resources
from tests.e2e.support import dg_check_defs


def parse(text: str, home: Path = Path("/data")):
    return parse_tables(yaml.safe_load(text), Path("tables.yaml"), home)


MINIMAL = """
tables:
  orders:
    source: sqlite:///{home}/src.db
    table: orders
    partition: {daily: created_at, start: 2026-01-01}
    target: {url: "sqlite:///{home}/dw.db"}
"""


def with_table(name: str, *lines: str, table: str | None = None) -> str:
    """MINIMAL plus table ``name`` reading ``table`` (default ``name``) from the same source; ``lines``: its other keys."""
    keys = "".join(f"    {line}\n" for line in lines)
    return MINIMAL + f"  {name}:\n    source: sqlite:///{{home}}/src.db\n    table: {table or name}\n" + keys


def test_defaults_and_placeholders_are_resolved() -> None:
    table = parse(MINIMAL).table("orders")
    assert table.source == "sqlite:////data/src.db"
    assert table.broker == "spool:////data/spool/orders"
    assert table.target_table == "orders"
    assert table.target.mode == "replace"
    assert table.part_bytes == 1_900_000
    assert table.compress == "zstd"
    assert table.group == "src"
    assert table.target_label == "dw"


def test_env_references_become_env_vars_not_values(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse(
        """
tables:
  customers:
    source: {env: CRM_DB_URL}
    table: public.customers
    partition: {static: region, values: [eu, us, apac]}
    broker: {env: CUSTOMERS_BROKER}
    target: {url: {env: DWH_URL}, table: dw.customers, mode: upsert}
"""
    )
    table = config.table("customers")
    assert table.source == EnvRef(env="CRM_DB_URL")
    assert table.group == "crm_db_url"
    resources = build_resources(config)
    assert isinstance(resources["source_customers"].url, dg.EnvVar)
    assert resources["target_customers"].url == dg.EnvVar("DWH_URL")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MINIMAL.replace("start: 2026-01-01", "strat: 2026-01-01"),
            "tables.yaml: table 'orders', key 'partition.strat': unknown key (check the spelling)",
        ),
        (
            MINIMAL.replace(", start: 2026-01-01", ""),
            "tables.yaml: table 'orders', key 'partition': daily partitioning needs start: YYYY-MM-DD",
        ),
        (
            MINIMAL.replace('dw.db"}', 'dw.db", mode: merge}'),
            "tables.yaml: table 'orders', key 'target.mode': Input should be 'replace', 'upsert' or 'append'",
        ),
        (
            MINIMAL.replace("table: orders", "table: orders\n    query: select 1"),
            "tables.yaml: table 'orders', key '(entry)': give exactly one of table: NAME or query: SQL",
        ),
        (
            MINIMAL.replace("source: sqlite:///{home}/src.db", "source: {env: 9LIVES}"),
            "tables.yaml: table 'orders', key 'source.env': '9LIVES' is not an environment variable name",
        ),
        (
            MINIMAL.replace("table: orders", "table: orders; drop table x"),
            "tables.yaml: table 'orders', key 'table': source table 'orders; drop table x' is not a plain identifier",
        ),
        (
            MINIMAL + "    workers: 0\n",
            "tables.yaml: table 'orders', key 'workers': Input should be greater than or equal to 1",
        ),
        ("tables: {}\n", "tables.yaml: key 'tables': list at least one table"),
        (
            MINIMAL.replace('url: "sqlite:///{home}/dw.db"', 'url: "mysql://u:pw@db/dw"'),
            "tables.yaml: table 'orders', key 'target.url': scheme 'mysql' is not one of sqlite://, postgresql://",
        ),
        (
            MINIMAL.replace('url: "sqlite:///{home}/dw.db"', 'url: "dw.db"'),
            "tables.yaml: table 'orders', key 'target.url': not a URL is not one of sqlite://, postgresql://",
        ),
        (
            MINIMAL.replace("source: sqlite:///{home}/src.db", "source: ftp://host/orders.csv"),
            "tables.yaml: table 'orders', key 'source': scheme 'ftp' is not one of sqlite://",
        ),
        (
            MINIMAL + "    broker: redis://127.0.0.1:6379/orders\n",
            "tables.yaml: table 'orders', key 'broker': scheme 'redis' is not one of spool://, rabbitmq://, kafka://",
        ),
        (
            MINIMAL.replace("source: sqlite:///{home}/src.db", "source: csv:///orders.csv").replace(
                "table: orders", "query: select 1"
            ),
            "tables.yaml: table 'orders', key 'query': a csv:// source is a file and takes no query",
        ),
        (
            MINIMAL.replace('dw.db"}', 'dw.db", table: dw.orders}'),
            "tables.yaml: table 'orders', key 'target.table': 'dw.orders' names a schema, and a SQLite target has none",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_table_and_key(text: str, message: str) -> None:
    with pytest.raises(TablesConfigError) as err:
        parse(text)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_two_tables_on_one_stream_is_an_error() -> None:
    text = with_table(
        "orders_copy",
        "broker: spool:///{home}/spool/orders",
        'target: {url: "sqlite:///{home}/dw.db", table: orders_copy}',
        table="orders",
    )
    with pytest.raises(
        TablesConfigError,
        match="table 'orders_copy', key 'broker': stream .* is already used by table 'orders'",
    ):
        parse(text)


def test_partition_keys_map_to_row_filters() -> None:
    config = parse(
        with_table(
            "clicks",
            "partition: {hourly: at, start: 2026-01-01T00:00, end: 2026-01-02T00:00}",
            'target: {url: "sqlite:///{home}/dw.db"}',
        )
    )
    daily = config.table("orders").partition
    hourly = config.table("clicks").partition
    assert partition_filter_for(daily, "2026-01-05").value == "2026-01-05"
    pf = partition_filter_for(hourly, "2026-01-01-13:00")
    assert (pf.column, pf.kind, pf.value) == ("at", "hour", "2026-01-01T13:00")
    assert partitions_def_for(hourly).get_partition_keys()[:2] == ["2026-01-01-00:00", "2026-01-01-01:00"]
    assert len(partitions_def_for(hourly).get_partition_keys()) == 24
    assert partition_filter_for(None, "") is None


def test_demo_file_is_valid_and_uses_the_data_home(tmp_path: Path) -> None:
    config = load_tables(DEMO_TABLES_FILE, home=tmp_path)
    assert set(config.tables) == {"orders", "customers", "products"}
    orders = config.table("orders")
    assert orders.demo_db == f"{tmp_path}/demo.db"
    assert orders.source == f"sqlite:///{tmp_path}/demo.db"
    assert partitions_def_for(orders.partition).get_partition_keys()[0] == "2026-01-01"
    assert len(partitions_def_for(orders.partition).get_partition_keys()) == 30


def test_check_defs_shows_the_error(tmp_path: Path) -> None:
    """``dg check defs`` on a broken tables file: fails, naming the table and key."""
    bad = tmp_path / "tables.yaml"
    bad.write_text(MINIMAL.replace("daily: created_at", "daily: created_at, every: 2"))
    proc = dg_check_defs(bad, tmp_path)
    assert proc.returncode != 0
    assert (
        f"TablesConfigError: {bad}: table 'orders', key 'partition.every': unknown key"
        in proc.stdout + proc.stderr
    )


def test_a_mysql_target_fails_check_defs_in_one_line(tmp_path: Path) -> None:
    """Found when the code location loads, not after the export filled the broker."""
    bad = tmp_path / "tables.yaml"
    bad.write_text(MINIMAL.replace('url: "sqlite:///{home}/dw.db"', 'url: "mysql://app:pw@db:3306/dw"'))
    proc = dg_check_defs(bad, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    line = f"{bad}: table 'orders', key 'target.url': scheme 'mysql' is not one of sqlite://, postgresql://"
    assert [x for x in output.splitlines() if "mysql" in x] == [
        f"tdtp_assets.tables_config.TablesConfigError: {line}"
    ]
    assert "pw@" not in output
    assert "SupersessionWarning" not in output


def test_require_hashes_reaches_every_importer_of_the_table() -> None:
    from resources.databases import TargetDatabase
    from tdtp_assets.importing import open_importer

    plain = parse(MINIMAL).table("orders")
    strict = parse(MINIMAL.replace('target: {url: "sqlite:///{home}/dw.db"}',
                                   'target: {url: "sqlite:///{home}/dw.db", require_hashes: true}')).table("orders")  # fmt: skip
    assert (plain.target.require_hashes, strict.target.require_hashes) == (False, True)
    target = TargetDatabase(url="sqlite:////tmp/never-opened.db")
    assert open_importer(target, strict).options.require_hashes is True
    assert open_importer(target, plain, workers=3).options.workers == 3


def test_defaults_mode_applies_unless_the_target_sets_one() -> None:
    config = parse(
        "defaults: {mode: upsert}\n"
        + with_table("other", 'target: {url: "sqlite:///{home}/dw.db", mode: append}')
    )
    assert config.table("orders").target.mode == "upsert"
    assert config.table("other").target.mode == "append"
