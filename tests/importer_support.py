"""Shared by the importer tests: a source table with awkward values, exports held in memory.

Exports are built with ``tdtp.parts.build_parts`` from a real source read so each
test can deliver the parts the way it wants (out of order, twice, one missing,
corrupted) through a real broker or real files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tdtp.part_files import part_file_name, summary_file_name
from tdtp.parts import Part, PartOptions, build_parts
from tdtp.sources import PartitionFilter, open_source

SOURCE_COLUMNS = "id, name, amount, created_at, flag, score, payload, note"


def make_source(conn: psycopg.Connection, schema: str, rows: int = 3000, table: str = "src") -> str:
    """A table with NULLs, pipes, backslashes, line feeds, infinities and bytes; two days of timestamps."""
    name = f'"{schema}"."{table}"'
    conn.execute(
        f"""CREATE TABLE {name} (
            id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), created_at timestamptz,
            flag boolean, score float8, payload bytea, note text)"""
    )
    conn.execute(
        f"""INSERT INTO {name}
            SELECT g,
                   CASE WHEN g % 50 = 0 THEN 'pipe|back\\slash' || chr(10) || 'line ' || g ELSE 'name ' || g END,
                   (g * 1.25)::numeric(12,2),
                   timestamptz '2026-01-01 00:00:00+00' + (g * 172800 / {int(rows)}) * interval '1 second',
                   g % 3 = 0,
                   CASE WHEN g = 13 THEN 'Infinity'::float8 ELSE g * 0.5 END,
                   CASE WHEN g % 4 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
                   CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || (g % 11) END
            FROM generate_series(1, {int(rows)}) AS g"""
    )
    return f"{schema}.{table}"


@dataclass
class Export:
    parts: list[Part]
    summary: object  # tdtp.packet.Summary

    @property
    def export_id(self) -> str:
        return self.parts[0].export_id


def export(
    pg_url: str,
    table: str,
    *,
    part_bytes: int = 20_000,
    batch: bool = False,
    hashes: bool = False,
    partition: PartitionFilter | None = None,
    where: str | None = None,
) -> Export:
    """Read ``table`` and build its parts (and summary) in memory."""
    key = partition.value if partition else ""
    with open_source(pg_url, table=table, partition=partition, where=where) as src:
        items = list(
            build_parts(
                src.schema,
                src.lines(),
                table=table,
                options=PartOptions(part_bytes=part_bytes, batch=batch, hashes=hashes),
                partition=key,
            )
        )
    summary = items[-1]
    if partition is not None:
        summary.extra["partition_filter"] = {"column": partition.column, "kind": partition.kind, "value": key}
    parts = [p for p in items if isinstance(p, Part)]
    assert len(parts) >= 3, "tests need a multi-part export"
    return Export(parts, summary)


def summary_headers(summary) -> dict[str, str]:
    return {"kind": "summary", "export_id": summary.export_id, "table": summary.table, "part": "0"}


def publish(log, parts: Iterable[Part], *, headers: bool = True) -> list[int]:
    return [log.publish(p.body, p.headers() if headers else {}) for p in parts]


def write_files(
    directory: Path, exp: Export, *, summary: bool = True, base: str = "src.tdtp.xml"
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for p in exp.parts:
        path = directory / part_file_name(base, p.number, p.total_parts)
        path.write_bytes(p.body)
        paths.append(path)
    if summary:
        (directory / summary_file_name(base)).write_bytes(exp.summary.to_json())
    return paths


def differences(conn: psycopg.Connection, a: str, b: str, columns: str = SOURCE_COLUMNS) -> tuple[int, int]:
    """Rows of ``a`` missing from ``b`` and rows of ``b`` missing from ``a`` (EXCEPT both ways)."""
    q = "SELECT count(*) FROM (SELECT {c} FROM {x} EXCEPT ALL SELECT {c} FROM {y}) d"
    left = conn.execute(q.format(c=columns, x=a, y=b)).fetchone()[0]
    right = conn.execute(q.format(c=columns, x=b, y=a)).fetchone()[0]
    return left, right


def count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
