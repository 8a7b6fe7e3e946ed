"""Publishing to RabbitMQ with publisher confirms, several messages in flight, through reconnects.

Why its own module: the confirm window is the hard part of publishing.  pika's
BlockingChannel only offers "publish one, wait for its confirm"; to keep a window
of unconfirmed parts, :class:`ConfirmChannel` switches confirms on through the
channel's underlying asynchronous channel and records Basic.Ack/Nack by delivery
tag itself.  :class:`Publisher` supplies the two steps of the window loop in
:meth:`tdtp.brokers.base.PartLog.publish_window` (send one, wait for the oldest),
re-sends every unconfirmed message after a reconnect (at-least-once: the
importer's ledger skips a duplicate), and numbers the confirmed messages.

Numbering: a confirm carries no stream offset, so on a stream the publisher counts
confirms on its channel from the stream's end, probed once per channel
(``tdtp/brokers/rabbitmq/probes.py``) -- right after the first confirm when the
stream is not known to hold messages (probing an empty stream is slow), before
re-publishing after a reconnect otherwise.  Exact while this process is the only
writer.  On a classic or quorum queue the seq is a counter of confirms.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tdtp.brokers.base import content_type_of
from tdtp.brokers.rabbitmq.amqp import SharedConnection, noop
from tdtp.brokers.rabbitmq.probes import StreamProbe


class ConfirmChannel:
    """A publisher channel in confirm mode with several messages in flight (see the module doc)."""

    def __init__(self, conn: BlockingConnection, deadline: float) -> None:
        self.conn = conn
        self.channel: BlockingChannel = conn.channel()
        impl = self.channel._impl  # noqa: SLF001 - see the module docstring
        self.next_tag = 1
        self.outstanding: set[int] = set()  # sent, not yet confirmed
        self.done: dict[int, bool] = {}  # confirmed, not yet collected: tag -> acked (False: nacked)
        self.returned = 0
        selected: list[object] = []
        impl.add_on_return_callback(self._on_return)

        def on_select_ok(frame: object) -> None:
            selected.append(frame)
            conn.call_later(0, noop)

        impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_select_ok)
        while not selected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no Confirm.SelectOk from the broker")
            conn.process_data_events(time_limit=min(remaining, 0.5))
        #: Stream offset of tag 1 on this channel; None until known (see Publisher.confirm_oldest).
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
        self.conn.call_later(0, noop)

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
class Pending:
    """A message in the window: sent as ``tag`` on ``channel``, not yet confirmed."""

    body: bytes
    props: pika.BasicProperties
    tag: int = 0
    channel: ConfirmChannel | None = None  # the channel ``tag`` belongs to


class Publisher:
    """The RabbitMQ side of the publish window: send, confirm the oldest, number it."""

    def __init__(
        self,
        shared: SharedConnection,
        probe: StreamProbe,
        *,
        is_stream: bool,
        max_in_flight: int,
        publish_timeout: float,
        reconnect_timeout: float,
    ) -> None:
        self.shared = shared
        self.probe = probe
        self.is_stream = is_stream
        self.max_in_flight = max_in_flight
        self.publish_timeout = publish_timeout
        self.reconnect_timeout = reconnect_timeout
        #: Stream: the highest high watermark the log has proof of (its probes raise it too).
        self.known_hw = 0
        #: Queue: confirms so far, the seq of the next one.
        self.published = 0
        self._confirms: ConfirmChannel | None = None

    @property
    def queue(self) -> str:
        return self.shared.endpoint.stream

    @property
    def confirms(self) -> ConfirmChannel | None:
        """The confirm channel, while the connection it was opened on is still the shared one."""
        confirms = self._confirms
        if confirms is None or confirms.conn is not self.shared.current:
            return None
        return confirms

    def _confirm_channel(self, deadline: float) -> ConfirmChannel:
        confirms = self.confirms
        if confirms is None or not confirms.channel.is_open:
            conn = self.shared.get(deadline)
            confirms = ConfirmChannel(conn, deadline)
            if self.is_stream:
                # Offsets are not in confirms: count from the end of the stream.  Probing an
                # empty stream costs hw_probe_wait, so unless we know it holds messages the
                # first message goes alone and the probe runs right after its confirm.
                confirms.seq_base = self.probe.next_offset(conn, self.queue) if self.known_hw > 0 else None
            self._confirms = confirms
        return confirms

    def window_limit(self) -> int:
        confirms = self.confirms
        if self.is_stream and (confirms is None or confirms.seq_base is None):
            return 1  # the first message of a channel is confirmed alone, then the stream is probed
        return self.max_in_flight

    def send(self, body: bytes, headers: dict[str, str], window: Sequence[Pending]) -> Pending:
        """Publish one persistent message behind ``window``; return it as pending."""
        props = pika.BasicProperties(
            content_type=content_type_of(body),
            delivery_mode=2,
            headers=dict(headers) if headers else None,
        )
        item = Pending(body, props)
        with self.shared.lock:
            self._send([*window, item], only_last=True)
        return item

    def _send(self, window: Sequence[Pending], *, only_last: bool) -> None:
        """Send the newest (or, after a reconnect, every) message of the window."""
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            try:
                confirms = self._confirm_channel(deadline)
                todo = [window[-1]] if only_last else list(window)
                for item in todo:
                    item.tag = confirms.send(self.queue, item.body, item.props)
                    item.channel = confirms
                return
            except (pex.AMQPError, OSError, TimeoutError) as exc:
                self.shared.retry_or_raise(exc, deadline, "publish")
                only_last = False

    def confirm_oldest(self, window: deque[Pending]) -> int:
        """Wait for the confirm of ``window[0]`` and return its seq (the caller drops it)."""
        with self.shared.lock:
            return self._confirm_head(window)

    def _confirm_head(self, window: deque[Pending]) -> int:
        error = self.shared.endpoint.error
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            head = window[0]
            try:
                confirms = self.confirms
                if confirms is None or head.channel is not confirms:
                    # Another thread reconnected: our tags belong to a channel that is gone.
                    self._send(window, only_last=False)
                    continue
                ok = confirms.wait(head.tag, time.monotonic() + self.publish_timeout)
            except TimeoutError as exc:
                self.shared.drop()
                why = " while the broker blocked the connection (resource alarm)" if self.shared.blocked else ""
                raise error(f"no publisher confirm within {self.publish_timeout:g} s{why}") from exc
            except (pex.AMQPError, OSError) as exc:
                self.shared.retry_or_raise(exc, deadline, "publish")
                self._send(window, only_last=False)
                continue
            if not ok:
                raise error("the broker rejected (nacked) a published message")
            if confirms.returned:
                raise error(f"queue {self.queue!r} no longer exists: the message was returned unroutable")
            if self.is_stream:
                if confirms.seq_base is None:  # the channel's first message, sent alone
                    confirms.seq_base = self.probe.next_offset(confirms.conn, self.queue) - head.tag
                seq = confirms.seq_base + head.tag - 1
                self.known_hw = max(self.known_hw, seq + 1)
            else:
                seq = self.published
                self.published += 1
            return seq
