"""Reading RabbitMQ: a consuming connection with reconnects, and the cursors over it.

Why apart from the log: a reader owns its connection (pika connections belong to
one thread), and a queue reader may even outlive the read -- its unacked
messages are acked later, from any thread.  The cursors are given what they need
explicitly: the :class:`~tdtp.brokers.rabbitmq.amqp.Endpoint` to connect to, the
prefetch and reconnect timeout, and for a queue the log's delivery counter and its
register of parked readers.

- :class:`StreamCursor`: seq = the delivery's ``x-stream-offset``; after a lost
  connection it resumes at the next offset.
- :class:`QueueCursor`: a classic/quorum queue has no offsets; seq counts the
  log's deliveries.  Messages stay unacked until :meth:`QueueCursor.ack`; after a
  lost connection the broker redelivers them.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tdtp.brokers.base import Cursor, Message, normalize_headers
from tdtp.brokers.rabbitmq.amqp import LOG, STREAM_OFFSET, Endpoint, is_transient, suppress


class DeliveryCounter:
    """Queue mode: the seqs of one log's deliveries, numbered across all its readers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0

    @property
    def count(self) -> int:
        """Deliveries so far: the seq the next one gets."""
        with self._lock:
            return self._next

    def take(self) -> int:
        with self._lock:
            seq = self._next
            self._next += 1
            return seq


class ParkedReaders:
    """The threads keeping finished queue reads open for late acks; the log waits for them on close."""

    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()

    def add(self, thread: threading.Thread) -> None:
        self._threads.add(thread)

    def discard(self, thread: threading.Thread) -> None:
        self._threads.discard(thread)

    def join(self, timeout: float) -> None:
        """Wait for each parked reader (up to ``timeout`` s each)."""
        for thread in list(self._threads):
            thread.join(timeout)


