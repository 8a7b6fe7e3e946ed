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
option parsing, the TDTP sniffing that sends foreign messages to dead letters,
and the read loop that places the ``CaughtUp`` marker and applies ``follow`` and
``timeout`` uniformly.  A broker module only supplies a :class:`Cursor` (how to
fetch the next messages from a position) and the publish/ack/dead-letter calls.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from tdtp.packet import TdtpError, is_summary_body

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


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


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


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_size(value: object) -> int:
    """A byte size from an int or text such as ``256MB``, ``64MiB``, ``1.5GB``, ``1000``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r}")
    number = float(m.group(1))
    unit = (m.group(2) or "").lower()
    base = unit[:1] if unit[:1] in "kmgt" else ""
    factor = _SIZE_UNITS[base]
    if "i" in unit:
        factor = 1024 ** "_kmgt".index(base) if base else 1
    return int(number * factor)


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or text such as ``30``, ``1.5s``, ``10m``, ``6h``, ``7d``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", str(value), re.IGNORECASE)
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _optional(conv: Callable[[object], Any]) -> Callable[[object], Any]:
    def parse(value: object) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        return conv(value)

    return parse


#: Converters for option specs: ``name -> (converter, default)``.
SIZE = parse_size
OPT_SIZE = _optional(parse_size)
DURATION = parse_duration
OPT_DURATION = _optional(parse_duration)
BOOL = parse_bool


def INT(value: object) -> int:  # noqa: N802 - used like a type name in option specs
    return int(str(value)) if not isinstance(value, int) else value


def STR(value: object) -> str:  # noqa: N802
    return str(value)


def resolve_options(
    url: str,
    query: str,
    options: Mapping[str, object],
    spec: Mapping[str, tuple[Callable[[object], Any], Any]],
) -> dict[str, Any]:
    """Merge URL query options and keyword options (keywords win), typed by ``spec``.

    Unknown names are an error rather than silently ignored: a typo in a retention
    option would otherwise keep data forever or drop it early without a word.
    """
    raw: dict[str, object] = dict(parse_qsl(query, keep_blank_values=True))
    raw.update(options)
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise BrokerError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(spec))}",
            where=redact_url(url),
        )
    out: dict[str, Any] = {}
    for name, (conv, default) in spec.items():
        if name in raw:
            try:
                out[name] = conv(raw[name])
            except (TypeError, ValueError) as exc:
                raise BrokerError(f"option {name}: {exc}", where=redact_url(url)) from exc
        else:
            out[name] = default
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
    ``CaughtUp`` marker goes).  Cursors are used from one thread: the thread
    iterating the generator, which is also the one that closes it.
    """

    start_hw: int = 0

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
        reason ``"not a TDTP packet"`` and reading goes on.
        """
        given = [x is not None for x in (from_seq, after_seq)].count(True) + int(online)
        if given > 1:
            raise self.error("read(): give at most one of from_seq, after_seq, online")
        start = after_seq + 1 if after_seq is not None else from_seq
        if start is not None and start < 0:
            raise self.error(f"read(): seq must be >= 0, got {start}")
        if self._closed.is_set():
            raise self.error("read() on a closed broker")
        return self._read_loop(start, online, follow, timeout)

    def _read_loop(
        self, start: int | None, online: bool, follow: bool, timeout: float | None
    ) -> Iterator[Message | CaughtUp]:
        cursor = self.open_cursor(start, online)
        pending: deque[Message] = deque()  # fetched, not yet yielded
        try:
            hw = cursor.start_hw
            caught_up = False
            if cursor.reached():
                yield CaughtUp(hw)
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
                while pending:
                    if not caught_up and pending[0].seq >= hw:
                        yield CaughtUp(hw)
                        caught_up = True
                        if not follow:
                            return
                    msg = pending.popleft()
                    if looks_like_tdtp(msg.body):
                        yield msg
                    else:
                        self.dead_letter(msg, NOT_TDTP)
                if not caught_up:
                    if cursor.reached():
                        yield CaughtUp(hw)
                        caught_up = True
                        last_activity = time.monotonic()
                        if not follow:
                            return
                    elif time.monotonic() - last_activity > self.stall_timeout:
                        raise self.error(
                            f"reading history stalled at seq {cursor.position} "
                            f"(high watermark {hw}) for {self.stall_timeout:.0f} s"
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


class LogView:
    """A part log seen through a wrapper: everything not overridden is the wrapped log's."""

    def __init__(self, log: PartLog | LogView) -> None:
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class ReadFilter(LogView, ABC):
    """A log view whose reads pass through :meth:`passed`; the inner read is closed either way."""

    def read(self, **kwargs: Any) -> Iterator[Any]:
        inner = self._log.read(**kwargs)

        def items() -> Iterator[Any]:
            try:
                yield from self.passed(inner)
            finally:
                inner.close()

        return items()

    @abstractmethod
    def passed(self, items: Iterator[Any]) -> Iterator[Any]:
        """The items a read yields, from the wrapped log's ``items``."""


class PublishedSeqs(LogView):
    """A part log that remembers the first and last seq published through it (one export's).

    ``first`` is safe to read the export back from: where publish seqs are estimates
    (several writers on a RabbitMQ stream, see ``publish_seqs_exact``) it is the high
    watermark taken before the first publish when that is lower, so a reader from
    ``first`` never starts past the export's first part; it may meet other writers'
    messages, which :class:`OnlyExport` steps over.  ``on_first(first)`` is called once,
    right after the first publish (a copy run starts its lander there).
    """

    def __init__(self, log: PartLog | LogView, on_first: Callable[[int], None] | None = None) -> None:
        super().__init__(log)
        self._on_first = on_first
        self._floor: int | None = None if log.publish_seqs_exact else log.high_watermark()
        self.first: int | None = None
        self.last: int | None = None

    def publish(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        seq = self._log.publish(body, headers)
        if self.first is None:
            self.first = seq if self._floor is None else min(seq, self._floor)
            if self._on_first is not None:
                self._on_first(self.first)
        self.last = seq
        return seq


class OnlyExport(ReadFilter):
    """A part log whose reads yield one export's messages and step over every other one.

    Several exports of a table share its stream, and exports running at the same time
    interleave there.  A reader that lands one export (a copy run's lander, an import
    step landing its own seq range) must leave the other exports' messages to whoever
    lands those: landing them would take away the observations their own chain waits
    for.  ``others`` collects the export ids it stepped over ("" for a message that
    names none), so the caller can say which other exports lay in its seq range.
    Markers such as CaughtUp pass through.
    """

    def __init__(self, log: PartLog | LogView, export_id: str) -> None:
        super().__init__(log)
        self._export_id = export_id
        self.others: set[str] = set()

    def passed(self, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            if isinstance(item, Message):
                owner = item.headers.get("export_id") or ""
                if owner != self._export_id:
                    self.others.add(owner)
                    continue
            yield item


class UntilSummary(ReadFilter):
    """A part log whose reads end right after a summary message.

    An importer following a stream live otherwise waits for more messages until a
    timeout; the summary is an export's last message, so after it that export has
    nothing left to land.  ``export_id`` picks whose summary ends the read (None:
    the first summary met); ``summary_seq`` is where it was.
    """

    def __init__(self, log: PartLog | LogView, export_id: str | None = None) -> None:
        super().__init__(log)
        self._export_id = export_id
        self.summary_seq: int | None = None

    def passed(self, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            yield item
            if (
                isinstance(item, Message)
                and item.headers.get("kind") == "summary"
                and self._export_id in (None, item.headers.get("export_id"))
            ):
                self.summary_seq = item.seq
                return
