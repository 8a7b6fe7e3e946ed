"""Row lines: the value-escaped text of one ``<R>`` and the value texts in it.

A *row line* (see ``tdtp.packet``) is values joined by ``|`` with ``\\``, ``|`` and
line feed escaped (docs/format.md §3).  Everything that looks at a row line as text
lives here: escaping, splitting, the NULL sentinel, which characters XML 1.0 cannot
carry, and the grouping of row lines into blocks for the part builder.  Typed values
are ``tdtp.values.render`` (value -> text) and ``tdtp.values.parse`` (text -> value).

NULL inside row lines built by this project's sources is the whole field
``\\N`` (``NULL_SENTINEL``).  Value escaping doubles every real backslash, so no
real string can produce it; the part builder later swaps in the part's declared
Null marker.  Decoders accept it too, so sentinel lines decode without a swap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from tdtp.packet import Field

NULL_SENTINEL: Final = "\\N"

# Characters XML 1.0 cannot carry at all (TAB, LF, CR are fine), plus lone surrogates.
_XML_ILLEGAL = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
XML_ILLEGAL_RE: Final = re.compile(f"[{_XML_ILLEGAL}]")
# One search answers "does this string need escaping or refusing?" on the hot path.
NEEDS_WORK_RE: Final = re.compile(f"[\\\\|\n{_XML_ILLEGAL}]")
# Left-to-right scan of a row line: an escape pair, or a separator.
_SCAN_RE = re.compile(r"\\(.)|\|", re.DOTALL)
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def escape_value(s: str) -> str:
    """Value-escape one text (``\\`` → ``\\\\``, ``|`` → ``\\|``, LF → ``\\n``); nothing else."""
    if "\\" in s:
        s = s.replace("\\", "\\\\")
    if "|" in s:
        s = s.replace("|", "\\|")
    if "\n" in s:
        s = s.replace("\n", "\\n")
    return s


def _unescape_pair(m: re.Match[str]) -> str:
    c = m.group(1)
    return "\n" if c == "n" else c


def unescape_value(s: str) -> str:
    """Reverse of ``escape_value`` for one field; a lone trailing backslash stays."""
    if "\\" not in s:
        return s
    return _UNESCAPE_RE.sub(_unescape_pair, s)


def split_raw(line: str) -> list[str]:
    """Split a row line on unescaped ``|`` but keep each field escaped.

    Decoders need the raw field to tell ``NULL_SENTINEL`` from a real ``N``.
    """
    if "\\" not in line:
        return line.split("|")
    out: list[str] = []
    start = 0
    for m in _SCAN_RE.finditer(line):
        if m.group(1) is None:
            out.append(line[start : m.start()])
            start = m.end()
    out.append(line[start:])
    return out


def split_row(line: str) -> list[str]:
    """Split a row line into unescaped value texts (docs/format.md §3 read rules)."""
    if "\\" not in line:
        return line.split("|")
    out: list[str] = []
    buf: list[str] = []
    start = 0
    for m in _SCAN_RE.finditer(line):
        buf.append(line[start : m.start()])
        c = m.group(1)
        if c is None:
            out.append("".join(buf))
            buf = []
        else:
            buf.append("\n" if c == "n" else c)
        start = m.end()
    buf.append(line[start:])
    out.append("".join(buf))
    return out


def join_row(values: Sequence[str]) -> str:
    """Join already-escaped value texts into a row line."""
    return "|".join(values)


def field_where(field: Field) -> str:
    """The location a value error names: the field (callers prefix part and row)."""
    return f"field {field.name!r}"


LINES_PER_BLOCK_BYTES = 64 * 1024


def lines_to_blocks(lines: Iterable[str]) -> Iterator[bytes]:
    """Group row lines into UTF-8 blocks of whole lines, each line ending in LF.

    Blocks are what the part builder consumes (see ``tdtp.parts``); sources that
    produce row lines one at a time are adapted here, in ~64 KiB steps so the
    first part is not held back.
    """
    group: list[str] = []
    size = 0
    for line in lines:
        group.append(line)
        size += len(line) + 1
        if size >= LINES_PER_BLOCK_BYTES:
            group.append("")
            yield "\n".join(group).encode("utf-8")
            group, size = [], 0
    if group:
        group.append("")
        yield "\n".join(group).encode("utf-8")
