"""How much a decoder accepts from one part: ``DecodeLimits`` (docs/format.md §1, §3).

Parts are hostile until proven otherwise (docs/architecture.md, "Hostile input is
data" and "Memory bounded by design"): a 9 KB zstd part can claim 200 MiB of rows,
an uncompressed part of tiny rows costs ~300 bytes of parse tree per row.  Every
limit is checked before the memory it protects is spent (decompression stops at
its cap, tags are counted before parsing, rows before splitting), and a refusal is
a ``LimitExceeded`` naming the part, the limit and how to raise it.

The defaults are a few times what any writer produces: our writer caps a part at
about 1.9 MB encoded and about 8 MiB of rows, Go at ~1.9 MB of XML; Go's reader
caps decompressed rows at 256 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from tdtp.packet import LimitExceeded

MiB = 2**20


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Caps on one part; pass ``decode_packet(..., limits=DecodeLimits(max_rows=...))``.

    - ``max_xml_bytes``: the packet as received (the compressed input), and the XML
      inside a whole-message zstd frame.  Default 64 MiB.
    - ``max_decoded_bytes``: a part's rows as text: the decompressed rows of a
      compressed part, the ``<R>`` texts of an uncompressed one, the rows after a
      compact part is expanded.  Default 32 MiB: four times the writer's ~8 MiB cap,
      far under Go's 256 MiB.
    - ``max_rows``: rows of a part, counted whether or not RecordsInPart says
      anything.  Default 1,000,000.
    - ``max_value_bytes``: one value's escaped text (also a dictionary entry's full
      text).  Default 16 MiB (a 12 MiB BLOB in base64).
    - ``max_xml_tags``: ``<`` characters of the XML, counted before parsing (each
      element needs one or two): what bounds the parse tree of an uncompressed part,
      about 300 bytes and two tags per row.  Default 600,000: 300k rows, about 90 MB
      at worst; a 1.9 MB part of the shortest rows (``<R>1</R>``) has 240k.
    - ``max_depth``: element nesting, the root being 1.  TDTP needs 5 (Schema, Field,
      SpecialValues, marker), TDTQL queries a few more.  Default 64 (the XML parser
      itself stops at 256).
    """

    max_xml_bytes: int = 64 * MiB
    max_decoded_bytes: int = 32 * MiB
    max_rows: int = 1_000_000
    max_value_bytes: int = 16 * MiB
    max_xml_tags: int = 600_000
    max_depth: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DecodeLimits.{f.name} must be a positive integer, not {value!r}")


DEFAULT_LIMITS = DecodeLimits()

_UNITS = {
    "max_xml_bytes": "bytes",
    "max_decoded_bytes": "bytes",
    "max_rows": "rows",
    "max_value_bytes": "bytes",
    "max_xml_tags": "tags",
    "max_depth": "levels",
}


def exceeded(what: str, limit: str, value: int, where: str) -> LimitExceeded:
    """The refusal for ``what`` (e.g. "decompressed data") going past ``DecodeLimits.<limit>``,
    set to ``value``.

    One line: the part (``where``), what is too big, the limit with its value, and
    the field to raise.
    """
    unit = _UNITS[limit]
    size = f" = {value / MiB:g} MiB" if unit == "bytes" and value >= MiB else ""
    return LimitExceeded(
        f"{what} exceeds the limit of {value} {unit} (DecodeLimits.{limit}{size}; "
        "raise it to accept such parts)",
        where=where,
        limit=limit,
        value=value,
    )
