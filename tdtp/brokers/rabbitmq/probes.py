"""The end of a RabbitMQ stream queue, found by reading its last chunk.

Why a probe: RabbitMQ 3.10 answers a passive ``queue.declare`` on a stream with
``message_count = 0`` whatever it holds, and has no stats call for streams.  So
the next offset is found by consuming from ``x-stream-offset: "last"`` (the start
of the last chunk), taking the highest offset delivered until ``quiet`` seconds
pass with nothing new, and cancelling.  That costs one chunk of bodies (usually
one part, since parts are published with confirms) and about ``quiet`` seconds; an
empty stream costs ``wait`` seconds, because "nothing delivered" is the only sign
of emptiness.  Used for the high watermark, for numbering published messages
(``tdtp/brokers/rabbitmq/confirms.py``) and for reading dead letters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from tdtp.brokers.rabbitmq.amqp import STREAM_OFFSET, suppress


@dataclass(frozen=True, slots=True)
class StreamProbe:
    """Probe timings: ``wait`` for a first delivery, then ``quiet`` after the last one."""

    wait: float
    quiet: float

    def next_offset(self, conn: BlockingConnection, queue: str, *, floor_wait: float | None = None) -> int:
        """Next offset of the stream ``queue`` (0 if it is empty), on a channel of its own.

        With ``floor_wait`` a lower bound is enough: the first delivery answers (its
        offset + 1: the start of the last chunk, at most the end), and an empty answer
        comes after ``floor_wait`` s instead of ``wait`` (0 is always a safe floor).
        """
        channel = conn.channel()
        state = {"last": -1, "at": 0.0}
        wait, quiet = (self.wait, self.quiet) if floor_wait is None else (floor_wait, 0.0)

        def on_message(ch: BlockingChannel, method: Any, props: Any, _body: bytes) -> None:
            offset = (props.headers or {}).get(STREAM_OFFSET)
            if offset is not None:
                state["last"] = max(state["last"], int(offset))
            state["at"] = time.monotonic()
            ch.basic_ack(method.delivery_tag)

        try:
            channel.basic_qos(prefetch_count=64)
            tag = channel.basic_consume(queue, on_message, arguments={STREAM_OFFSET: "last"})
            first_deadline = time.monotonic() + wait
            while True:
                now = time.monotonic()
                end = first_deadline if state["at"] == 0.0 else state["at"] + quiet
                if now >= end:
                    break
                conn.process_data_events(time_limit=end - now)
            channel.basic_cancel(tag)
        finally:
            with suppress():
                if channel.is_open:
                    channel.close()
        return int(state["last"]) + 1
