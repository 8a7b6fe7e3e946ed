"""Table metadata in Dagster's own keys: column schema, table names, URLs, sizes, code version.

The UI gives these keys their own sections (``docs/architecture.md``, Dagster layer):
``dagster/column_schema`` fills an asset's *Columns* section, ``dagster/table_name``
names the table, ``dagster/size_bytes`` is shown formatted ("1.9MB") as *Storage*,
and ``dagster/code_references`` links to the line of the tables file that defines
the table.  Plain metadata keys get none of that.

The column schema comes from a TDTP schema (the parts carry one): TDTP type with its
length/precision, the key flag, and nullability.  Our writers declare a Null marker on
every field (``tdtp/values/specials.py``), so any column may carry NULL except the key
fields, which the sources mark from the primary key.

:func:`column_schema_metadata` is the one helper to record a schema; whatever
publishes a table (the import asset, a schema change) records it through it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from tdtp.packet import Field, Schema
from tdtp.sources import open_source
from tdtp.urls import redact
from tdtp_assets.tables_config import Connection, EnvRef, TableConfig, label_of, scheme_of, sqlite_path

COLUMN_SCHEMA = "dagster/column_schema"
TABLE_NAME = "dagster/table_name"
SIZE_BYTES = "dagster/size_bytes"
CODE_REFERENCES = "dagster/code_references"

# Bump when the meaning of what the assets produce changes for every table (wire
# format, write semantics): Dagster then shows every materialization as stale.
ASSET_LOGIC_VERSION = "1"


def column_type(field: Field) -> str:
    """The TDTP type as a user reads it: ``DECIMAL(10,2)``, ``TEXT(255)``, ``TIMESTAMP UTC``."""
    text = field.type
    if field.precision:
        text += f"({field.precision},{field.scale})" if field.scale else f"({field.precision})"
    elif field.length and field.length > 0:
        text += f"({field.length})"
    if field.timezone:
        text += f" {field.timezone}"
    return text


def table_schema(schema: Schema) -> dg.TableSchema:
    """A TDTP schema as Dagster's ``TableSchema``: type, key, nullability, subtype."""
    keys = schema.key_names
    columns = []
    for field in schema.fields:
        notes = []
        if field.key:
            notes.append("key" if len(keys) == 1 else f"part of the key ({', '.join(keys)})")
        if field.subtype:
            notes.append(f"source type {field.subtype}")
        columns.append(
            dg.TableColumn(
                name=field.name,
                type=column_type(field),
                description="; ".join(notes) or None,
                constraints=dg.TableColumnConstraints(nullable=not field.key, unique=field.key and len(keys) == 1),
                tags={"tdtp/key": ""} if field.key else None,
            )
        )
    return dg.TableSchema(columns=columns)


def column_schema_metadata(schema: Schema | dg.TableSchema | None) -> dict[str, Any]:
    """``{"dagster/column_schema": ...}`` for a TDTP schema (or one already converted); {} for None."""
    if schema is None:
        return {}
    value = schema if isinstance(schema, dg.TableSchema) else table_schema(schema)
    return {COLUMN_SCHEMA: dg.MetadataValue.table_schema(value)}


def size_metadata(nbytes: int) -> dict[str, Any]:
    """The parts' encoded bytes under Dagster's size key (the UI formats it)."""
    return {SIZE_BYTES: dg.MetadataValue.int(int(nbytes or 0))}


def url_value(conn: Connection) -> dg.MetadataValue:
    """A connection as a URL value with its password masked; an env reference as ``$NAME`` text."""
    if isinstance(conn, EnvRef):
        return dg.MetadataValue.text(f"${conn.env}")
    return dg.MetadataValue.url(redact(conn))


def qualified_name(conn: Connection, table: str | None) -> str | None:
    """``<database>.<table>`` for ``dagster/table_name`` (database: the URL's database or file stem)."""
    if not table:
        return None
    return f"{label_of(conn)}.{table}"


def code_version(table: TableConfig) -> str:
    """A digest of what decides the rows an asset produces: source, selection, partitioning, target, mode.

    Dagster compares it with the version a partition was materialized with and marks
    the partition stale when they differ.  Broker, part sizes and worker counts
    change how rows travel, not which rows land, so they are left out.
    """
    facts = {
        "logic": ASSET_LOGIC_VERSION,
        "source": _conn_text(table.source),
        "table": table.source_table,
        "query": table.query,
        "columns": table.columns,
        "where": table.where,
        "partition": table.partition.model_dump(mode="json") if table.partition else None,
        "target": _conn_text(table.target.url),
        "target_table": table.target_table,
        "mode": table.target.mode,
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:12]


def _conn_text(conn: Connection) -> str:
    return f"env:{conn.env}" if isinstance(conn, EnvRef) else redact(conn)


def code_references(table: TableConfig) -> dict[str, Any]:
    """A link to the table's entry in the tables file (its line), shown on the asset's page."""
    if not table.tables_file:
        return {}
    ref = dg.LocalFileCodeReference(
        file_path=str(Path(table.tables_file).resolve()),
        line_number=table.tables_line,
        label=f"tables file: {table.name}",
    )
    return {CODE_REFERENCES: dg.CodeReferencesMetadataValue(code_references=[ref])}


def source_schema_if_cheap(table: TableConfig) -> Schema | None:
    """The export's schema read at load time when that costs a local file read, else None.

    Only a SQLite source table whose file exists qualifies: reading its declared
    columns takes milliseconds and opens no server connection, so the code location
    loads as fast and as reliably without a database as with one.  Anything else
    (a server, a file format that must be scanned, a query) waits for the first
    materialization, whose metadata carries the schema the parts had.
    """
    if scheme_of(table.source) != "sqlite" or not table.source_table or isinstance(table.source, EnvRef):
        return None
    path = sqlite_path(table.source)
    if not path or not Path(path).is_file():
        return None
    try:
        with open_source(table.source, table=table.source_table, columns=table.columns) as src:
            return src.schema
    except Exception:  # a definition without columns is fine; the run reports the real error
        return None


def export_definition_metadata(table: TableConfig, schema: Schema | None) -> dict[str, Any]:
    """Definition metadata of ``tdtp/export/<table>_export``: source and stream, the source table's name."""
    meta: dict[str, Any] = {"source": url_value(table.source), "stream": url_value(table.broker)}
    name = qualified_name(table.source, table.source_table)
    if name:
        meta[TABLE_NAME] = name
    meta.update(column_schema_metadata(schema))
    meta.update(code_references(table))
    return meta


def import_definition_metadata(table: TableConfig, schema: Schema | None) -> dict[str, Any]:
    """Definition metadata of ``tdtp/import/<table>``: the target table, its URL, the write mode."""
    meta: dict[str, Any] = {
        "target": url_value(table.target.url),
        TABLE_NAME: qualified_name(table.target.url, table.target_table),
        "mode": table.target.mode,
    }
    meta.update(column_schema_metadata(schema))
    meta.update(code_references(table))
    return meta


def import_table_metadata(table: TableConfig, export: Mapping[str, Any]) -> dict[str, Any]:
    """What every import materialization says about the table, whichever run publishes it.

    ``export``: the export's materialization metadata as values (``latest_export``);
    its column schema is the parts' schema, which the publish put in the target.
    """
    meta: dict[str, Any] = column_schema_metadata(export.get(COLUMN_SCHEMA))
    name = qualified_name(table.target.url, table.target_table)
    if name:
        meta[TABLE_NAME] = name
    meta["target"] = url_value(table.target.url)
    return meta
