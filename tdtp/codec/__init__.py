"""TDTP packets to and from bytes (docs/format.md §1–4).

``encode_packet`` / ``encode_row_data`` write a packet in Go's layout;
``decode_packet`` parses and verifies one, ``decode_values`` turns its row lines
into Python values, ``peek_header`` reads the Header alone.  The modules, in the
order a packet is written:

- ``write``    Packet -> bytes: the envelope, version, and the ``<Data>`` element
- ``goxml``    Header and Schema exactly as Go's ``encoding/xml`` writes them
- ``rows``     the rows of ``<Data>``: refusing what XML cannot carry, escaping,
               collecting ``<R>`` texts, expanding the compact format
- ``zstd``     compressed rows: zstd frame, base64, checksum, size cap
- ``hashes``   v1.4 xxh3 hashes (write and verify) and the per-part checksum
- ``read``     bytes -> Packet: every check a part passes before it is written
- ``limits``   ``DecodeLimits``: how much one part may hold (bytes, rows, values,
               tags, depth), each refusal a ``LimitExceeded``
- ``xmlread``  the hardened XML parser, Header and Schema elements -> values
- ``ids``      message ids and timestamps

Callers import from ``tdtp.codec``; the names below are the whole interface.
"""

from tdtp.codec.hashes import part_checksum
from tdtp.codec.ids import export_message_id, part_message_id, utc_timestamp
from tdtp.codec.limits import DEFAULT_LIMITS, DecodeLimits
from tdtp.codec.read import DEFAULT_MAX_BYTES, decode_packet, decode_values, peek_header
from tdtp.codec.write import XML_DECLARATION, encode_packet, encode_row_data
from tdtp.codec.zstd import ZSTD_MAGIC

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BYTES",
    "DecodeLimits",
    "XML_DECLARATION",
    "ZSTD_MAGIC",
    "decode_packet",
    "decode_values",
    "encode_packet",
    "encode_row_data",
    "export_message_id",
    "part_checksum",
    "part_message_id",
    "peek_header",
    "utc_timestamp",
]
