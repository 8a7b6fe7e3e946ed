"""Row lines and typed values: the TDTP text of one ``<R>`` and the Python values in it.

Converts between row lines, lists of value texts, and Python values per field type
(docs/format.md §2–3).  It knows nothing about XML; ``tdtp.codec`` does.  One module
per direction, so a reader of one need not read the other:

- ``rowtext``   row lines as text: escaping, splitting, the NULL sentinel, the
                characters XML 1.0 cannot carry, blocks for the part builder
- ``specials``  special-value markers: what they stand for (``NO_DATE``...), and the
                markers our writers declare (``schema_for_export``)
- ``render``    Python value -> value text (``RowEncoder``: the sources' slow path)
- ``parse``     value text -> Python value (``RowDecoder``), and checks that a text
                already is what TDTP writes (``written_form``)
- ``valid``     what text is valid per type: the one rule set the decoder, the SQLite
                sink and the PostgreSQL COPY check share (used as ``valid.integer``...)

Callers import from ``tdtp.values``; the names below are the whole interface.
"""

from tdtp.values import valid
from tdtp.values.parse import (
    Parser,
    RowDecoder,
    date_as_written,
    decimal_as_written,
    text_to_value,
    timestamp_as_written,
    written_form,
)
from tdtp.values.render import Renderer, RowEncoder, value_renderer, value_to_text
from tdtp.values.rowtext import (
    LINES_PER_BLOCK_BYTES,
    NULL_SENTINEL,
    XML_ILLEGAL_RE,
    escape_value,
    join_row,
    lines_to_blocks,
    split_raw,
    split_row,
    unescape_value,
)
from tdtp.values.specials import NO_DATE, NoDate, schema_for_export, special_values

__all__ = [
    "LINES_PER_BLOCK_BYTES",
    "NO_DATE",
    "NULL_SENTINEL",
    "XML_ILLEGAL_RE",
    "NoDate",
    "Parser",
    "Renderer",
    "RowDecoder",
    "RowEncoder",
    "date_as_written",
    "decimal_as_written",
    "escape_value",
    "join_row",
    "lines_to_blocks",
    "schema_for_export",
    "special_values",
    "split_raw",
    "split_row",
    "text_to_value",
    "timestamp_as_written",
    "unescape_value",
    "valid",
    "value_renderer",
    "value_to_text",
    "written_form",
]
