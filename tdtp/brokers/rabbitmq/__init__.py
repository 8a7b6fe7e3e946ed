"""RabbitMQ as a part log (stream queues) or as a work queue (classic/quorum, Go-compatible).

URL: ``rabbitmq://user:pass@host:port/STREAM?queue_type=stream|quorum|classic``.
Other options (query or keywords): ``vhost`` (default ``/``), ``max_length_bytes`` and
``max_age`` (stream retention, e.g. ``2GB`` / ``7D``), ``max_message_bytes`` (default
128 MiB, RabbitMQ's own default; AMQP 0-9-1 cannot ask the broker for it),
``max_in_flight`` (unconfirmed window of :meth:`RabbitLog.publish_many`), ``prefetch``,
``connect_timeout`` (give up connecting after this long, default 3 s),
``publish_timeout`` (longest wait for a confirm, including while the broker has
the connection blocked; default 30 s), ``reconnect_timeout`` (how long publish and
read keep reconnecting through a broker restart), ``hw_probe_wait`` /
``hw_probe_quiet`` (see below), ``create``.

What a seq is:

- **stream** (default): the stream offset.  Readers get it exactly from each
  delivery's ``x-stream-offset`` header.  A publisher confirm does not carry the
  offset, so :meth:`RabbitLog.publish` counts confirms on its channel from the
  stream's end, probed once per channel (right after the first confirm on a
  stream not known to hold messages, before re-publishing after a reconnect).
  That is exact while this process is the only writer of the stream; with
  several concurrent writers the returned seq is an estimate -- readers always
  get exact offsets.
- **quorum / classic**: a queue has no offsets and no replay.  seq is a counter of
  this :class:`RabbitLog` object (deliveries for readers, confirms for
  publishers); ``from_seq``/``after_seq``/``online`` are refused.  Messages stay in
  the queue until :meth:`RabbitLog.ack` (call it after the import committed, from
  any thread, during or after the read); unacked ones go back to the queue when
  the RabbitLog is closed (or its connection dies) and are delivered to the next
  reader.  A sensor should read ``high_watermark()`` as "messages delivered in
  this session + messages ready in the queue" (passive declare): it does not
  count what other consumers took.  CaughtUp comes after the backlog that was
  ready when the read started.  Bodies are the bare XML
  with ``content_type application/xml``, default exchange, routing key = queue,
  durable queue declared with Go's flags, so Go TDTP producers and consumers
  interoperate; our headers are extra and optional.

High watermark of a stream: RabbitMQ 3.10 reports ``message_count = 0`` for streams
and has no stats call, so :meth:`RabbitLog.high_watermark` consumes from
``x-stream-offset: "last"`` (the start of the last chunk), takes the highest offset
delivered until ``hw_probe_quiet`` seconds pass with nothing new, and cancels.
That costs one chunk of bodies (usually one part, since parts are published with
confirms) and about ``hw_probe_quiet`` (0.1 s); an empty stream costs
``hw_probe_wait`` (1 s) because "nothing delivered" is the only sign of emptiness.

Online reads of a stream start at the probed high watermark (an integer offset)
rather than ``"next"``: the CaughtUp marker then names exactly the first live seq,
and nothing published between the probe and the consumer's start is skipped.  Every
other read starts consuming at once and probes the end beside it, on a channel of
its own connection (``consumers.EndProbe``): messages below the highest offset the
probe has seen are history and pass at once, so a reader never waits 0.1-1 s for the
probe before its first message.  ``seq_floor()`` (where an export's reader may start,
taken before its first publish) answers at the probe's first delivery, or after
0.25 s on an empty stream: a floor may be low, never high.

Reconnects: publish and read reopen a lost connection with backoff until
``reconnect_timeout`` (a broker restart takes a few seconds); a stream reader
resumes at the next offset, a publisher re-sends every unconfirmed message
(at-least-once: a duplicate may land, the importer's ledger skips it).  A broker
that cannot be reached at open gives a BrokerError after ``connect_timeout``.

Dead letters go to the queue ``STREAM.dead`` (same queue type) with the reason in
the ``x-tdtp-reason`` header (plus ``x-tdtp-seq`` and the original headers).

Modules: ``amqp`` (connecting, declaring, retrying; the shared connection),
``confirms`` (the publisher-confirm window), ``consumers`` (readers and their
reconnects), ``probes`` (a stream's end), ``dead_letters``, and ``log``
(:class:`RabbitLog`, which wires them).  Everything importable from
``tdtp.brokers.rabbitmq`` when it was one module still is.
"""


from __future__ import annotations

from tdtp.brokers.headers import REASON_HEADER, SEQ_HEADER, STREAM_HEADER
from tdtp.brokers.rabbitmq.amqp import LOG
from tdtp.brokers.rabbitmq.log import OPTIONS, QUEUE_TYPES, RabbitLog

__all__ = ["LOG", "OPTIONS", "QUEUE_TYPES", "REASON_HEADER", "SEQ_HEADER", "STREAM_HEADER", "RabbitLog"]
