"""Kafka (or the Kafka-compatible Tansu) as a part log, with kafka-python.

URL: ``kafka://host:port[,host2:port2]/TOPIC``.  Options (query or keywords):
``partitions`` (created with, default 1), ``partition`` (the one this log reads and
writes, default 0), ``replication`` (default 1), ``max_message_bytes`` (default
64 MiB; the topic gets ``max.message.bytes`` to match and the producer's
``max_request_size`` / the consumer's fetch sizes are derived from it),
``retention_bytes`` / ``retention_age`` (topic ``retention.bytes`` / ``retention.ms``
on creation), ``max_in_flight`` (unconfirmed window of :meth:`KafkaLog.publish_many`),
``connect_timeout`` (default 3 s), ``publish_timeout`` (default 30 s), ``fetch_wait``
(how long the broker may hold an idle fetch, default 0.03 s), ``create``.

``fetch_wait`` is short because Tansu holds an idle fetch for its whole wait even when
a record arrives meanwhile: with kafka-python's default 0.5 s a reader got a part
published just after it started 0.2 s late; at 0.03 s within 0.06 s (bench/first_part.py).
A real Kafka answers a waiting fetch when data arrives; there a longer wait only saves
idle requests.

What a seq is: the Kafka offset **within one partition**.  A :class:`KafkaLog` is
the log of ``(TOPIC, partition)``: it publishes to that partition explicitly and
reads only it, so seqs are plain offsets, ``high_watermark()`` is that partition's
end offset, and ``read(from_seq=N)`` is ``assign`` + ``seek(N)``.  A topic with N
partitions is N independent logs: open one ``kafka://…/TOPIC?partition=K`` per
partition (for example one exporter or importer per partition) -- simple, and the
seqs never need decoding.

Tansu caveat: its end offset counts record *batches*, so a producer that batches
several records (kafka-python does for small messages sent back to back) leaves
``high_watermark()`` too low, and a reader without ``follow`` stops early.  Our
producer sends one record per batch; foreign producers writing to Tansu should
too.  Real Kafka has no such problem.

Progress lives outside Kafka (the Dagster cursor and the importer's ledger):
consumers use no group id and commit nothing, which is also all Tansu supports.
``ack`` is a no-op.  Message headers are Kafka record headers (UTF-8 values).  A
Go producer's bare values (and its whole-message zstd values with
``content-type: application/xml+zstd``) pass through untouched; the codec
recognises the zstd magic.  Dead letters go to the topic ``TOPIC.dead``
(partition 0) with the reason in the ``x-tdtp-reason`` header.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata

from tdtp.brokers.base import BrokerError, Cursor, DeadLetter, Message, PartLog, normalize_headers
from tdtp.brokers.headers import REASON_HEADER, SEQ_HEADER, STREAM_HEADER
from tdtp.brokers.options import BOOL, DURATION, INT, OPT_DURATION, OPT_SIZE, SIZE, resolve_options

#: Room for the record batch framing and headers on top of the body.
OVERHEAD = 64 * 1024
#: Records per poll: a read never holds more than a few parts in memory.
POLL_RECORDS = 8

OPTIONS = {
    "partitions": (INT, 1),
    "partition": (INT, 0),
    "replication": (INT, 1),
    "max_message_bytes": (SIZE, 64 * 1024 * 1024),
    "retention_bytes": (OPT_SIZE, None),
    "retention_age": (OPT_DURATION, None),
    "max_in_flight": (INT, 4),
    "connect_timeout": (DURATION, 3.0),
    "publish_timeout": (DURATION, 30.0),
    "stall_timeout": (DURATION, 60.0),
    "fetch_wait": (DURATION, 0.03),
    "create": (BOOL, True),
}


def _record_headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in headers.items()]


class KafkaLog(PartLog):
    """One partition of a Kafka topic as a part log; seq = offset."""

    def __init__(self, url: str, **options: object) -> None:
        super().__init__()
        self.url = url
        scheme, _, rest = url.partition("://")
        if scheme.lower() != "kafka":
            raise BrokerError("not a kafka:// URL", where=url)
        netloc, _, tail = rest.partition("/")
        topic, _, query = tail.partition("?")
        if not netloc or not topic or "/" in topic:
            raise BrokerError("URL must be kafka://host:port[,host:port]/TOPIC", where=url)
        self.stream = topic
        self.bootstrap = [h.strip() for h in netloc.split(",") if h.strip()]
        opts = resolve_options(url, query, options, OPTIONS)
        self.partitions: int = opts["partitions"]
        self.partition: int = opts["partition"]
        self.replication: int = opts["replication"]
        self.max_message_bytes = opts["max_message_bytes"]
        self.retention_bytes: int | None = opts["retention_bytes"]
        self.retention_age: float | None = opts["retention_age"]
        self.max_in_flight = max(1, opts["max_in_flight"])
        self.connect_timeout: float = opts["connect_timeout"]
        self.publish_timeout: float = opts["publish_timeout"]
        self.stall_timeout = opts["stall_timeout"]
        self.fetch_wait: float = opts["fetch_wait"]
        self.create: bool = opts["create"]
        self.tp = TopicPartition(self.stream, self.partition)
        self._lock = threading.RLock()
        self._producer: KafkaProducer | None = None
        self._meta: KafkaConsumer | None = None
        self._dead_sent: set[int] = set()
        self._admin = self._connect_admin()
        try:
            self._ensure_topic(self.stream, self.partitions, create=self.create)
        except BaseException:
            self._admin.close()
            raise

    # ------------------------------------------------------------- plumbing
    def _common(self) -> dict[str, Any]:
        fetch = self.max_message_bytes + OVERHEAD
        return {
            "bootstrap_servers": self.bootstrap,
            "bootstrap_timeout_ms": int(self.connect_timeout * 1000),
            "request_timeout_ms": int(max(self.publish_timeout, self.connect_timeout) * 1000),
            "receive_message_max_bytes": max(100_000_000, 2 * fetch + OVERHEAD),
        }

    def _connect_admin(self) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(**self._common())
        except (KafkaError, OSError) as exc:
            raise self.error(f"cannot reach Kafka at {','.join(self.bootstrap)}: {exc!r}") from exc

    def _partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic``, or None if it does not exist."""
        try:
            described = self._admin.describe_topics([topic])
        except KafkaError as exc:
            if "UnknownTopic" in type(exc).__name__:
                return None
            raise self.error(f"cannot describe topic {topic!r}: {exc!r}") from exc
        for entry in described:
            if entry.get("name") == topic:
                if entry.get("error_code", 0) not in (0, None):
                    return None
                return len(entry.get("partitions") or [])
        return None

    def _ensure_topic(self, topic: str, partitions: int, *, create: bool) -> None:
        """Create ``topic`` if missing (when allowed) and check our partition is in it."""
        count = self._partition_count(topic)
        if count is None:
            if not create:
                raise self.error(f"topic {topic!r} does not exist")
            configs = {"max.message.bytes": str(self.max_message_bytes + OVERHEAD)}
            if self.retention_bytes is not None:
                configs["retention.bytes"] = str(self.retention_bytes)
            if self.retention_age is not None:
                configs["retention.ms"] = str(int(self.retention_age * 1000))
            try:
                self._admin.create_topics([NewTopic(topic, partitions, self.replication, topic_configs=configs)])
            except TopicAlreadyExistsError:
                pass  # another process won the race: fine
            except KafkaError as exc:
                raise self.error(f"cannot create topic {topic!r}: {exc!r}") from exc
            count = partitions
        if topic == self.stream and self.partition >= max(count, 1):
            raise self.error(f"partition {self.partition} does not exist: topic {topic!r} has {count}")

    def _producer_client(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    **self._common(),
                    acks="all",
                    linger_ms=0,
                    # One record per batch.  Tansu (0.6) advances a partition's end offset by one
                    # per *batch*, so several small parts in one batch leave high_watermark()
                    # behind for good (measured: 7 records, end offset 2).  Parts are large, so
                    # batching would buy nothing anyway.
                    batch_size=1,
                    max_request_size=self.max_message_bytes + OVERHEAD,
                    delivery_timeout_ms=int(self.publish_timeout * 1000),
                    max_block_ms=int(self.publish_timeout * 1000),
                )
            except (KafkaError, OSError) as exc:
                raise self.error(f"cannot create a producer: {exc!r}") from exc
        return self._producer

    def consumer(self) -> KafkaConsumer:
        """A consumer with no group (progress is kept by the caller), sized for whole parts."""
        fetch = self.max_message_bytes + OVERHEAD
        try:
            return KafkaConsumer(
                **self._common(),
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=fetch,
                fetch_max_bytes=fetch,
                max_poll_records=POLL_RECORDS,
                fetch_max_wait_ms=max(1, int(self.fetch_wait * 1000)),
            )
        except (KafkaError, OSError) as exc:
            raise self.error(f"cannot create a consumer: {exc!r}") from exc

    # --------------------------------------------------------------- publish
    def publish(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        """Produce to our partition with acks=all and return the offset the broker gave it."""
        return next(iter(self.publish_many([(body, headers)])))

    def publish_many(self, items: Iterable[tuple[bytes, dict[str, str] | None]]) -> Iterator[int]:
        """Keep up to ``max_in_flight`` sends unacknowledged; yield offsets in order as acked.

        The producer is idempotent (kafka-python's default) so its own retries do not
        duplicate, and ordering within the partition is kept.
        """
        return self.publish_window(items, self._send, self._await_oldest)

    def _send(self, body: bytes, headers: dict[str, str], _in_flight: Sequence[FutureRecordMetadata]) -> FutureRecordMetadata:
        """Hand one record to the producer; the future resolves when the broker acknowledged it."""
        with self._lock:
            if self.closed:
                raise self.error("publish() on a closed broker")
            try:
                return self._producer_client().send(
                    self.stream, value=body, headers=_record_headers(headers), partition=self.partition
                )
            except KafkaError as exc:
                raise self.error(f"publish failed: {exc!r}") from exc

    def _await_oldest(self, window: deque[FutureRecordMetadata]) -> int:
        """The offset of the oldest record in flight, once acked (kafka-python retries meanwhile)."""
        try:
            metadata = window[0].get(timeout=self.publish_timeout)
        except KafkaError as exc:
            raise self.error(f"publish not acknowledged: {exc!r}") from exc
        return int(metadata.offset)

    # ----------------------------------------------------------------- state
    def _offsets(self, tp: TopicPartition) -> tuple[int, int]:
        """(beginning, end) offsets of a partition."""
        with self._lock:
            try:
                if self._meta is None:
                    self._meta = self.consumer()
                timeout_ms = int(self.connect_timeout * 1000) + 2000
                begin = self._meta.beginning_offsets([tp], timeout_ms=timeout_ms)[tp]
                end = self._meta.end_offsets([tp], timeout_ms=timeout_ms)[tp]
                return int(begin), int(end)
            except KafkaError as exc:
                raise self.error(f"cannot read offsets of {tp.topic}[{tp.partition}]: {exc!r}") from exc

    def high_watermark(self) -> int:
        """The partition's end offset (a metadata request; no records fetched)."""
        return self._offsets(self.tp)[1]

    def first_seq(self) -> int:
        """The oldest offset still retained."""
        return self._offsets(self.tp)[0]

    # -------------------------------------------------------------- reading
    def open_cursor(self, start: int | None, online: bool) -> Cursor:
        return _KafkaCursor(self, self.tp, start, online)

    # ---------------------------------------------------------- dead letters
    @property
    def dead_topic(self) -> str:
        return f"{self.stream}.dead"

    def dead_letter(self, message: Message, reason: str) -> None:
        """Produce the body to ``TOPIC.dead`` with the reason header (once per seq per process)."""
        with self._lock:
            if message.seq in self._dead_sent:
                return
            self._ensure_topic(self.dead_topic, 1, create=True)
            headers = dict(message.headers)
            headers.update(
                {REASON_HEADER: reason, SEQ_HEADER: str(message.seq), STREAM_HEADER: f"{self.stream}[{self.partition}]"}
            )
            try:
                self._producer_client().send(
                    self.dead_topic, value=message.body, headers=_record_headers(headers), partition=0
                ).get(timeout=self.publish_timeout)
            except KafkaError as exc:
                raise self.error(f"cannot dead-letter seq {message.seq}: {exc!r}") from exc
            self._dead_sent.add(message.seq)

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters of this partition, oldest first, one per seq (readers may repeat them)."""
        if self._partition_count(self.dead_topic) is None:
            return []
        tp = TopicPartition(self.dead_topic, 0)
        begin, end = self._offsets(tp)
        out: dict[int, DeadLetter] = {}
        consumer = self.consumer()
        try:
            consumer.assign([tp])
            consumer.seek(tp, begin)
            position = begin
            deadline = time.monotonic() + self.connect_timeout + 10
            while position < end and len(out) < limit and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    for rec in records:
                        position = rec.offset + 1
                        headers = normalize_headers(dict(rec.headers or []))
                        if headers.pop(STREAM_HEADER, "") != f"{self.stream}[{self.partition}]":
                            continue
                        seq = int(headers.pop(SEQ_HEADER, "-1"))
                        reason = headers.pop(REASON_HEADER, "")
                        out.setdefault(seq, DeadLetter(seq, reason, rec.value, headers))
        finally:
            consumer.close()
        return [out[k] for k in sorted(out)][:limit]

    def delete(self) -> None:
        """Delete the topic and its dead-letter topic (tests, and removing a stream for good)."""
        for topic in (self.stream, self.dead_topic):
            if self._partition_count(topic) is not None:
                try:
                    self._admin.delete_topics([topic])
                except KafkaError as exc:
                    raise self.error(f"cannot delete topic {topic!r}: {exc!r}") from exc

    def close(self) -> None:
        super().close()
        with self._lock:
            producer, self._producer = self._producer, None
            meta, self._meta = self._meta, None
            if producer is not None:
                producer.close(timeout=self.publish_timeout)
            if meta is not None:
                meta.close()
            self._admin.close()


class _KafkaCursor(Cursor):
    """assign + seek on one partition; seq = record offset."""

    def __init__(self, log: KafkaLog, tp: TopicPartition, start: int | None, online: bool) -> None:
        self.log = log
        self.tp = tp
        begin, end = log._offsets(tp)
        self.start_hw = end
        if online:
            start = end
        elif start is None:
            start = begin
        elif start < begin:
            raise log.error(f"seq {start} is no longer retained: the partition starts at offset {begin}")
        self.want = start
        self.next = start
        self.consumer = log.consumer()
        try:
            self.consumer.assign([tp])
            self.consumer.seek(tp, start)
        except BaseException:
            self.consumer.close()
            raise

    @property
    def position(self) -> int:
        return max(self.next, self.want)

    def fetch(self, wait: float) -> list[Message]:
        try:
            batches = self.consumer.poll(timeout_ms=max(1, int(wait * 1000)), max_records=POLL_RECORDS)
        except KafkaError as exc:
            raise self.log.error(f"fetch failed: {exc!r}") from exc
        out: list[Message] = []
        for rec in batches.get(self.tp, []):
            self.next = rec.offset + 1
            if rec.offset < self.want:
                continue
            body = rec.value if rec.value is not None else b""
            out.append(Message(seq=rec.offset, body=body, headers=normalize_headers(dict(rec.headers or []))))
        if not out:
            # Control records (transactions) take offsets too: trust the fetch position.
            with contextlib.suppress(KafkaError):
                self.next = max(self.next, int(self.consumer.position(self.tp)))
        return out

    def close(self) -> None:
        self.consumer.close()
