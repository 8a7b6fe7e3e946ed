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
and nothing published between the probe and the consumer's start is skipped.

Reconnects: publish and read reopen a lost connection with backoff until
``reconnect_timeout`` (a broker restart takes a few seconds); a stream reader
resumes at the next offset, a publisher re-sends every unconfirmed message
(at-least-once: a duplicate may land, the importer's ledger skips it).  A broker
that cannot be reached at open gives a BrokerError after ``connect_timeout``.

Dead letters go to the queue ``STREAM.dead`` (same queue type) with the reason in
the ``x-tdtp-reason`` header (plus ``x-tdtp-seq`` and the original headers).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tdtp.brokers.base import (
    DEFAULT_MAX_MESSAGE_BYTES,
    BrokerError,
    Cursor,
    DeadLetter,
    Message,
    PartLog,
    backoff_delays,
    content_type_of,
    normalize_headers,
)
from tdtp.brokers.options import BOOL, DURATION, INT, OPT_SIZE, SIZE, STR, resolve_options

LOG = logging.getLogger(__name__)

QUEUE_TYPES = ("stream", "quorum", "classic")
REASON_HEADER = "x-tdtp-reason"
SEQ_HEADER = "x-tdtp-seq"
STREAM_HEADER = "x-tdtp-stream"
#: Delivery headers RabbitMQ adds that are not the producer's routing facts.
_BROKER_HEADERS = ("x-stream-offset",)

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

#: Errors after which a new connection may succeed (broker restart, network blip).
_TRANSIENT = (
    pex.AMQPConnectionError,
    pex.ConnectionWrongStateError,
    pex.ChannelWrongStateError,
    pex.ChannelClosed,
    OSError,
)


def _noop() -> None:
    return None


def _starting(exc: pex.ChannelClosedByBroker) -> bool:
    """RabbitMQ's 404 for a durable queue whose node is still coming up after a restart."""
    return "down or inaccessible" in str(exc.reply_text)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, pex.ConnectionBlockedTimeout):
        return False
    if isinstance(exc, pex.ChannelClosedByBroker):
        # 403/404/406 are answers about the queue, not the connection, and retrying cannot
        # help -- except a queue whose node is still starting after a broker restart.
        if exc.reply_code == 404:
            return _starting(exc)
        return exc.reply_code not in (403, 406)
    return isinstance(exc, _TRANSIENT)


class _Confirms:
    """A publisher channel in confirm mode with several messages in flight.

    pika's BlockingChannel only offers "publish one, wait for its confirm".  To keep
    a window of ``max_in_flight`` unconfirmed parts we switch confirms on through the
    channel's underlying (asynchronous) channel object and record Basic.Ack/Nack by
    delivery tag ourselves; the blocking connection still does all the I/O.
    """

    def __init__(self, conn: BlockingConnection, deadline: float) -> None:
        self.conn = conn
        self.channel: BlockingChannel = conn.channel()
        impl = self.channel._impl  # noqa: SLF001 - see the class docstring
        self.next_tag = 1
        self.outstanding: set[int] = set()  # sent, not yet confirmed
        self.done: dict[int, bool] = {}  # confirmed, not yet collected: tag -> acked (False: nacked)
        self.returned = 0
        selected: list[object] = []
        impl.add_on_return_callback(self._on_return)

        def on_select_ok(frame: object) -> None:
            selected.append(frame)
            conn.call_later(0, _noop)

        impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_select_ok)
        while not selected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no Confirm.SelectOk from the broker")
            conn.process_data_events(time_limit=min(remaining, 0.5))
        #: Stream offset of tag 1 on this channel; None until known (see RabbitLog._confirm_head).
        self.seq_base: int | None = 0

    def _on_return(self, *_args: Any) -> None:
        self.returned += 1

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        ok = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:
            tags = [t for t in self.outstanding if t <= method.delivery_tag]
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            self.outstanding.discard(tag)
            self.done[tag] = ok
        # Impl-level callbacks do not end process_data_events(); a zero-delay timer does,
        # so wait() returns as soon as the confirm is in instead of at its time limit.
        self.conn.call_later(0, _noop)

    def send(self, queue: str, body: bytes, props: pika.BasicProperties) -> int:
        self.channel.basic_publish("", queue, body, props, mandatory=True)
        tag = self.next_tag
        self.next_tag += 1
        self.outstanding.add(tag)
        return tag

    def wait(self, tag: int, deadline: float) -> bool:
        """Block until ``tag`` is confirmed; True for ack, False for nack."""
        while tag not in self.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no publisher confirm in time")
            self.conn.process_data_events(time_limit=min(remaining, 0.5))
        return self.done.pop(tag)


