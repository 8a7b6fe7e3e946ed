"""What every source shares: the Source protocol, partition filters and SourceError.

Kept apart from ``tdtp.sources.__init__`` so the backend modules can import these
without importing each other (``open_source`` imports a backend only when asked,
so a CSV export never loads psycopg).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

from tdtp.packet import Schema, TdtpError
from tdtp.values import lines_to_blocks

DEFAULT_BATCH_ROWS = 10_000


class SourceError(TdtpError):
    """A source cannot be opened or read: missing table/file, bad query, lost connection."""


PartitionKind = Literal["day", "hour", "value"]


@dataclass(frozen=True)
class PartitionFilter:
    """Rows of one partition: a UTC day or hour of a timestamp column, or one column value.

    ``value`` is ``"2026-01-05"`` for a day, ``"2026-01-05T13"`` (or with ``:00``) for an
    hour, and the column value as text for ``"value"`` (the database casts it).
    """

    column: str
    kind: PartitionKind
    value: str

    def __post_init__(self) -> None:
        if self.kind not in ("day", "hour", "value"):
            raise TdtpError(f"partition kind {self.kind!r} is not one of day, hour, value")
        if not self.column:
            raise TdtpError("partition filter names no column")
        if self.kind != "value":
            self.bounds()  # validate the text now, not halfway through an export

    def bounds(self) -> tuple[datetime, datetime]:
        """Half-open UTC range ``[start, end)`` of a day/hour partition (naive datetimes)."""
        text = self.value.strip()
        try:
            if self.kind == "day":
                d = date.fromisoformat(text[:10])
                if len(text) != 10:
                    raise ValueError("expected YYYY-MM-DD")
                start = datetime(d.year, d.month, d.day)
                return start, start + timedelta(days=1)
            if self.kind == "hour":
                if len(text) == 13:  # 2026-01-05T13
                    text += ":00"
                start = datetime.fromisoformat(text.replace(" ", "T"))
                if start.tzinfo is not None or start.minute or start.second or start.microsecond:
                    raise ValueError("expected YYYY-MM-DDTHH in UTC")
                return start, start + timedelta(hours=1)
        except ValueError as exc:
            raise TdtpError(
                f"partition value {self.value!r} of column {self.column!r} is not a valid {self.kind}: {exc}"
            ) from exc
        raise TdtpError(f"a {self.kind!r} partition has no time range")


@runtime_checkable
class Source(Protocol):
    """A table (or query, or file) read as TDTP row lines, streaming with bounded memory.

    ``lines()`` is the fast path the exporter uses; ``rows()`` gives Python values for
    tests and the file sinks.  Each call starts a new read.
    """

    name: str
    schema: Schema

    def lines(self) -> Iterator[str]: ...

    def blocks(self) -> Iterator[bytes]: ...

    def rows(self) -> Iterator[tuple[Any, ...]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...


class SourceBase(ABC):
    """Context-manager plumbing shared by the concrete sources."""

    name: str
    schema: Schema

    @abstractmethod
    def close(self) -> None:
        """Release the connection or file; sources are also context managers."""

    @abstractmethod
    def lines(self) -> Iterator[str]:
        """Row lines, streaming (see ``tdtp.packet``)."""

    def blocks(self) -> Iterator[bytes]:
        """Row lines as UTF-8 blocks of whole lines each ending in LF: what the part
        builder consumes.  PostgreSQL overrides this to hand over COPY's bytes as they are."""
        return lines_to_blocks(self.lines())

    def estimated_rows(self) -> int | None:
        """How many rows this source will give, if a cheap estimate exists (a progress bar's
        total: never a count that reads the data; None when there is none)."""
        return None

    def __enter__(self) -> SourceBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def where_of(name: str, row: int | None = None, column: str | None = None) -> str:
    """Location text for errors: ``table 'x' row 12 column 'y'`` (rows count from 1)."""
    out = f"table {name!r}"
    if row is not None:
        out += f" row {row}"
    if column is not None:
        out += f" column {column!r}"
    return out
