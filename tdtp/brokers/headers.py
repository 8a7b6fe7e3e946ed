"""The names of the message headers a part travels with, spelled in one place.

Why one module: the exporter writes the routing headers (``tdtp/parts.py``,
``tdtp/exporter.py``), the read filters of the part log and the importer route by
them (``tdtp/brokers/views.py``, ``tdtp/importer/inputs.py``), and every broker
writes the dead-letter headers.  A name spelled two ways would not fail: the reader
would just see no header and route the part as a foreign one.  So every one of
those places imports the names from here.

It imports nothing itself, and ``tdtp/brokers/__init__.py`` imports no broker client
(pika, kafka-python), so any layer of the engine may use it.
"""

from __future__ import annotations

# ------------------------------------------------------------ routing headers
#: What a message is: :data:`KIND_DATA` or :data:`KIND_SUMMARY`; absent for foreign producers.
KIND = "kind"
#: The export (batch id) a part or summary belongs to.
EXPORT_ID = "export_id"
#: The source table name.
TABLE = "table"
#: The partition key of the export ("" for an unpartitioned table).
PARTITION = "partition"
#: The part number (1-based; "0" on a summary).
PART = "part"
#: Rows in the part (a summary: rows of the whole export).
ROWS = "rows"
#: Parts of the whole export (summary only).
TOTAL_PARTS = "total_parts"

#: Values of the :data:`KIND` header.
KIND_DATA = "data"
KIND_SUMMARY = "summary"

# -------------------------------------------------------- dead-letter headers
#: Why the message was set aside.
REASON_HEADER = "x-tdtp-reason"
#: The seq the message had in its stream.
SEQ_HEADER = "x-tdtp-seq"
#: The stream it came from (Kafka: ``TOPIC[partition]``).
STREAM_HEADER = "x-tdtp-stream"