@dataclass(slots=True)
class _Pending:
    body: bytes
    props: pika.BasicProperties
    tag: int = 0
    channel: _Confirms | None = None  # the channel ``tag`` belongs to


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
        self.publish_seqs_exact = not self.is_stream  # see "What a seq is" above
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
        self._lock = threading.RLock()
        self._conn: BlockingConnection | None = None
        self._confirms: _Confirms | None = None
        self._blocked = False
        self._declared: set[str] = set()
        self._delivered = 0  # queue mode: seq counter of deliveries in this session
        self._published = 0  # queue mode: seq counter of confirms in this session
        self._known_hw = 0  # stream: highest hw this object has proof of
        self._dead_sent: set[int] = set()  # stream: seqs this object already dead-lettered
        self._parked: set[threading.Thread] = set()  # queue readers kept open for late acks
        with self._lock:
            self._connection(deadline=time.monotonic() + self.connect_timeout)

    # ------------------------------------------------------------- plumbing
    @property
    def dead_queue(self) -> str:
        return f"{self.stream}.dead"

    def connect(self, deadline: float) -> BlockingConnection:
        """A new connection, retried with exponential backoff until ``deadline``."""
        last: BaseException | None = None
        for delay in backoff_delays(0.1, 1.0):
            if self.closed:
                raise self.error("broker object is closed")
            try:
                return BlockingConnection(self.params)
            except (pex.AMQPError, OSError) as exc:
                if isinstance(exc, pex.ProbableAuthenticationError | pex.AuthenticationError):
                    raise self.error(f"authentication failed: {exc!r}") from exc
                last = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(delay, remaining))
        raise self.error(f"cannot connect to RabbitMQ: {last!r}") from last

    def declare(self, channel: BlockingChannel, queue: str, *, passive: bool = False) -> int:
        """Declare ``queue`` durable with this log's type and arguments; return its message count.

        ``passive`` only checks it exists.  Errors are turned into one clear
        BrokerError (the channel is closed by RabbitMQ in both cases).
        """
        try:
            if passive:
                result = channel.queue_declare(queue, passive=True)
            else:
                result = channel.queue_declare(queue, durable=True, arguments=self.arguments or None)
        except pex.ChannelClosedByBroker as exc:
            if exc.reply_code == 404 and not _starting(exc):
                raise self.error(f"queue {queue!r} does not exist") from exc
            if exc.reply_code == 406:
                raise self.error(
                    f"queue {queue!r} exists with other settings than queue_type={self.queue_type} "
                    f"{self.arguments}: {exc.reply_text}"
                ) from exc
            raise
        return int(result.method.message_count)

    def _connection(self, deadline: float) -> BlockingConnection:
        """The shared connection (publish, probes, dead letters), opened and the queue declared."""
        if self._conn is not None and self._conn.is_open:
            return self._conn
        self._drop()
        conn = self.connect(deadline)
        try:
            channel = conn.channel()
            self.declare(channel, self.stream, passive=not self.create)
            channel.close()
        except BaseException:
            with _suppress():
                conn.close()
            raise
        conn.add_on_connection_blocked_callback(self._on_blocked)
        conn.add_on_connection_unblocked_callback(self._on_unblocked)
        self._conn = conn
        return conn

    def _on_blocked(self, *_args: Any) -> None:
        self._blocked = True
        LOG.warning("%s: broker blocked publishing (resource alarm); waiting", self.where)

    def _on_unblocked(self, *_args: Any) -> None:
        self._blocked = False

    def _drop(self) -> None:
        """Forget the shared connection (after an error or on close)."""
        conn, self._conn, self._confirms = self._conn, None, None
        if conn is not None:
            with _suppress():
                if conn.is_open:
                    conn.close()

    def _confirm_channel(self, deadline: float) -> _Confirms:
        if self._confirms is None or not self._confirms.channel.is_open:
            conn = self._connection(deadline)
            confirms = _Confirms(conn, deadline)
            if self.is_stream:
                # Offsets are not in confirms: count from the end of the stream.  Probing an
                # empty stream costs hw_probe_wait, so unless we know it holds messages the
                # first message goes alone and the probe runs right after its confirm.
                confirms.seq_base = self._probe(conn, self.stream) if self._known_hw > 0 else None
            self._confirms = confirms
        return self._confirms

    def _props(self, body: bytes, headers: dict[str, str]) -> pika.BasicProperties:
        return pika.BasicProperties(
            content_type=content_type_of(body),
            delivery_mode=2,
            headers=dict(headers) if headers else None,
        )

    # --------------------------------------------------------------- publish
    def publish(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        """Publish persistent, wait for the publisher confirm, return the seq (see module doc)."""
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
        window: deque[_Pending] = deque()
        source = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(window) < self._window_limit():
                try:
                    body, headers = next(source)
                except StopIteration:
                    exhausted = True
                    break
                if not isinstance(body, bytes | bytearray | memoryview):
                    raise self.error(f"publish() needs bytes, got {type(body).__name__}")
                body = bytes(body)
                hdrs = normalize_headers(headers)
                self.check_size(body, hdrs)
                window.append(_Pending(body, self._props(body, hdrs)))
                with self._lock:
                    self._send_pending(window, only_last=True)
            if not window:
                return
            with self._lock:
                seq = self._confirm_head(window)
            yield seq

    def _window_limit(self) -> int:
        confirms = self._confirms
        if self.is_stream and (confirms is None or confirms.seq_base is None):
            return 1  # the first message of a channel is confirmed alone, then the stream is probed
        return self.max_in_flight

    def _send_pending(self, window: deque[_Pending], *, only_last: bool) -> None:
        """Send the newest (or, after a reconnect, every) message of the window."""
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            try:
                confirms = self._confirm_channel(deadline)
                todo = [window[-1]] if only_last else list(window)
                for item in todo:
                    item.tag = confirms.send(self.stream, item.body, item.props)
                    item.channel = confirms
                return
            except (pex.AMQPError, OSError, TimeoutError) as exc:
                self._retry_or_raise(exc, deadline, "publish")
                only_last = False

    def _confirm_head(self, window: deque[_Pending]) -> int:
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            head = window[0]
            try:
                confirms = self._confirms
                if confirms is None or head.channel is not confirms:
                    # Another thread reconnected: our tags belong to a channel that is gone.
                    self._send_pending(window, only_last=False)
                    continue
                ok = confirms.wait(head.tag, time.monotonic() + self.publish_timeout)
            except TimeoutError as exc:
                self._drop()
                why = " while the broker blocked the connection (resource alarm)" if self._blocked else ""
                raise self.error(f"no publisher confirm within {self.publish_timeout:g} s{why}") from exc
            except (pex.AMQPError, OSError) as exc:
                self._retry_or_raise(exc, deadline, "publish")
                self._send_pending(window, only_last=False)
                continue
            if not ok:
                raise self.error("the broker rejected (nacked) a published message")
            if confirms.returned:
                raise self.error(f"queue {self.stream!r} no longer exists: the message was returned unroutable")
            window.popleft()
            if self.is_stream:
                if confirms.seq_base is None:  # the channel's first message, sent alone
                    confirms.seq_base = self._probe(confirms.conn, self.stream) - head.tag
                seq = confirms.seq_base + head.tag - 1
                self._known_hw = max(self._known_hw, seq + 1)
            else:
                seq = self._published
                self._published += 1
            return seq

    def _retry_or_raise(self, exc: BaseException, deadline: float, what: str) -> None:
        """After an error: raise a BrokerError if it is final, else drop the connection and back off."""
        self._drop()
        if isinstance(exc, BrokerError):
            raise exc
        if isinstance(exc, pex.ConnectionBlockedTimeout):
            raise self.error(
                f"{what}: the broker blocked the connection (resource alarm) for more than "
                f"{self.publish_timeout:g} s"
            ) from exc
        if isinstance(exc, pex.ChannelClosedByBroker) and exc.reply_code == 406 and "size" in exc.reply_text:
            raise self.error(f"{what}: message larger than the broker's max_message_size: {exc.reply_text}") from exc
        if not _is_transient(exc) or self.closed or time.monotonic() >= deadline:
            raise self.error(f"{what} failed: {exc!r}") from exc
        LOG.warning("%s: %s failed (%r); reconnecting", self.where, what, exc)
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------ watermark
    def _probe(self, conn: BlockingConnection, queue: str) -> int:
        """Next offset of a stream: consume from "last", take the highest offset, cancel.

        See the module docstring for why and what it costs.
        """
        channel = conn.channel()
        state = {"last": -1, "at": 0.0}

        def on_message(ch: BlockingChannel, method: Any, props: Any, _body: bytes) -> None:
            offset = (props.headers or {}).get("x-stream-offset")
            if offset is not None:
                state["last"] = max(state["last"], int(offset))
            state["at"] = time.monotonic()
            ch.basic_ack(method.delivery_tag)

        try:
            channel.basic_qos(prefetch_count=64)
            tag = channel.basic_consume(queue, on_message, arguments={"x-stream-offset": "last"})
            first_deadline = time.monotonic() + self.hw_probe_wait
            while True:
                now = time.monotonic()
                end = first_deadline if state["at"] == 0.0 else state["at"] + self.hw_probe_quiet
                if now >= end:
                    break
                conn.process_data_events(time_limit=end - now)
            channel.basic_cancel(tag)
        finally:
            with _suppress():
                if channel.is_open:
                    channel.close()
        return int(state["last"]) + 1

    def high_watermark(self) -> int:
        """Stream: next offset (probe, see module doc).  Queue: delivered here + ready in the queue."""
        deadline = time.monotonic() + self.reconnect_timeout
        with self._lock:
            while True:
                try:
                    conn = self._connection(deadline)
                    if self.is_stream:
                        self._known_hw = max(self._known_hw, self._probe(conn, self.stream))
                        return self._known_hw
                    channel = conn.channel()
                    try:
                        return self._delivered + self.declare(channel, self.stream, passive=True)
                    finally:
                        with _suppress():
                            channel.close()
                except (pex.AMQPError, OSError) as exc:
                    self._retry_or_raise(exc, deadline, "high_watermark")

    # ---------------------------------------------------------------- read
    def open_cursor(self, start: int | None, online: bool) -> Cursor:
        if self.is_stream:
            return _StreamCursor(self, start, online)
        if online or start not in (None, 0):
            raise self.error(
                f"a {self.queue_type} queue has no replay: from_seq/after_seq/online need queue_type=stream"
            )
        return _QueueCursor(self)

    def ack(self, message: Message) -> None:
        """Queue mode: acknowledge after the import committed.  Stream mode: nothing to do."""
        token = message.ack_token
        if isinstance(token, _AckToken):
            token.cursor.ack(token.delivery_tag, token.generation)

    # ---------------------------------------------------------- dead letters
    def dead_letter(self, message: Message, reason: str) -> None:
        """Publish the body to ``STREAM.dead`` with the reason in a header (confirmed), then ack.

        Every reader of a stream meets the same foreign message; each process sends a
        given seq to the dead letters once, and :meth:`dead_letters` shows one per seq.
        """
        if self.is_stream and message.seq in self._dead_sent:
            return
        headers = dict(message.headers)
        headers.update({REASON_HEADER: reason, SEQ_HEADER: str(message.seq), STREAM_HEADER: self.stream})
        props = pika.BasicProperties(
            content_type="application/octet-stream", delivery_mode=2, headers=headers
        )
        deadline = time.monotonic() + self.reconnect_timeout
        with self._lock:
            while True:
                try:
                    conn = self._connection(deadline)
                    channel = conn.channel()
                    try:
                        if self.dead_queue not in self._declared:
                            self.declare(channel, self.dead_queue)
                            self._declared.add(self.dead_queue)
                        channel.confirm_delivery()
                        channel.basic_publish("", self.dead_queue, message.body, props, mandatory=True)
                    finally:
                        with _suppress():
                            channel.close()
                    break
                except (pex.AMQPError, OSError) as exc:
                    self._retry_or_raise(exc, deadline, "dead_letter")
            if self.is_stream:
                self._dead_sent.add(message.seq)
        self.ack(message)

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters without consuming them (streams: replay; queues: get and requeue)."""
        with self._lock:
            conn = self._connection(time.monotonic() + self.reconnect_timeout)
            channel = conn.channel()
            try:
                self.declare(channel, self.dead_queue, passive=True)
            except BrokerError:
                return []
            out: list[DeadLetter] = []
            if not self.is_stream:
                for _ in range(limit):
                    method, props, body = channel.basic_get(self.dead_queue, auto_ack=False)
                    if method is None:
                        break
                    out.append(_dead_letter_of(props, body))
                channel.close()  # unacked: everything goes back to the queue
                return out
            channel.close()
            end = self._probe(conn, self.dead_queue)
            if end == 0:
                return []
            channel = conn.channel()
            try:
                channel.basic_qos(prefetch_count=self.prefetch)
                for method, props, body in channel.consume(
                    self.dead_queue, arguments={"x-stream-offset": "first"}, inactivity_timeout=2.0
                ):
                    if method is None:
                        break
                    channel.basic_ack(method.delivery_tag)
                    letter = _dead_letter_of(props, body)
                    if all(d.seq != letter.seq for d in out):
                        out.append(letter)
                    offset = int((props.headers or {}).get("x-stream-offset", end))
                    if offset >= end - 1 or len(out) >= limit:
                        break
                channel.cancel()
            finally:
                with _suppress():
                    channel.close()
            return out

    def delete(self) -> None:
        """Delete the queue and its dead-letter queue (tests, and removing a stream for good)."""
        with self._lock:
            conn = self._connection(time.monotonic() + self.connect_timeout)
            for queue in (self.stream, self.dead_queue):
                channel = conn.channel()
                with _suppress():
                    channel.queue_delete(queue)
                with _suppress():
                    channel.close()
            self._drop()

    def close(self) -> None:
        """Close connections; parked queue readers end too (their unacked messages are requeued)."""
        super().close()
        for thread in list(self._parked):
            thread.join(5)
        with self._lock:
            self._drop()


def _dead_letter_of(props: Any, body: bytes) -> DeadLetter:
    headers = normalize_headers(props.headers)
    reason = headers.pop(REASON_HEADER, "")
    seq = int(headers.pop(SEQ_HEADER, "-1"))
    headers.pop(STREAM_HEADER, None)
    for name in _BROKER_HEADERS:
        headers.pop(name, None)
    return DeadLetter(seq=seq, reason=reason, body=body, headers=headers)


class _suppress:  # noqa: N801 - reads like contextlib.suppress
    """Swallow errors while tearing down a connection or channel that may already be gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, Exception)


