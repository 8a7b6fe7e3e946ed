"""Kafka specifics against Tansu: Go-style values, partitions as separate logs, retention errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import zstandard
from kafka import KafkaProducer

from tdtp.brokers import BrokerError, CaughtUp, Message, PartLog, open_broker
from tdtp.brokers.kafka import KafkaLog


def part(i: int) -> bytes:
    return f'<?xml version="1.0"?><DataPacket n="{i}"><R>a|b</R></DataPacket>'.encode()


@pytest.fixture()
def topic_url(kafka_bootstrap: str, unique_name: str) -> Iterator[str]:
    url = f"kafka://{kafka_bootstrap}/{unique_name}"
    yield url
    with contextlib.suppress(BrokerError), open_broker(url) as log:
        assert isinstance(log, KafkaLog)
        log.delete()


def messages(log: PartLog, **kwargs: object) -> list[Message]:
    return [e for e in log.read(**kwargs) if isinstance(e, Message)]  # type: ignore[arg-type]


def test_go_producer_values_pass_through_untouched(kafka_bootstrap: str, topic_url: str, unique_name: str) -> None:
    with open_broker(topic_url):  # creates the topic
        pass
    xml = part(1)
    compressed = zstandard.ZstdCompressor().compress(xml)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        # What the Go tool sends: a bare value, and its spool path's whole-message zstd.
        producer.send(unique_name, value=xml, key=b"tdtp-1",
                      headers=[("content-type", b"application/xml"), ("protocol", b"tdtp")]).get(10)
        producer.send(unique_name, value=compressed, key=b"tdtp-2",
                      headers=[("content-type", b"application/xml+zstd"), ("protocol", b"tdtp")]).get(10)
        producer.send(unique_name, value=xml).get(10)  # no headers at all
    finally:
        producer.close()
    with open_broker(topic_url) as log:
        got = messages(log)
    assert [m.body for m in got] == [xml, compressed, xml]
    assert got[1].headers == {"content-type": "application/xml+zstd", "protocol": "tdtp"}
    assert got[2].headers == {}
    assert zstandard.ZstdDecompressor().decompress(got[1].body) == xml


def test_each_partition_is_its_own_log(topic_url: str) -> None:
    with open_broker(topic_url, partitions=2) as p0, open_broker(topic_url, partition=1) as p1:
        assert [p1.publish(part(i), {"part": str(i)}) for i in range(3)] == [0, 1, 2]
        assert p0.publish(part(9)) == 0
        assert (p0.high_watermark(), p1.high_watermark()) == (1, 3)
        assert [m.body for m in messages(p0)] == [part(9)]
        events = list(p1.read(from_seq=1))
        assert [e.seq for e in events] == [1, 2, 3] and events[-1] == CaughtUp(3)


def test_a_partition_that_does_not_exist_is_a_clear_error(topic_url: str) -> None:
    with open_broker(topic_url):
        pass
    with pytest.raises(BrokerError, match="partition 3 does not exist: topic .* has 1"):
        open_broker(topic_url, partition=3)


def test_parts_larger_than_kafkas_default_limits_round_trip(topic_url: str) -> None:
    big = b"<DataPacket>" + bytes(range(256)) * 20_000 + b"</DataPacket>"  # ~5 MB: over the 1 MB defaults
    with open_broker(topic_url) as log:
        assert log.publish(big, {"part": "1"}) == 0
        assert [m.body for m in messages(log)] == [big]
