"""Table metadata a Dagster user expects: Columns, table names, masked URLs, sizes, code version, names.

Real components: the small SQLite source, the file spool, a SQLite target, ``materialize``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from tdtp_assets import names
from tdtp_assets.table_meta import CODE_REFERENCES, COLUMN_SCHEMA, SIZE_BYTES, TABLE_NAME
from tests.e2e.support import DAYS, definitions_for, tables_doc, write_tables_file
from tests.tdtp_assets.test_copy import materialize_copy, metadata

# The columns of tests.e2e.support's ``events`` table, as the parts carry them.
EVENTS_COLUMNS = [
    ("id", "INTEGER", False),
    ("ts", "TIMESTAMP", True),
    ("kind", "TEXT", True),
    ("amount", "DECIMAL(10,2)", True),
    ("note", "TEXT", True),
]


def columns_of(schema: dg.TableSchema) -> list[tuple[str, str, bool]]:
    return [(c.name, c.type, c.constraints.nullable) for c in schema.columns]


def spec_of(defs: dg.Definitions, key: dg.AssetKey) -> dg.AssetSpec:
    return defs.get_assets_def(key).specs_by_key[key]


def test_definitions_carry_columns_table_names_urls_and_code_version(home: Path) -> None:
    defs = definitions_for(tables_doc(home), home)
    export, imported = spec_of(defs, names.export_key("events")), spec_of(defs, names.import_key("events"))
    for spec in (export, imported):
        schema = spec.metadata[COLUMN_SCHEMA].value
        assert columns_of(schema) == EVENTS_COLUMNS
        assert schema.columns[0].description == "key"
        assert spec.code_version and spec.code_version == export.code_version
    assert export.metadata[TABLE_NAME] == "source.events"
    assert imported.metadata[TABLE_NAME] == "target.events"
    assert export.metadata["source"] == dg.MetadataValue.url(f"sqlite:///{home}/source.db")
    assert export.metadata["stream"] == dg.MetadataValue.url(f"spool:///{home}/spool/events")
    assert imported.metadata["target"] == dg.MetadataValue.url(f"sqlite:///{home}/target.db")


def test_code_version_follows_what_decides_the_rows(home: Path) -> None:
    doc = tables_doc(home)
    before = spec_of(definitions_for(doc, home), names.import_key("events")).code_version
    doc["defaults"]["workers"] = 1  # how rows travel: same version
    assert spec_of(definitions_for(doc, home), names.import_key("events")).code_version == before
    doc["tables"]["events"]["where"] = "amount > 0"  # which rows land: a new version
    assert spec_of(definitions_for(doc, home), names.import_key("events")).code_version != before


def test_code_reference_points_at_the_tables_file_line(home: Path) -> None:
    from tdtp_assets.tables_config import load_tables
    from tdtp_location.definitions import build_definitions

    path = write_tables_file(tables_doc(home), home / "tables.yaml")
    defs = build_definitions(load_tables(path, home=home))
    refs = spec_of(defs, names.import_key("people")).metadata[CODE_REFERENCES].code_references
    line = path.read_text().splitlines().index("  people:") + 1
    assert (refs[0].file_path, refs[0].line_number) == (str(path.resolve()), line)


def test_secrets_in_urls_are_masked(home: Path) -> None:
    doc = tables_doc(home)
    doc["tables"]["events"]["broker"] = "rabbitmq://guest:s3cret@127.0.0.1:5672/events?queue_type=stream"
    doc["tables"]["events"]["target"]["url"] = "postgresql://postgres:s3cret@127.0.0.1:5432/test"
    defs = definitions_for(doc, home)
    export, imported = spec_of(defs, names.export_key("events")), spec_of(defs, names.import_key("events"))
    stream, target = export.metadata["stream"], imported.metadata["target"]
    assert isinstance(stream, dg.UrlMetadataValue) and isinstance(target, dg.UrlMetadataValue)
    assert stream.url == "rabbitmq://guest:***@127.0.0.1:5672/events?queue_type=stream"
    assert target.url == "postgresql://postgres:***@127.0.0.1:5432/test"
    assert imported.metadata[TABLE_NAME] == "test.events"


def test_every_materialization_carries_the_parts_columns_and_sizes(home: Path, instance) -> None:
    doc = tables_doc(home)
    doc["tables"]["events"]["source"] = "sqlite:///{home}/later.db"
    defs = definitions_for(doc, home)  # the source does not exist yet: no columns on the definition
    assert COLUMN_SCHEMA not in spec_of(defs, names.export_key("events")).metadata
    (home / "source.db").rename(home / "later.db")
    result = materialize_copy(defs, instance, DAYS[0])
    assert result.success
    exported = metadata(result, names.export_op_name("events"))
    imported = metadata(result, names.import_op_name("events"))
    for meta in (exported, imported):
        assert columns_of(meta[COLUMN_SCHEMA]) == EVENTS_COLUMNS
        assert meta[SIZE_BYTES] > 10_000
        assert "bytes" not in meta
    assert exported[SIZE_BYTES] == imported[SIZE_BYTES]
    assert (exported[TABLE_NAME], imported[TABLE_NAME]) == ("later.events", "target.events")
    raw = result.asset_materializations_for_node(names.export_op_name("events"))[0].metadata
    assert isinstance(raw[SIZE_BYTES], dg.IntMetadataValue)
    assert isinstance(raw["stream"], dg.UrlMetadataValue)


def test_the_two_assets_of_a_table_have_different_labels(home: Path) -> None:
    """The UI labels a node by its key's last component: the two must differ, the import's is the table."""
    defs = definitions_for(tables_doc(home), home)
    labels = [key.path[-1] for key in defs.resolve_asset_graph().get_all_asset_keys()]
    assert sorted(labels) == ["events", "events_export", "people", "people_export"]
    assert names.import_key("events").path[-1] == "events"
