"""Message ids and timestamps as Go writes them (docs/format.md §1).

The export id is the MessageID of a multi-part packet without its ``-P<n>``; every
part of one export shares it, and the importer groups parts by it.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def export_message_id(prefix: str = "REF") -> str:
    """``<PREFIX>-<year>-<8 lowercase hex>``: the batch id shared by all parts of an export."""
    return f"{prefix}-{datetime.now(UTC).year}-{secrets.token_hex(4)}"


def part_message_id(base: str, n: int) -> str:
    """MessageID of part ``n`` of the export ``base``: ``<base>-P<n>``."""
    return f"{base}-P{n}"


def utc_timestamp(dt: datetime | None = None) -> str:
    """RFC 3339 in UTC with ``Z`` and a trimmed fraction, as Go writes Timestamp; naive means UTC."""
    if dt is None:
        dt = datetime.now(UTC)
    elif dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if dt.microsecond:
        text += "." + f"{dt.microsecond:06d}".rstrip("0")
    return text + "Z"
