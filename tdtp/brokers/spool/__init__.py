"""The embedded default broker: a part log in plain files, no server needed.

URL: ``spool:///DIR/STREAM`` (three slashes: the path as written, relative to the
working directory) or ``spool:////abs/DIR/STREAM`` (four: absolute).  Options in
the query or as keywords: ``segment_bytes`` (default 256MB), ``retention_bytes``,
``retention_age`` (``7d``, ``6h``, seconds), ``max_message_bytes`` (128 MiB),
``max_in_flight`` (group-commit window of :meth:`SpoolLog.publish_many`),
``poll_interval`` (how often a following reader looks for new data), ``create``.

Layout in ``DIR`` (after the ``rotate+file`` storage of the seeds):

- ``STREAM.<first_seq:020d>.dat`` -- segments, each named by the first seq it
  holds; zero padding makes ``ls`` order equal seq order.  The newest one is the
  current segment being appended to, and ``STREAM.current.dat`` is a symlink to it
  for people and ``tail``.  Segments are never renamed: a reader holding one open
  never sees it change identity, and rotation is just "create the next file".
- ``STREAM.<first_seq:020d>.idx`` -- the index: one little-endian u64 file offset
  per record.  Written after the record is durable, never trusted blindly, and
  rebuilt from the segment whenever it disagrees (:meth:`SpoolLog.rebuild_index`).
- ``STREAM.lock`` -- ``flock`` taken by a writer around each append, so several
  writers (say two partitions exported at once) interleave whole records.
  Readers never take it.
- ``STREAM.dead/`` -- dead letters: ``<seq>.body`` plus ``<seq>.reason.json``.

Modules: ``format`` (the bytes of segments, records and indexes), ``files`` (the
names above), ``log`` (:class:`SpoolLog`: options and the writer), ``cursor`` (the
reader).  Everything callers and tests used from ``tdtp.brokers.spool`` when it was
one module is still importable from here.
"""

from __future__ import annotations

from tdtp.brokers.spool.cursor import FETCH_MAX_BYTES, FETCH_MAX_RECORDS, SpoolCursor
from tdtp.brokers.spool.format import (
    IDX_ENTRY,
    REC_HEADER,
    REC_MAGIC,
    REC_PREFIX,
    SEG_HEADER,
    SEG_MAGIC,
    record_crc,
)
from tdtp.brokers.spool.log import DEFAULT_SEGMENT_BYTES, OPTIONS, SpoolLog, parse_spool_url

#: The record CRC under the name it had when the spool was one module (tests build records with it).
_crc = record_crc

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "FETCH_MAX_BYTES",
    "FETCH_MAX_RECORDS",
    "IDX_ENTRY",
    "OPTIONS",
    "REC_HEADER",
    "REC_MAGIC",
    "REC_PREFIX",
    "SEG_HEADER",
    "SEG_MAGIC",
    "SpoolCursor",
    "SpoolLog",
    "parse_spool_url",
    "record_crc",
]