@dataclass(slots=True, frozen=True)
class _AckToken:
    cursor: _QueueCursor
    delivery_tag: int
    generation: int


class _Consumer:
    """One consuming connection owned by the reading thread, with reconnects."""

    def __init__(self, log: RabbitLog) -> None:
        self.log = log
        self.conn: BlockingConnection | None = None
        self.channel: BlockingChannel | None = None
        self.buffer: deque[tuple[int, Any, bytes]] = deque()
        self.generation = 0

    def _on_message(self, _ch: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
        self.buffer.append((method.delivery_tag, props, body))

    def open(self, arguments: dict[str, Any] | None, deadline: float) -> int:
        """(Re)connect and start consuming; retried through broker restarts until ``deadline``.

        Returns the ready-message count seen just *before* consuming started (a
        queue's backlog; always 0 for a stream).
        """
        log = self.log
        while True:
            self.close()
            try:
                self.conn = log.connect(deadline)
                self.channel = self.conn.channel()
                ready = log.declare(self.channel, log.stream, passive=True)
                self.channel.basic_qos(prefetch_count=log.prefetch)
                self.channel.basic_consume(log.stream, self._on_message, arguments=arguments)
                self.generation += 1
                return ready
            except (pex.AMQPError, OSError) as exc:
                if not _is_transient(exc) or log.closed or time.monotonic() >= deadline:
                    self.close()
                    raise log.error(f"cannot consume: {exc!r}") from exc
                time.sleep(0.3)

    def pump(self, wait: float) -> None:
        """Wait up to ``wait`` s for deliveries (returns early once some arrived)."""
        assert self.conn is not None
        end = time.monotonic() + wait
        while not self.buffer:
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
            with _suppress():
                if conn.is_open:
                    conn.close()


class _StreamCursor(Cursor):
    """Consumes a stream from an offset; seq = the delivery's ``x-stream-offset``."""

    def __init__(self, log: RabbitLog, start: int | None, online: bool) -> None:
        self.log = log
        self.start_hw = log.high_watermark()
        if online:
            start = self.start_hw
        self.explicit = start is not None
        self.want = start or 0
        self.next = self.want
        self.checked_retention = False
        self.consumer = _Consumer(log)
        self._consume(time.monotonic() + log.reconnect_timeout)

    def _consume(self, deadline: float) -> None:
        offset: int | str = self.next if (self.explicit or self.next > 0) else "first"
        self.consumer.open({"x-stream-offset": offset}, deadline)

    @property
    def position(self) -> int:
        return max(self.next, self.want)

    def fetch(self, wait: float) -> list[Message]:
        consumer = self.consumer
        try:
            consumer.pump(wait)
        except (pex.AMQPError, OSError) as exc:
            if not _is_transient(exc):
                raise self.log.error(f"reading failed: {exc!r}") from exc
            LOG.warning("%s: reader lost the connection (%r); resuming at seq %d", self.log.where, exc, self.next)
            self._consume(time.monotonic() + self.log.reconnect_timeout)
            return []
        out: list[Message] = []
        last_tag = 0
        while consumer.buffer:
            tag, props, body = consumer.buffer.popleft()
            last_tag = tag
            headers = normalize_headers(props.headers)
            seq = int(headers.pop("x-stream-offset", self.next))
            if not self.checked_retention:
                self.checked_retention = True
                if self.explicit and seq > self.want:
                    raise self.log.error(
                        f"seq {self.want} is no longer retained: the stream starts at seq {seq}"
                    )
            if seq < self.next:
                continue  # before the requested start (chunk granularity) or re-sent after a reconnect
            self.next = seq + 1
            out.append(Message(seq=seq, body=body, headers=headers))
        if last_tag and consumer.channel is not None:
            # A stream keeps the messages: the ack is only flow credit.  If the connection
            # just died, the next fetch notices and resumes at self.next.
            with _suppress():
                consumer.channel.basic_ack(last_tag, multiple=True)
        return out

    def close(self) -> None:
        self.consumer.close()


class _QueueCursor(Cursor):
    """Consumes a classic/quorum queue; seq = delivery counter of the RabbitLog; manual acks.

    Messages stay unacked until :meth:`RabbitLog.ack`.  When the read() generator
    ends while some of them are still unacked (say the importer collected a batch
    and commits it afterwards), the connection is *parked*: the consumer is
    cancelled and a small thread keeps the connection alive until the last ack (or
    until the RabbitLog is closed, when the broker requeues whatever is left).
    """

    def __init__(self, log: RabbitLog) -> None:
        self.log = log
        self.consumer = _Consumer(log)
        self.thread = threading.get_ident()
        self.lock = threading.Lock()
        self.unacked: set[int] = set()
        self.parked = False
        ready = self.consumer.open(None, time.monotonic() + log.reconnect_timeout)
        with log._lock:
            self.start_hw = log._delivered + ready
        self.drained = ready == 0
        self.idle = False

    @property
    def position(self) -> int:
        return self.log._delivered

    def reached(self) -> bool:
        """Caught up when the backlog seen at start is delivered or the queue is empty.

        Another consumer may take part of the backlog, so an idle reader also asks the
        queue (passive declare) whether anything is still ready.
        """
        if self.drained or self.position >= self.start_hw:
            return True
        if self.idle and self.consumer.channel is not None and not self.consumer.buffer:
            try:
                self.drained = self.log.declare(self.consumer.channel, self.log.stream, passive=True) == 0
            except (pex.AMQPError, OSError):
                return False
        return self.drained

    def fetch(self, wait: float) -> list[Message]:
        consumer = self.consumer
        try:
            consumer.pump(wait)
        except (pex.AMQPError, OSError) as exc:
            if not _is_transient(exc):
                raise self.log.error(f"reading failed: {exc!r}") from exc
            LOG.warning("%s: reader lost the connection (%r); unacked messages will be redelivered",
                        self.log.where, exc)
            with self.lock:
                self.unacked.clear()
            consumer.open(None, time.monotonic() + self.log.reconnect_timeout)
            return []
        self.idle = not consumer.buffer
        out: list[Message] = []
        while consumer.buffer:
            tag, props, body = consumer.buffer.popleft()
            with self.log._lock:
                seq = self.log._delivered
                self.log._delivered += 1
            with self.lock:
                self.unacked.add(tag)
            token = _AckToken(self, tag, consumer.generation)
            out.append(Message(seq=seq, body=body, headers=normalize_headers(props.headers), ack_token=token))
        return out

    def ack(self, delivery_tag: int, generation: int) -> None:
        """Ack on the reading connection, from any thread, while reading or parked."""
        with self.lock:
            consumer = self.consumer
            conn, channel = consumer.conn, consumer.channel
            if generation != consumer.generation or conn is None or channel is None or not channel.is_open:
                LOG.warning("%s: ack after the reader's connection closed; the message will be redelivered",
                            self.log.where)
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
            if isinstance(token, _AckToken) and token.generation == self.consumer.generation:
                with self.lock:
                    self.unacked.discard(token.delivery_tag)
                if channel is not None and channel.is_open:
                    with _suppress():
                        channel.basic_reject(token.delivery_tag, requeue=True)

    def close(self) -> None:
        consumer = self.consumer
        with self.lock:
            conn, channel = consumer.conn, consumer.channel
            if conn is not None and channel is not None and channel.is_open and self.unacked and not self.log.closed:
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
                self.log._parked.add(thread)
                thread.start()
                return
        consumer.close()  # unacked deliveries return to the queue for the next reader

    def _keep_parked(self) -> None:
        """Serve acks (and heartbeats) on the parked connection until nothing is unacked."""
        consumer = self.consumer
        try:
            while consumer.conn is not None and consumer.conn.is_open:
                with self.lock:
                    done = not self.unacked or self.log.closed
                consumer.conn.process_data_events(time_limit=0.2)
                if done:
                    break
        except (pex.AMQPError, OSError):
            pass
        finally:
            with self.lock:
                self.parked = False
                consumer.close()
            self.log._parked.discard(threading.current_thread())
