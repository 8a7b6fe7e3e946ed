"""The part log: one interface over a file spool, RabbitMQ and Kafka.

Every broker is seen as an append-only log of messages numbered by a 0-based
sequence number (``seq``), in the spirit of the ``stream+`` channel of the seeds:
a reader replays history from a seq, gets one :class:`CaughtUp` marker when it has
reached the end it saw when it started, and may then keep following live messages.

Why one interface: the exporter, the part-arrival sensor and the importer must not
care where parts travel; the semantics that differ between brokers (what a seq
means for a queue, how expensive the high watermark is) are documented on each
implementation instead of leaking into callers.

This module holds what every broker shares: the value types, the error class,
the TDTP sniffing that sends foreign messages to dead letters, the read loop that
places the ``CaughtUp`` marker and applies ``follow`` and ``timeout`` uniformly, and
the publish window (send up to ``max_in_flight`` messages, yield seqs as the broker
confirms them).  A broker module only supplies a :class:`Cursor` (how to fetch the
next messages from a position) and the publish/ack/dead-letter calls.  Option
parsing is in ``tdtp/brokers/options.py``, the wrappers callers put around a log in
``tdtp/brokers/views.py``, header names in ``tdtp/brokers/headers.py``.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tdtp.packet import TdtpError, is_summary_body
from tdtp.urls import redact as redact_url  # the one URL redaction; tdtp.brokers exports it

#: What a broker keeps per message it has sent and not yet seen confirmed (see PartLog.publish_window).
InFlight = TypeVar("InFlight")

#: Reason given to :meth:`PartLog.dead_letter` for a message that is not a TDTP packet.
NOT_TDTP = "not a TDTP packet"

#: Raw zstd frame magic: Go's Kafka spool path compresses the whole XML this way.
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: Default largest message (body + headers).  RabbitMQ's own default ``max_message_size``.
DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024 * 1024

#: How long the read loop blocks in one fetch before it looks at ``close()`` and timeouts.
POLL_SLICE = 0.2


class BrokerError(TdtpError):
    """A broker refused, lost or never answered; or a URL/option is wrong.

    ``where`` is the broker URL with the password redacted and the stream, so the
    one-line message tells a user which broker and which stream to look at.
    """


@dataclass(slots=True)
class Message:
    """One message of the log.

    ``seq`` is the broker's position (see each broker for its meaning);
    ``headers`` are routing facts as strings (may be empty for foreign producers);
    ``ack_token`` is what :meth:`PartLog.ack` needs (``None`` for log brokers).
    """

    seq: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    ack_token: object | None = None


@dataclass(slots=True, frozen=True)
class CaughtUp:
    """Marker yielded exactly once per :meth:`PartLog.read`: history is done.

    ``seq`` is the high watermark the reader saw when it started: every message
    yielded before the marker has a smaller seq, every message after it is live.
    """

    seq: int


@dataclass(slots=True, frozen=True)
class DeadLetter:
    """A message set aside by :meth:`PartLog.dead_letter`, as a user would inspect it."""

    seq: int
    reason: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def looks_like_tdtp(body: bytes) -> bool:
    """True if ``body`` can be a TDTP part or summary, judged from its first bytes only.

    Accepts XML (optional UTF-8 BOM and whitespace, then ``<``), a raw zstd frame
    (the codec decompresses it), or a summary JSON.  Anything else would only fail
    later inside a worker, so the read loop dead-letters it right away.
    """
    head = body[:64]
    if head.startswith(ZSTD_MAGIC):
        return True
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    stripped = head.lstrip()
    if stripped.startswith(b"<"):
        return True
    return is_summary_body(body)


def content_type_of(body: bytes) -> str:
    """The MIME type a Go consumer expects for this body (XML, whole-message zstd, or JSON)."""
    if body[:4] == ZSTD_MAGIC:
        return "application/xml+zstd"
    if is_summary_body(body):
        return "application/json"
    return "application/xml"


def normalize_headers(headers: Mapping[str, object] | None) -> dict[str, str]:
    """Headers as ``str -> str``; numbers are rendered, bytes decoded as UTF-8."""
    out: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if value is None:
            continue
        if isinstance(value, bytes | bytearray):
            out[str(key)] = bytes(value).decode("utf-8", "replace")
        else:
            out[str(key)] = str(value)
    return out


def backoff_delays(base: float = 0.2, cap: float = 2.0) -> Iterator[float]:
    """Exponential delays ``base, 2*base, ...`` capped at ``cap``: retries that neither hammer nor stall."""
    delay = base
    while True:
        yield delay
        delay = min(cap, delay * 2)


class Cursor(ABC):
    """A broker's reading position, driven by :meth:`PartLog.read`.

    ``start_hw`` is the high watermark seen when the cursor opened (where the
    ``CaughtUp`` marker goes).  A cursor may open before it knows it (``settled``
    False: a RabbitMQ stream probes its end while it already consumes); meanwhile
    ``hw_floor`` is a seq below which every message is surely history, so those are
    yielded at once and only later ones wait for the marker's place.  Cursors are
    used from one thread: the thread iterating the generator, which also closes it.
    """

    start_hw: int = 0

    @property
    def settled(self) -> bool:
        """True once ``start_hw`` is known (always, except while a cursor still probes)."""
        return True

    @property
    def hw_floor(self) -> int:
        """Every message below this seq is history (``start_hw`` once settled)."""
        return self.start_hw

    @abstractmethod
    def fetch(self, wait: float) -> list[Message]:
        """Return the next messages in seq order, waiting up to ``wait`` seconds for the first."""

    def reached(self) -> bool:
        """True once every message below ``start_hw`` has been returned (or can no longer come)."""
        return self.position >= self.start_hw

    @property
    @abstractmethod
    def position(self) -> int:
        """The seq the next fetched message will have at the earliest."""

    def release(self, messages: list[Message]) -> None:  # noqa: B027 - nothing to give back in a log
        """Give back fetched messages the caller never saw (a queue requeues them)."""

    @abstractmethod
    def close(self) -> None: ...


class PartLog(ABC):
    """An append-only log of TDTP parts on one broker stream.

    Use as a context manager.  ``publish`` returns only once the message is
    durable; ``read`` replays, marks the catch-up point, and optionally follows.
    Safe to share between threads for ``publish``/``high_watermark``; each
    ``read()`` generator belongs to the thread that iterates it.
    """

    url: str
    stream: str
    #: Window of unconfirmed messages in :meth:`publish_many`.
    max_in_flight: int = 4
    #: Largest body + headers accepted by :meth:`publish`.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: How long history may stall before read() gives up with an error.
    stall_timeout: float = 60.0
    #: False where :meth:`publish` returns an estimate while other writers publish to
    #: the same stream (RabbitMQ streams: confirms carry no offset).  Who reads an
    #: export back by seq then starts from :meth:`high_watermark` taken before it.
    publish_seqs_exact: bool = True

    def __init__(self) -> None:
        self._closed = threading.Event()

    # ------------------------------------------------------------------ errors
    @property
    def where(self) -> str:
        """Where an error happened: redacted URL and stream, for every message."""
        return f"{redact_url(self.url)} (stream {self.stream!r})"

    def error(self, message: str) -> BrokerError:
        return BrokerError(message, where=self.where)

    # ----------------------------------------------------------------- publish
    @abstractmethod
    def publish(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        """Append one message; return its seq once the broker has made it durable."""

    def publish_many(self, items: Iterable[tuple[bytes, dict[str, str] | None]]) -> Iterator[int]:
        """Publish in order with up to ``max_in_flight`` unconfirmed messages; yield seqs as confirmed.

        The window is the backpressure: the producer is never more than
        ``max_in_flight`` messages ahead of the broker, so memory stays bounded by
        a few parts however fast rows are read.  This default confirms one by one.
        """
        for body, headers in items:
            yield self.publish(body, headers)

    def publish_window(
        self,
        items: Iterable[tuple[bytes, dict[str, str] | None]],
        send: Callable[[bytes, dict[str, str], Sequence[InFlight]], InFlight],
        confirm_oldest: Callable[[deque[InFlight]], int],
        window_limit: Callable[[], int] | None = None,
    ) -> Iterator[int]:
        """The publish loop of brokers that confirm asynchronously (RabbitMQ, Kafka).

        Takes messages from ``items`` while fewer than ``window_limit()`` (default
        ``max_in_flight``) are unconfirmed, checks each (:meth:`prepared`) and hands it
        to ``send(body, headers, window)``, which puts it on the wire and returns what
        the broker needs to know about it in flight (``window`` is what is already in
        flight, oldest first, for a broker that must send it again after a reconnect).
        Then ``confirm_oldest(window)`` waits until the oldest one is confirmed and
        returns its seq; it is dropped from the window and the seq yielded.  Seqs thus
        come in publish order, and the producer is never more than the window ahead.
        """
        window: deque[InFlight] = deque()
        source = iter(items)
        exhausted = False
        limit = window_limit or (lambda: self.max_in_flight)
        while True:
            while not exhausted and len(window) < limit():
                try:
                    body, headers = next(source)
                except StopIteration:
                    exhausted = True
                    break
                body, hdrs = self.prepared(body, headers)
                window.append(send(body, hdrs, window))
            if not window:
                return
            seq = confirm_oldest(window)
            window.popleft()
            yield seq

    def prepared(self, body: bytes, headers: Mapping[str, object] | None) -> tuple[bytes, dict[str, str]]:
        """``body`` as bytes and ``headers`` as strings, refused before sending if not bytes or too big."""
        if not isinstance(body, bytes | bytearray | memoryview):
            raise self.error(f"publish() needs bytes, got {type(body).__name__}")
        body = bytes(body)
        hdrs = normalize_headers(headers)
        self.check_size(body, hdrs)
        return body, hdrs

    def check_size(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Reject a message larger than the broker accepts *before* sending any byte of it."""
        size = len(body) + sum(len(k) + len(v) for k, v in headers.items())
        if size > self.max_message_bytes:
            raise self.error(
                f"message of {size} bytes exceeds the broker's max message size "
                f"{self.max_message_bytes} bytes; lower part_bytes or raise max_message_bytes"
            )

    # -------------------------------------------------------------------- read
    def read(
        self,
        *,
        from_seq: int | None = None,
        after_seq: int | None = None,
        online: bool = False,
        follow: bool = False,
        timeout: float | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> Iterator[Message | CaughtUp]:
        """Replay, mark the catch-up point, then (with ``follow``) keep yielding live messages.

        ``from_seq=N`` starts at N inclusive, ``after_seq=N`` at N+1 (the seeds'
        ``seq-data``), ``online=True`` yields only messages published after the
        call; the default starts at the oldest retained message.  Exactly one
        :class:`CaughtUp` is yielded.  Without ``follow`` iteration ends right after
        it; with ``follow`` it ends when ``timeout`` seconds pass with nothing new
        (``None``: never), when :meth:`close` is called (from any thread), or on
        KeyboardInterrupt while waiting (the generator then just ends, resources
        released).  A message that is not a TDTP packet is dead-lettered with the
        reason ``"not a TDTP packet"`` and reading goes on.  ``on_open`` is called once
        the reader is in place (what is published from then on reaches it without a
        connection or a probe to wait for), from the thread iterating the read.
        """
        given = [x is not None for x in (from_seq, after_seq)].count(True) + int(online)
        if given > 1:
            raise self.error("read(): give at most one of from_seq, after_seq, online")
        start = after_seq + 1 if after_seq is not None else from_seq
        if start is not None and start < 0:
            raise self.error(f"read(): seq must be >= 0, got {start}")
        if self._closed.is_set():
            raise self.error("read() on a closed broker")
        return self._read_loop(start, online, follow, timeout, on_open)

    def _read_loop(
        self,
        start: int | None,
        online: bool,
        follow: bool,
        timeout: float | None,
        on_open: Callable[[], None] | None = None,
    ) -> Iterator[Message | CaughtUp]:
        cursor = self.open_cursor(start, online)
        if on_open is not None:
            on_open()
        pending: deque[Message] = deque()  # fetched, not yet yielded
        try:
            caught_up = False
            if cursor.settled and cursor.reached():
                yield CaughtUp(cursor.start_hw)
                caught_up = True
                if not follow:
                    return
            last_activity = time.monotonic()
            while not self._closed.is_set():
                wait = POLL_SLICE
                if caught_up and timeout is not None:
                    remaining = timeout - (time.monotonic() - last_activity)
                    if remaining <= 0:
                        return
                    wait = min(wait, remaining)
                try:
                    batch = cursor.fetch(wait)
                except KeyboardInterrupt:
                    return
                if batch:
                    last_activity = time.monotonic()
                pending.extend(batch)
                while True:
                    if not caught_up and cursor.settled:
                        hw = cursor.start_hw
                        if (pending[0].seq >= hw) if pending else cursor.reached():
                            yield CaughtUp(hw)
                            caught_up = True
                            last_activity = time.monotonic()
                            if not follow:
                                return
                    if not pending or (not caught_up and pending[0].seq >= cursor.hw_floor):
                        break  # nothing left, or its place beside the marker is not known yet
                    msg = pending.popleft()
                    if looks_like_tdtp(msg.body):
                        yield msg
                    else:
                        self.dead_letter(msg, NOT_TDTP)
                if (
                    not caught_up
                    and cursor.settled
                    and time.monotonic() - last_activity > self.stall_timeout
                ):
                    raise self.error(
                        f"reading history stalled at seq {cursor.position} "
                        f"(high watermark {cursor.start_hw}) for {self.stall_timeout:.0f} s"
                    )
        finally:
            if pending:
                cursor.release(list(pending))
            cursor.close()

    @abstractmethod
    def open_cursor(self, start: int | None, online: bool) -> Cursor:
        """A cursor at ``start`` (``None``: oldest retained) or at the end (``online``)."""

    # ------------------------------------------------------------------- state
    @abstractmethod
    def high_watermark(self) -> int:
        """The seq the next message will get; cheap (no bodies read where the broker allows)."""

    def seq_floor(self) -> int:
        """A seq at or below :meth:`high_watermark`, maybe cheaper: where a reader of
        messages published from now on may start (it steps over others' messages)."""
        return self.high_watermark()

    def ack(self, message: Message) -> None:  # noqa: B027 - a no-op is the right default for logs
        """Confirm a message is imported.  A log keeps messages anyway, so the default does nothing."""

    @abstractmethod
    def dead_letter(self, message: Message, reason: str) -> None:
        """Set the message aside with ``reason`` where a user can see and replay it."""

    @abstractmethod
    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """The dead letters of this stream, oldest first, without removing them."""

    @abstractmethod
    def delete(self) -> None:
        """Remove the stream and its dead letters from the broker for good (tests, cleanup)."""

    # --------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop readers at their next poll and release connections.  Idempotent."""
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __enter__(self) -> PartLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where}>"
