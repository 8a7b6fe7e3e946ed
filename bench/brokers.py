"""Part-log throughput per broker, measured beside the same client's bare loop in the same run.

Usage: ``.venv/bin/python bench/brokers.py [--parts 100] [--part-bytes 1900000]
[--brokers spool rabbitmq-stream rabbitmq-quorum kafka] [--rabbitmq URL]``

For each broker it publishes ``--parts`` parts of ``--part-bytes`` each, every one
confirmed (fsync / publisher confirm / acks=all), three ways:

  raw       - the anchor: the client library with nothing of ours around it
              (spool: ``os.write`` + ``os.fsync`` per part into one file; RabbitMQ: pika
              ``confirm_delivery`` + ``basic_publish`` on a bare channel; Kafka:
              kafka-python ``send().get()``)
  publish   - ``PartLog.publish`` one part at a time (what the exporter does)
  window    - ``PartLog.publish_many`` with ``max_in_flight`` unconfirmed parts

then reads everything back (``raw`` read with the bare client, ``read`` through
``PartLog.read``), times ``high_watermark()``, and prints parts/s, MB/s and our
throughput as a fraction of the raw loop's (1.00 = as fast as the bare client).
Each broker runs ``--repeat`` rounds and the medians are printed.  Kafka runs against a Tansu broker this script starts (and
stops).  Every queue, topic and file it creates is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tdtp.brokers import CaughtUp, Message, PartLog, open_broker  # noqa: E402

DEFAULT_RABBITMQ = os.environ.get("TDTP_BENCH_RABBITMQ", "rabbitmq://guest:guest@127.0.0.1:5672")
BROKERS = ["spool", "rabbitmq-stream", "rabbitmq-quorum", "kafka"]


def make_body(size: int) -> bytes:
    """A part-like body: XML envelope and pipe-separated rows, not trivially compressible."""
    rng = random.Random(42)
    rows = []
    total = 0
    while total < size:
        row = f"<R>{rng.randrange(10**9)}|{rng.random():.6f}|name-{rng.randrange(10**6)}|2026-01-0{rng.randrange(1, 10)}</R>"
        rows.append(row)
        total += len(row)
    head = '<?xml version="1.0" encoding="UTF-8"?><DataPacket protocol="TDTP" version="1.0"><Data>'
    return (head + "".join(rows) + "</Data></DataPacket>").encode()[:size]


def headers(i: int) -> dict[str, str]:
    return {"kind": "data", "export_id": "bench", "table": "bench", "partition": "", "part": str(i + 1),
            "rows": "1000"}


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Case(ABC):
    """One broker: how to open our log, and the raw client loops to compare with."""

    name: str

    @abstractmethod
    def url(self, stream: str) -> str: ...

    @abstractmethod
    def raw_publish(self, stream: str, body: bytes, n: int) -> None: ...

    @abstractmethod
    def raw_read(self, stream: str, n: int) -> int: ...

    def cleanup(self, stream: str) -> None:
        with contextlib.suppress(Exception), open_broker(self.url(stream)) as log:
            log.delete()  # type: ignore[attr-defined]


class SpoolCase(Case):
    name = "spool"

    def __init__(self, directory: str) -> None:
        self.dir = directory

    def url(self, stream: str) -> str:
        return f"spool:///{self.dir}/{stream}"

    def raw_publish(self, stream: str, body: bytes, n: int) -> None:
        fd = os.open(os.path.join(self.dir, f"{stream}.raw"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(n):
                os.write(fd, body)
                os.fsync(fd)
        finally:
            os.close(fd)

    def raw_read(self, stream: str, n: int) -> int:
        size = 0
        with open(os.path.join(self.dir, f"{stream}.raw"), "rb", buffering=0) as f:
            while chunk := f.read(4 * 1024 * 1024):
                size += len(chunk)
        return size

    def cleanup(self, stream: str) -> None:
        for p in Path(self.dir).glob(f"{stream}*"):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()


class RabbitCase(Case):
    def __init__(self, base: str, queue_type: str) -> None:
        from urllib.parse import urlsplit

        import pika

        self.base = base
        self.queue_type = queue_type
        self.name = f"rabbitmq-{queue_type}"
        parts = urlsplit(base)
        self.params = pika.ConnectionParameters(
            parts.hostname or "127.0.0.1", parts.port or 5672, "/",
            pika.PlainCredentials(parts.username or "guest", parts.password or "guest"),
        )

    def url(self, stream: str) -> str:
        return f"{self.base}/{stream}?queue_type={self.queue_type}"

    def raw_publish(self, stream: str, body: bytes, n: int) -> None:
        import pika

        conn = pika.BlockingConnection(self.params)
        try:
            channel = conn.channel()
            channel.queue_declare(stream + ".raw", durable=True, arguments={"x-queue-type": self.queue_type})
            channel.confirm_delivery()
            props = pika.BasicProperties(delivery_mode=2, content_type="application/xml")
            for _ in range(n):
                channel.basic_publish("", stream + ".raw", body, props)
        finally:
            conn.close()

    def raw_read(self, stream: str, n: int) -> int:
        import pika

        conn = pika.BlockingConnection(self.params)
        size = count = 0
        try:
            channel = conn.channel()
            channel.basic_qos(prefetch_count=8)
            args = {"x-stream-offset": "first"} if self.queue_type == "stream" else None
            for method, _props, body in channel.consume(stream + ".raw", arguments=args, inactivity_timeout=10):
                if method is None:
                    break
                channel.basic_ack(method.delivery_tag)
                size += len(body)
                count += 1
                if count == n:
                    break
            channel.cancel()
        finally:
            conn.close()
        return size

    def cleanup(self, stream: str) -> None:
        import pika

        conn = pika.BlockingConnection(self.params)
        try:
            for name in (stream, stream + ".raw", stream + ".dead"):
                channel = conn.channel()
                with contextlib.suppress(pika.exceptions.AMQPError):
                    channel.queue_delete(name)
        finally:
            conn.close()


class KafkaCase(Case):
    name = "kafka"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def url(self, stream: str) -> str:
        return f"kafka://{self.bootstrap}/{stream}"

    def raw_publish(self, stream: str, body: bytes, n: int) -> None:
        from kafka import KafkaAdminClient, KafkaProducer
        from kafka.admin import NewTopic

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)  # one partition, like KafkaLog's topics
        admin.create_topics([NewTopic(stream + "-raw", 1, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0,
                                 max_request_size=len(body) + 65536)
        try:
            for _ in range(n):
                producer.send(stream + "-raw", body).get(30)
        finally:
            producer.close()

    def raw_read(self, stream: str, n: int) -> int:
        from kafka import KafkaConsumer, TopicPartition

        tp = TopicPartition(stream + "-raw", 0)
        fetch = 64 * 1024 * 1024 + 65536  # what KafkaLog uses: kafka-python's 1 MB default cannot hold a part
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                 max_partition_fetch_bytes=fetch, fetch_max_bytes=fetch, max_poll_records=8)
        size = count = 0
        try:
            consumer.assign([tp])
            consumer.seek(tp, 0)
            deadline = time.monotonic() + 60
            while count < n and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    for rec in records:
                        size += len(rec.value)
                        count += 1
        finally:
            consumer.close()
        return size

    def cleanup(self, stream: str) -> None:
        super().cleanup(stream)
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        with contextlib.suppress(Exception):
            admin.delete_topics([stream + "-raw"])
        admin.close()


def read_through(log: PartLog, n: int) -> int:
    size = count = 0
    for event in log.read():
        if isinstance(event, CaughtUp):
            break
        assert isinstance(event, Message)
        log.ack(event)
        size += len(event.body)
        count += 1
    assert count == n, f"read {count} of {n}"
    return size


def run_case(case: Case, body: bytes, n: int, window: int, repeat: int) -> dict[str, float]:
    """Median seconds per step over ``repeat`` rounds; raw and ours alternate within a round.

    On two shared cores a single run is at the mercy of page-cache writeback and the
    neighbours, so each round measures every variant back to back on fresh streams.
    """
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        stream = f"bench{uuid.uuid4().hex[:8]}"
        try:
            times.setdefault("raw", []).append(timed(lambda s=stream: case.raw_publish(s, body, n)))
            with open_broker(case.url(stream)) as log:
                times.setdefault("publish", []).append(
                    timed(lambda lg=log: [lg.publish(body, headers(i)) for i in range(n)])
                )
            with open_broker(case.url(stream + "w"), max_in_flight=window) as log:
                times.setdefault("window", []).append(
                    timed(lambda lg=log: list(lg.publish_many((body, headers(i)) for i in range(n))))
                )
            times.setdefault("raw_read", []).append(timed(lambda s=stream: case.raw_read(s, n)))
            with open_broker(case.url(stream)) as log:
                started = time.perf_counter()
                hw = log.high_watermark()
                times.setdefault("hw", []).append(time.perf_counter() - started)
                assert hw == n, f"high watermark {hw}, expected {n}"
                times.setdefault("read", []).append(timed(lambda lg=log: read_through(lg, n)))
        finally:
            case.cleanup(stream)
            case.cleanup(stream + "w")
    out = {k: statistics.median(v) for k, v in times.items()}
    out["mb"] = len(body) * n / 1e6
    return out


def report(name: str, r: dict[str, float], n: int) -> None:
    mb = r["mb"]

    def line(label: str, seconds: float, anchor: float | None) -> str:
        ratio = f"{anchor / seconds:5.2f} of raw" if anchor else "   (anchor)"
        return f"  {label:<24} {n / seconds:8.1f} parts/s {mb / seconds:8.1f} MB/s  {seconds:6.2f} s  {ratio}"

    print(f"{name}  ({n} parts, {mb:.0f} MB; medians)")
    print(line("publish raw client", r["raw"], None))
    print(line("publish() one by one", r["publish"], r["raw"]))
    print(line("publish_many (window)", r["window"], r["raw"]))
    print(line("read raw client", r["raw_read"], None))
    print(line("read() through PartLog", r["read"], r["raw_read"]))
    print(f"  high_watermark()          {r['hw'] * 1000:8.1f} ms")


@contextlib.contextmanager
def maybe_tansu(wanted: bool) -> Iterator[str | None]:
    if not wanted:
        yield None
        return
    from tests.fixtures_kafka import tansu_server

    with tansu_server() as bootstrap:
        yield bootstrap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", type=int, default=100)
    ap.add_argument("--part-bytes", type=int, default=1_900_000)
    ap.add_argument("--window", type=int, default=4, help="max_in_flight for publish_many")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per broker (medians are printed)")
    ap.add_argument("--brokers", nargs="+", default=BROKERS, choices=BROKERS)
    ap.add_argument("--rabbitmq", default=DEFAULT_RABBITMQ)
    args = ap.parse_args()
    body = make_body(args.part_bytes)
    tmp = tempfile.mkdtemp(prefix="tdtp-bench-brokers-")
    try:
        with maybe_tansu("kafka" in args.brokers) as bootstrap:
            cases: list[Case] = []
            for name in args.brokers:
                if name == "spool":
                    cases.append(SpoolCase(tmp))
                elif name.startswith("rabbitmq"):
                    cases.append(RabbitCase(args.rabbitmq, name.split("-", 1)[1]))
                else:
                    assert bootstrap is not None
                    cases.append(KafkaCase(bootstrap))
            for case in cases:
                report(case.name, run_case(case, body, args.parts, args.window, args.repeat), args.parts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
