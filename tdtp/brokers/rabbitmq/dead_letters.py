"""Dead letters on RabbitMQ: the queue ``STREAM.dead`` (same queue type as the stream).

Why apart: setting a message aside and listing what was set aside are a small
protocol of their own -- the reason, the original seq and stream travel as
``x-tdtp-*`` headers (``tdtp/brokers/headers.py``) next to the original headers,
and listing must not consume anything (a stream is replayed, a queue's messages
are got and given back).  Every reader of a stream meets the same foreign
message; each process sends a given seq to the dead letters once, and the listing
shows one per seq.
"""

from __future__ import annotations

import time
from typing import Any

import pika
import pika.exceptions as pex

from tdtp.brokers.base import BrokerError, DeadLetter, Message, normalize_headers
from tdtp.brokers.headers import REASON_HEADER, SEQ_HEADER, STREAM_HEADER
from tdtp.brokers.rabbitmq.amqp import STREAM_OFFSET, SharedConnection, suppress
from tdtp.brokers.rabbitmq.probes import StreamProbe

#: Delivery headers RabbitMQ adds that are not the producer's routing facts.
_BROKER_HEADERS = (STREAM_OFFSET,)


class DeadLetterQueue:
    """The dead-letter queue of one stream, on the log's shared connection."""

    def __init__(
        self,
        shared: SharedConnection,
        probe: StreamProbe,
        *,
        is_stream: bool,
        prefetch: int,
        reconnect_timeout: float,
    ) -> None:
        self.shared = shared
        self.probe = probe
        self.is_stream = is_stream
        self.prefetch = prefetch
        self.reconnect_timeout = reconnect_timeout
        self.stream = shared.endpoint.stream
        self.name = f"{self.stream}.dead"
        self._declared = False
        self._sent: set[int] = set()  # stream: seqs this object already dead-lettered

    def send(self, message: Message, reason: str) -> bool:
        """Publish the body here with the reason in a header (confirmed); False if already sent."""
        if self.is_stream and message.seq in self._sent:
            return False
        headers = dict(message.headers)
        headers.update({REASON_HEADER: reason, SEQ_HEADER: str(message.seq), STREAM_HEADER: self.stream})
        props = pika.BasicProperties(content_type="application/octet-stream", delivery_mode=2, headers=headers)
        endpoint = self.shared.endpoint
        deadline = time.monotonic() + self.reconnect_timeout
        with self.shared.lock:
            while True:
                try:
                    conn = self.shared.get(deadline)
                    channel = conn.channel()
                    try:
                        if not self._declared:
                            endpoint.declare(channel, self.name)
                            self._declared = True
                        channel.confirm_delivery()
                        channel.basic_publish("", self.name, message.body, props, mandatory=True)
                    finally:
                        with suppress():
                            channel.close()
                    break
                except (pex.AMQPError, OSError) as exc:
                    self.shared.retry_or_raise(exc, deadline, "dead_letter")
            if self.is_stream:
                self._sent.add(message.seq)
        return True

    def read(self, limit: int) -> list[DeadLetter]:
        """The dead letters, oldest first, without consuming them (streams: replay; queues: get and requeue)."""
        with self.shared.lock:
            conn = self.shared.get(time.monotonic() + self.reconnect_timeout)
            channel = conn.channel()
            try:
                self.shared.endpoint.declare(channel, self.name, passive=True)
            except BrokerError:
                return []
            out: list[DeadLetter] = []
            if not self.is_stream:
                for _ in range(limit):
                    method, props, body = channel.basic_get(self.name, auto_ack=False)
                    if method is None:
                        break
                    out.append(dead_letter_of(props, body))
                channel.close()  # unacked: everything goes back to the queue
                return out
            channel.close()
            end = self.probe.next_offset(conn, self.name)
            if end == 0:
                return []
            channel = conn.channel()
            try:
                channel.basic_qos(prefetch_count=self.prefetch)
                for method, props, body in channel.consume(
                    self.name, arguments={STREAM_OFFSET: "first"}, inactivity_timeout=2.0
                ):
                    if method is None:
                        break
                    channel.basic_ack(method.delivery_tag)
                    letter = dead_letter_of(props, body)
                    if all(d.seq != letter.seq for d in out):
                        out.append(letter)
                    offset = int((props.headers or {}).get(STREAM_OFFSET, end))
                    if offset >= end - 1 or len(out) >= limit:
                        break
                channel.cancel()
            finally:
                with suppress():
                    channel.close()
            return out


def dead_letter_of(props: Any, body: bytes) -> DeadLetter:
    """A delivery from the dead-letter queue as a :class:`DeadLetter` (our headers taken out)."""
    headers = normalize_headers(props.headers)
    reason = headers.pop(REASON_HEADER, "")
    seq = int(headers.pop(SEQ_HEADER, "-1"))
    headers.pop(STREAM_HEADER, None)
    for name in _BROKER_HEADERS:
        headers.pop(name, None)
    return DeadLetter(seq=seq, reason=reason, body=body, headers=headers)
