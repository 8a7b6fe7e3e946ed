"""RabbitLog: the part log over one RabbitMQ queue, put together from its parts.

Why this module is thin: it parses the URL and options and wires the pieces --
the shared connection (``tdtp/brokers/rabbitmq/amqp.py``), the publisher-confirm
window (``confirms.py``), the readers (``consumers.py``), the high-watermark probe
(``probes.py``) and the dead-letter queue (``dead_letters.py``).  What a seq means
and what each option does is told in ``tdtp/brokers/rabbitmq/__init__.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tdtp.brokers.base import DEFAULT_MAX_MESSAGE_BYTES, BrokerError, Cursor, DeadLetter, Message, PartLog
from tdtp.brokers.options import BOOL, DURATION, INT, OPT_SIZE, SIZE, STR, resolve_options
from tdtp.brokers.rabbitmq.amqp import Endpoint, SharedConnection, suppress
from tdtp.brokers.rabbitmq.confirms import Publisher
from tdtp.brokers.rabbitmq.consumers import (
    AckToken,
    DeliveryCounter,
    ParkedReaders,
    QueueCursor,
    StreamCursor,
)
from tdtp.brokers.rabbitmq.dead_letters import DeadLetterQueue
from tdtp.brokers.rabbitmq.probes import StreamProbe

QUEUE_TYPES = ("stream", "quorum", "classic")

OPTIONS = {
    "queue_type": (STR, "stream"),
    "vhost": (STR, "/"),
    "max_length_bytes": (OPT_SIZE, None),
    "max_age": (lambda v: None if v in (None, "") else str(v), None),
    "max_message_bytes": (SIZE, DEFAULT_MAX_MESSAGE_BYTES),
    "max_in_flight": (INT, 4),
    "prefetch": (INT, 8),
    "connect_timeout": (DURATION, 3.0),
    "publish_timeout": (DURATION, 30.0),
    "reconnect_timeout": (DURATION, 30.0),
    "heartbeat": (INT, 30),
    "hw_probe_wait": (DURATION, 1.0),
    "hw_probe_quiet": (DURATION, 0.1),
    "stall_timeout": (DURATION, 60.0),
    "create": (BOOL, True),
}


class RabbitLog(PartLog):
    """RabbitMQ stream queue as a part log; classic/quorum queue as a Go-compatible work queue."""

    def __init__(self, url: str, **options: object) -> None:
        super().__init__()
        self.url = url
        parts = urlsplit(url)
        if parts.scheme.lower() != "rabbitmq":
            raise BrokerError("not a rabbitmq:// URL", where=url)
        stream = unquote(parts.path.lstrip("/"))
        if not stream or "/" in stream:
            raise BrokerError("URL must name one stream: rabbitmq://user:pass@host:port/STREAM", where=url)
        self.stream = stream
        opts = resolve_options(url, parts.query, options, OPTIONS)
        if opts["queue_type"] not in QUEUE_TYPES:
            raise self.error(f"queue_type must be one of {', '.join(QUEUE_TYPES)}, got {opts['queue_type']!r}")
        self.queue_type: str = opts["queue_type"]
        self.is_stream = self.queue_type == "stream"
        self.publish_seqs_exact = not self.is_stream  # see "What a seq is" in the package docstring
        self.max_message_bytes = opts["max_message_bytes"]
        self.max_in_flight = max(1, opts["max_in_flight"])
        self.prefetch = max(1, opts["prefetch"])
        self.connect_timeout: float = opts["connect_timeout"]
        self.publish_timeout: float = opts["publish_timeout"]
        self.reconnect_timeout: float = opts["reconnect_timeout"]
        self.hw_probe_wait: float = opts["hw_probe_wait"]
        self.hw_probe_quiet: float = opts["hw_probe_quiet"]
        self.stall_timeout = opts["stall_timeout"]
        self.create: bool = opts["create"]
        self.params = pika.ConnectionParameters(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5672,
            virtual_host=opts["vhost"],
            credentials=pika.PlainCredentials(unquote(parts.username or "guest"), unquote(parts.password or "guest")),
            heartbeat=opts["heartbeat"],
            blocked_connection_timeout=self.publish_timeout,
            connection_attempts=1,
            socket_timeout=max(0.5, min(5.0, self.connect_timeout)),
            stack_timeout=max(1.0, min(10.0, self.connect_timeout + 1)),
        )
        self.arguments: dict[str, Any] = {}
        if self.queue_type != "classic":
            self.arguments["x-queue-type"] = self.queue_type
        if opts["max_length_bytes"] is not None:
            self.arguments["x-max-length-bytes"] = opts["max_length_bytes"]
        if opts["max_age"] is not None:
            self.arguments["x-max-age"] = opts["max_age"]
        self._endpoint = Endpoint(
            self.params, self.stream, self.queue_type, self.arguments, where=self.where, closed=self._closed
        )
        self._shared = SharedConnection(self._endpoint, create=self.create, publish_timeout=self.publish_timeout)
        self._probe = StreamProbe(self.hw_probe_wait, self.hw_probe_quiet)
        self._publisher = Publisher(
            self._shared,
            self._probe,
            is_stream=self.is_stream,
            max_in_flight=self.max_in_flight,
            publish_timeout=self.publish_timeout,
            reconnect_timeout=self.reconnect_timeout,
        )
        self._dead = DeadLetterQueue(
            self._shared,
            self._probe,
            is_stream=self.is_stream,
            prefetch=self.prefetch,
            reconnect_timeout=self.reconnect_timeout,
        )
        self._deliveries = DeliveryCounter()  # queue mode: seqs of deliveries in this session
        self._parked = ParkedReaders()  # queue readers kept open for late acks
        with self._shared.lock:
            self._shared.get(deadline=time.monotonic() + self.connect_timeout)

    # ------------------------------------------------------------- plumbing
    @property
    def dead_queue(self) -> str:
        return self._dead.name

    def connect(self, deadline: float) -> BlockingConnection:
        """A new connection, retried with exponential backoff until ``deadline``."""
        return self._endpoint.connect(deadline)

    def declare(self, channel: BlockingChannel, queue: str, *, passive: bool = False) -> int:
        """Declare ``queue`` durable with this log's type and arguments; return its message count."""
        return self._endpoint.declare(channel, queue, passive=passive)

    # --------------------------------------------------------------- publish
    def publish(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        """Publish persistent, wait for the publisher confirm, return the seq (see the package doc)."""
        return next(iter(self.publish_many([(body, headers)])))

    def publish_many(self, items: Iterable[tuple[bytes, dict[str, str] | None]]) -> Iterator[int]:
        """Publish keeping at most ``max_in_flight`` unconfirmed messages; yield seqs in order.

        A lost connection is re-opened with backoff (until ``reconnect_timeout``) and
        every message not yet confirmed is published again: at-least-once, so a
        part can appear twice in the stream (the importer's ledger skips it) but a
        part whose seq was returned is never lost.  While the broker blocks the
        connection (memory or disk alarm) publishing waits, and gives up with a
        BrokerError after ``publish_timeout``.
        """
        publisher = self._publisher
        return self.publish_window(items, publisher.send, publisher.confirm_oldest, publisher.window_limit)

    # ------------------------------------------------------------ watermark
    def high_watermark(self) -> int:
        """Stream: next offset (probe, see the package doc).  Queue: delivered here + ready in the queue."""
        deadline = time.monotonic() + self.reconnect_timeout
        with self._shared.lock:
            while True:
                try:
                    conn = self._shared.get(deadline)
                    if self.is_stream:
                        publisher = self._publisher
                        publisher.known_hw = max(publisher.known_hw, self._probe.next_offset(conn, self.stream))
                        return publisher.known_hw
                    channel = conn.channel()
                    try:
                        return self._deliveries.count + self.declare(channel, self.stream, passive=True)
                    finally:
                        with suppress():
                            channel.close()
                except (pex.AMQPError, OSError) as exc:
                    self._shared.retry_or_raise(exc, deadline, "high_watermark")

    def seq_floor(self) -> int:
        """Stream: a seq at or below the end, at the first delivery of the last chunk (a few ms;
        ``min(hw_probe_wait, 0.25)`` s on an empty stream; at once on a stream this log
        created, which was empty then).  Queue: :meth:`high_watermark`."""
        if not self.is_stream:
            return self.high_watermark()
        deadline = time.monotonic() + self.reconnect_timeout
        with self._shared.lock:
            while True:
                try:
                    conn = self._shared.get(deadline)
                    if self._shared.created_queue:  # this log made the stream: it started empty
                        return self._publisher.known_hw
                    floor = self._probe.next_offset(conn, self.stream, floor_wait=min(self.hw_probe_wait, 0.25))
                    return max(floor, self._publisher.known_hw)
                except (pex.AMQPError, OSError) as exc:
                    self._shared.retry_or_raise(exc, deadline, "seq_floor")

    # ---------------------------------------------------------------- read
    def open_cursor(self, start: int | None, online: bool) -> Cursor:
        if self.is_stream:
            # Only an online read needs the end before it consumes (it starts there); any
            # other read probes it beside consuming, so its first message is not held up.
            return StreamCursor(
                self._endpoint,
                self.high_watermark() if online else None,
                start,
                online,
                prefetch=self.prefetch,
                reconnect_timeout=self.reconnect_timeout,
                probe_wait=self.hw_probe_wait,
                probe_quiet=self.hw_probe_quiet,
                known_hw=self._publisher.known_hw,
            )
        if online or start not in (None, 0):
            raise self.error(
                f"a {self.queue_type} queue has no replay: from_seq/after_seq/online need queue_type=stream"
            )
        return QueueCursor(
            self._endpoint,
            prefetch=self.prefetch,
            reconnect_timeout=self.reconnect_timeout,
            deliveries=self._deliveries,
            parked=self._parked,
        )

    def ack(self, message: Message) -> None:
        """Queue mode: acknowledge after the import committed.  Stream mode: nothing to do."""
        token = message.ack_token
        if isinstance(token, AckToken):
            token.cursor.ack(token.delivery_tag, token.generation)

    # ---------------------------------------------------------- dead letters
    def dead_letter(self, message: Message, reason: str) -> None:
        """Publish the body to ``STREAM.dead`` with the reason in a header (confirmed), then ack.

        Every reader of a stream meets the same foreign message; each process sends a
        given seq to the dead letters once, and :meth:`dead_letters` shows one per seq.
        """
        if self._dead.send(message, reason):
            self.ack(message)

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters without consuming them (streams: replay; queues: get and requeue)."""
        return self._dead.read(limit)

    # ------------------------------------------------------------ lifecycle
    def delete(self) -> None:
        """Delete the queue and its dead-letter queue (tests, and removing a stream for good)."""
        with self._shared.lock:
            conn = self._shared.get(time.monotonic() + self.connect_timeout)
            for queue in (self.stream, self.dead_queue):
                channel = conn.channel()
                with suppress():
                    channel.queue_delete(queue)
                with suppress():
                    channel.close()
            self._shared.drop()

    def close(self) -> None:
        """Close connections; parked queue readers end too (their unacked messages are requeued)."""
        super().close()
        self._parked.join(5)
        with self._shared.lock:
            self._shared.drop()
