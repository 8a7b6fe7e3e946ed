"""Reaching RabbitMQ: connecting with backoff, declaring queues, telling passing errors from final ones.

Why apart: the publisher (``tdtp/brokers/rabbitmq/confirms.py``), the readers
(``tdtp/brokers/rabbitmq/consumers.py``), the probes and the dead letters all
connect, declare and retry the same way; :class:`Endpoint` is that one way, and
:class:`SharedConnection` is the one connection a :class:`RabbitLog` shares between
publishing, probes and dead letters (readers open their own).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tdtp.brokers.base import BrokerError, backoff_delays

LOG = logging.getLogger("tdtp.brokers.rabbitmq")

#: The delivery header in which a stream queue gives each message's offset.
STREAM_OFFSET = "x-stream-offset"

#: Errors after which a new connection may succeed (broker restart, network blip).
_TRANSIENT = (
    pex.AMQPConnectionError,
    pex.ConnectionWrongStateError,
    pex.ChannelWrongStateError,
    pex.ChannelClosed,
    OSError,
)


def noop() -> None:
    """A callback that does nothing: scheduled with ``call_later(0, …)`` it ends ``process_data_events``."""
    return None


def node_starting(exc: pex.ChannelClosedByBroker) -> bool:
    """RabbitMQ's 404 for a durable queue whose node is still coming up after a restart."""
    return "down or inaccessible" in str(exc.reply_text)


def is_transient(exc: BaseException) -> bool:
    """True if a new connection may get past ``exc``."""
    if isinstance(exc, pex.ConnectionBlockedTimeout):
        return False
    if isinstance(exc, pex.ChannelClosedByBroker):
        # 403/404/406 are answers about the queue, not the connection, and retrying cannot
        # help -- except a queue whose node is still starting after a broker restart.
        if exc.reply_code == 404:
            return node_starting(exc)
        return exc.reply_code not in (403, 406)
    return isinstance(exc, _TRANSIENT)


class suppress:  # noqa: N801 - reads like contextlib.suppress
    """Swallow errors while tearing down a connection or channel that may already be gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, Exception)


class Endpoint:
    """One queue on one broker: how to connect, how to declare, how to name it in errors.

    ``closed`` is the owning log's closed flag: connecting stops once it is set.
    """

    def __init__(
        self,
        params: pika.ConnectionParameters,
        stream: str,
        queue_type: str,
        arguments: dict[str, Any],
        *,
        where: str,
        closed: threading.Event,
    ) -> None:
        self.params = params
        self.stream = stream
        self.queue_type = queue_type
        self.arguments = arguments
        self.where = where
        self._closed = closed

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def error(self, message: str) -> BrokerError:
        return BrokerError(message, where=self.where)

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
        """Declare ``queue`` durable with this queue type and arguments; return its message count.

        ``passive`` only checks it exists.  Errors are turned into one clear
        BrokerError (the channel is closed by RabbitMQ in both cases).
        """
        try:
            if passive:
                result = channel.queue_declare(queue, passive=True)
            else:
                result = channel.queue_declare(queue, durable=True, arguments=self.arguments or None)
        except pex.ChannelClosedByBroker as exc:
            if exc.reply_code == 404 and not node_starting(exc):
                raise self.error(f"queue {queue!r} does not exist") from exc
            if exc.reply_code == 406:
                raise self.error(
                    f"queue {queue!r} exists with other settings than queue_type={self.queue_type} "
                    f"{self.arguments}: {exc.reply_text}"
                ) from exc
            raise
        return int(result.method.message_count)


class SharedConnection:
    """The connection a log publishes, probes and dead-letters on; use it under ``lock``.

    Opened on first use (the stream declared, or only checked when ``create`` is
    off), reopened after :meth:`drop`.  ``blocked`` is True while the broker has the
    connection blocked (a memory or disk alarm).
    """

    def __init__(self, endpoint: Endpoint, *, create: bool, publish_timeout: float) -> None:
        self.endpoint = endpoint
        self.create = create
        self.publish_timeout = publish_timeout
        self.lock = threading.RLock()
        self.blocked = False
        #: This log declared the queue where there was none: it was empty then, so 0 is
        #: an exact start for a reader of what is published from now on (``seq_floor``).
        self.created_queue = False
        self._conn: BlockingConnection | None = None

    @property
    def current(self) -> BlockingConnection | None:
        """The connection as it is now (None after :meth:`drop`), without opening one."""
        return self._conn

    def get(self, deadline: float) -> BlockingConnection:
        """The shared connection, opened (and the queue declared) if it is not open."""
        if self._conn is not None and self._conn.is_open:
            return self._conn
        self.drop()
        endpoint = self.endpoint
        conn = endpoint.connect(deadline)
        try:
            if self.create and not self.created_queue:
                self.created_queue = self._create(conn)
            else:
                channel = conn.channel()
                endpoint.declare(channel, endpoint.stream, passive=not self.create)
                channel.close()
        except BaseException:
            with suppress():
                conn.close()
            raise
        conn.add_on_connection_blocked_callback(self._on_blocked)
        conn.add_on_connection_unblocked_callback(self._on_unblocked)
        self._conn = conn
        return conn

    def _create(self, conn: BlockingConnection) -> bool:
        """Declare the queue; True when it did not exist before (a passive declare said 404).

        The extra round trip saves ``tdtp copy`` the 0.25 s an empty stream's end probe
        waits for a delivery that never comes (``tdtp/brokers/rabbitmq/probes.py``).
        """
        endpoint = self.endpoint
        channel = conn.channel()
        try:
            channel.queue_declare(endpoint.stream, passive=True)
        except pex.ChannelClosedByBroker as exc:
            if exc.reply_code != 404 or node_starting(exc):
                raise
            channel = conn.channel()  # the broker closed the other one
            endpoint.declare(channel, endpoint.stream)
            channel.close()
            return True
        endpoint.declare(channel, endpoint.stream)  # as before: other settings are refused (406)
        channel.close()
        return False

    def _on_blocked(self, *_args: Any) -> None:
        self.blocked = True
        LOG.warning("%s: broker blocked publishing (resource alarm); waiting", self.endpoint.where)

    def _on_unblocked(self, *_args: Any) -> None:
        self.blocked = False

    def drop(self) -> None:
        """Forget the connection (after an error or on close)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress():
                if conn.is_open:
                    conn.close()

    def retry_or_raise(self, exc: BaseException, deadline: float, what: str) -> None:
        """After an error: raise a BrokerError if it is final, else drop the connection and back off."""
        self.drop()
        endpoint = self.endpoint
        if isinstance(exc, BrokerError):
            raise exc
        if isinstance(exc, pex.ConnectionBlockedTimeout):
            raise endpoint.error(
                f"{what}: the broker blocked the connection (resource alarm) for more than "
                f"{self.publish_timeout:g} s"
            ) from exc
        if isinstance(exc, pex.ChannelClosedByBroker) and exc.reply_code == 406 and "size" in exc.reply_text:
            raise endpoint.error(
                f"{what}: message larger than the broker's max_message_size: {exc.reply_text}"
            ) from exc
        if not is_transient(exc) or endpoint.closed or time.monotonic() >= deadline:
            raise endpoint.error(f"{what} failed: {exc!r}") from exc
        LOG.warning("%s: %s failed (%r); reconnecting", endpoint.where, what, exc)
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