class Consumer:
    """One consuming connection owned by the reading thread, with reconnects."""

    def __init__(self, endpoint: Endpoint, prefetch: int) -> None:
        self.endpoint = endpoint
        self.prefetch = prefetch
        self.conn: BlockingConnection | None = None
        self.channel: BlockingChannel | None = None
        self.buffer: deque[tuple[int, Any, bytes]] = deque()
        self.generation = 0
        self.woken = False  # set by another consumer of this connection (EndProbe) to end a pump early

    def _on_message(self, _ch: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
        self.buffer.append((method.delivery_tag, props, body))

    def open(self, arguments: dict[str, Any] | None, deadline: float) -> int:
        """(Re)connect and start consuming; retried through broker restarts until ``deadline``.

        Returns the ready-message count seen just *before* consuming started (a
        queue's backlog; always 0 for a stream).
        """
        endpoint = self.endpoint
        while True:
            self.close()
            try:
                self.conn = endpoint.connect(deadline)
                self.channel = self.conn.channel()
                ready = endpoint.declare(self.channel, endpoint.stream, passive=True)
                self.channel.basic_qos(prefetch_count=self.prefetch)
                self.channel.basic_consume(endpoint.stream, self._on_message, arguments=arguments)
                self.generation += 1
                return ready
            except (pex.AMQPError, OSError) as exc:
                if not is_transient(exc) or endpoint.closed or time.monotonic() >= deadline:
                    self.close()
                    raise endpoint.error(f"cannot consume: {exc!r}") from exc
                time.sleep(0.3)

    def pump(self, wait: float) -> None:
        """Wait up to ``wait`` s for deliveries (returns early once some arrived)."""
        assert self.conn is not None
        end = time.monotonic() + wait
        self.woken = False
        while not self.buffer and not self.woken:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            try:
                self.conn.process_data_events(time_limit=remaining)
            except ValueError:  # pika's ioloop when the socket died under a timer ("Timeout closed")
                if self.conn.is_open:
                    raise
                raise pex.StreamLostError("connection lost during I/O") from None

    def close(self) -> None:
        self.buffer.clear()
        conn, self.conn, self.channel = self.conn, None, None
        if conn is not None:
            with suppress():
                if conn.is_open:
                    conn.close()


class EndProbe:
    """The stream's end, probed on a channel of the reader's own connection while it reads.

    What :class:`tdtp.brokers.rabbitmq.probes.StreamProbe` does before a read, done
    beside it instead: consume from ``x-stream-offset: "last"`` and take the highest
    offset delivered until ``quiet`` s pass with nothing new (``wait`` s when nothing
    comes: an empty stream).  Meanwhile ``floor`` (the highest offset seen + 1, at
    least ``known``) already says which messages are history, so a reader never waits
    for the probe before its first message (docs: README, first part fast).
    """

    def __init__(self, consumer: Consumer, queue: str, wait: float, quiet: float, known: int) -> None:
        assert consumer.conn is not None
        self.consumer = consumer
        self.wait, self.quiet = wait, quiet
        self.floor = known
        self.done = False
        self._started = time.monotonic()
        self._last_at = 0.0
        self.channel = consumer.conn.channel()
        self.channel.basic_qos(prefetch_count=64)
        self._tag = self.channel.basic_consume(queue, self._on_message, arguments={STREAM_OFFSET: "last"})

    def _on_message(self, ch: BlockingChannel, method: Any, props: Any, _body: bytes) -> None:
        offset = (props.headers or {}).get(STREAM_OFFSET)
        if offset is not None and int(offset) + 1 > self.floor:
            self.floor = int(offset) + 1
            self.consumer.woken = True  # a message held back for the marker may go now
        self._last_at = time.monotonic()
        ch.basic_ack(method.delivery_tag)

    def deadline(self) -> float:
        """When the probe is over if nothing more is delivered."""
        return self._last_at + self.quiet if self._last_at else self._started + self.wait

    def check(self) -> bool:
        """True (and the probe channel closed) once the end is known."""
        if not self.done and time.monotonic() >= self.deadline():
            self.done = True
            self.close()
        return self.done

    def close(self) -> None:
        with suppress():
            if self.channel.is_open:
                self.channel.basic_cancel(self._tag)
                self.channel.close()


class StreamCursor(Cursor):
    """Consumes a stream from an offset; seq = the delivery's ``x-stream-offset``.

    ``start_hw`` is the stream's high watermark taken by the log just before, or None:
    then an :class:`EndProbe` finds it while the cursor already consumes (not for
    ``online``, which starts there).  An ``online`` read starts at the high watermark
    (an integer offset, not ``"next"``, so that nothing published between the probe
    and the consumer's start is skipped).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        start_hw: int | None,
        start: int | None,
        online: bool,
        *,
        prefetch: int,
        reconnect_timeout: float,
        probe_wait: float = 1.0,
        probe_quiet: float = 0.1,
        known_hw: int = 0,
    ) -> None:
        self.endpoint = endpoint
        self.reconnect_timeout = reconnect_timeout
        self.probe: EndProbe | None = None
        self._probe_args = (probe_wait, probe_quiet, known_hw)
        if start_hw is not None:
            self.start_hw = start_hw
        if online:
            assert start_hw is not None, "an online read starts at a known high watermark"
            start = self.start_hw
        self.explicit = start is not None
        self.want = start or 0
        self.next = self.want
        self.checked_retention = False
        self.consumer = Consumer(endpoint, prefetch)
        self._unsettled = start_hw is None
        self._consume(time.monotonic() + reconnect_timeout)

    def _consume(self, deadline: float) -> None:
        offset: int | str = self.next if (self.explicit or self.next > 0) else "first"
        self.consumer.open({STREAM_OFFSET: offset}, deadline)
        if self._unsettled and self.consumer.conn is not None:
            if self.probe is not None:
                self._probe_args = (*self._probe_args[:2], self.probe.floor)
            self.probe = EndProbe(self.consumer, self.endpoint.stream, *self._probe_args)

    @property
    def settled(self) -> bool:
        if self._unsettled and self.probe is not None and self.probe.check():
            self.start_hw = self.probe.floor
            self._unsettled = False
            self.probe = None
        return not self._unsettled

    @property
    def hw_floor(self) -> int:
        if self._unsettled and self.probe is not None:
            return self.probe.floor
        return self.start_hw

    @property
    def position(self) -> int:
        return max(self.next, self.want)

    def fetch(self, wait: float) -> list[Message]:
        consumer = self.consumer
        if self.probe is not None and not self.settled:
            # Come back when the probe is due, so the marker is placed without waiting a whole slice.
            wait = max(0.0, min(wait, self.probe.deadline() - time.monotonic()))
        try:
            consumer.pump(wait)
        except (pex.AMQPError, OSError) as exc:
            if not is_transient(exc):
                raise self.endpoint.error(f"reading failed: {exc!r}") from exc
            LOG.warning(
                "%s: reader lost the connection (%r); resuming at seq %d", self.endpoint.where, exc, self.next
            )
            self._consume(time.monotonic() + self.reconnect_timeout)
            return []
        out: list[Message] = []
        last_tag = 0
        while consumer.buffer:
            tag, props, body = consumer.buffer.popleft()
            last_tag = tag
            headers = normalize_headers(props.headers)
            seq = int(headers.pop(STREAM_OFFSET, self.next))
            if not self.checked_retention:
                self.checked_retention = True
                if self.explicit and seq > self.want:
                    raise self.endpoint.error(
                        f"seq {self.want} is no longer retained: the stream starts at seq {seq}"
                    )
            if seq < self.next:
                continue  # before the requested start (chunk granularity) or re-sent after a reconnect
            self.next = seq + 1
            out.append(Message(seq=seq, body=body, headers=headers))
        if last_tag and consumer.channel is not None:
            # A stream keeps the messages: the ack is only flow credit.  If the connection
            # just died, the next fetch notices and resumes at self.next.
            with suppress():
                consumer.channel.basic_ack(last_tag, multiple=True)
        return out

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()
        self.consumer.close()


@dataclass(slots=True, frozen=True)
class AckToken:
    """What :meth:`RabbitLog.ack` needs to ack a queue delivery on the connection that got it."""

    cursor: QueueCursor
    delivery_tag: int
    generation: int


class QueueCursor(Cursor):
    """Consumes a classic/quorum queue; seq = the log's delivery counter; manual acks.

    Messages stay unacked until :meth:`ack`.  When the read() generator ends while
    some of them are still unacked (say the importer collected a batch and commits
    it afterwards), the connection is *parked*: the consumer is cancelled and a
    small thread keeps the connection alive until the last ack (or until the log is
    closed, when the broker requeues whatever is left).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        prefetch: int,
        reconnect_timeout: float,
        deliveries: DeliveryCounter,
        parked: ParkedReaders,
    ) -> None:
        self.endpoint = endpoint
        self.reconnect_timeout = reconnect_timeout
        self.deliveries = deliveries
        self.parked_readers = parked
        self.consumer = Consumer(endpoint, prefetch)
        self.thread = threading.get_ident()
        self.lock = threading.Lock()
        self.unacked: set[int] = set()
        self.parked = False
        ready = self.consumer.open(None, time.monotonic() + reconnect_timeout)
        self.start_hw = deliveries.count + ready
        self.drained = ready == 0
        self.idle = False

    @property
    def position(self) -> int:
        return self.deliveries.count

    def reached(self) -> bool:
        """Caught up when the backlog seen at start is delivered or the queue is empty.

        Another consumer may take part of the backlog, so an idle reader also asks the
        queue (passive declare) whether anything is still ready.
        """
        if self.drained or self.position >= self.start_hw:
            return True
        if self.idle and self.consumer.channel is not None and not self.consumer.buffer:
            try:
                self.drained = (
                    self.endpoint.declare(self.consumer.channel, self.endpoint.stream, passive=True) == 0
                )
            except (pex.AMQPError, OSError):
                return False
        return self.drained

    def fetch(self, wait: float) -> list[Message]:
        consumer = self.consumer
        try:
            consumer.pump(wait)
        except (pex.AMQPError, OSError) as exc:
            if not is_transient(exc):
                raise self.endpoint.error(f"reading failed: {exc!r}") from exc
            LOG.warning(
                "%s: reader lost the connection (%r); unacked messages will be redelivered",
                self.endpoint.where,
                exc,
            )
            with self.lock:
                self.unacked.clear()
            consumer.open(None, time.monotonic() + self.reconnect_timeout)
            return []
        self.idle = not consumer.buffer
        out: list[Message] = []
        while consumer.buffer:
            tag, props, body = consumer.buffer.popleft()
            seq = self.deliveries.take()
            with self.lock:
                self.unacked.add(tag)
            token = AckToken(self, tag, consumer.generation)
            out.append(Message(seq=seq, body=body, headers=normalize_headers(props.headers), ack_token=token))
        return out

    def ack(self, delivery_tag: int, generation: int) -> None:
        """Ack on the reading connection, from any thread, while reading or parked."""
        with self.lock:
            consumer = self.consumer
            conn, channel = consumer.conn, consumer.channel
            if generation != consumer.generation or conn is None or channel is None or not channel.is_open:
                LOG.warning(
                    "%s: ack after the reader's connection closed; the message will be redelivered",
                    self.endpoint.where,
                )
                return
            if delivery_tag not in self.unacked:
                return  # acked twice (an ack of an unknown tag would make RabbitMQ close the channel)
            self.unacked.discard(delivery_tag)
            if not self.parked and threading.get_ident() == self.thread:
                channel.basic_ack(delivery_tag)
            else:
                conn.add_callback_threadsafe(functools.partial(channel.basic_ack, delivery_tag))

    def release(self, messages: list[Message]) -> None:
        """Requeue fetched messages the caller never saw, so they are not held by this reader."""
        channel = self.consumer.channel
        for msg in messages:
            token = msg.ack_token
            if isinstance(token, AckToken) and token.generation == self.consumer.generation:
                with self.lock:
                    self.unacked.discard(token.delivery_tag)
                if channel is not None and channel.is_open:
                    with suppress():
                        channel.basic_reject(token.delivery_tag, requeue=True)

    def close(self) -> None:
        consumer = self.consumer
        with self.lock:
            conn, channel = consumer.conn, consumer.channel
            if (
                conn is not None
                and channel is not None
                and channel.is_open
                and self.unacked
                and not self.endpoint.closed
            ):
                try:
                    for tag in list(channel.consumer_tags):
                        channel.basic_cancel(tag)  # pika requeues deliveries it still holds
                    for tag, _, _ in consumer.buffer:
                        channel.basic_reject(tag, requeue=True)
                    consumer.buffer.clear()
                    conn.process_data_events(0)  # run acks other threads queued
                    self.parked = True
                except (pex.AMQPError, OSError):
                    self.parked = False
            if self.parked:
                thread = threading.Thread(target=self._keep_parked, name="tdtp-rabbitmq-parked", daemon=True)
                self.parked_readers.add(thread)
                thread.start()
                return
        consumer.close()  # unacked deliveries return to the queue for the next reader

    def _keep_parked(self) -> None:
        """Serve acks (and heartbeats) on the parked connection until nothing is unacked."""
        consumer = self.consumer
        try:
            while consumer.conn is not None and consumer.conn.is_open:
                with self.lock:
                    done = not self.unacked or self.endpoint.closed
                consumer.conn.process_data_events(time_limit=0.2)
                if done:
                    break
        except (pex.AMQPError, OSError):
            pass
        finally:
            with self.lock:
                self.parked = False
                consumer.close()
            self.parked_readers.discard(threading.current_thread())
