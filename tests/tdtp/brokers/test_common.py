"""The part-log contract, run against every broker: spool, RabbitMQ (stream, quorum, classic), Kafka (Tansu).

Log brokers (spool, RabbitMQ stream, Kafka) replay from any seq; RabbitMQ classic
and quorum queues are work queues without replay, so the replay tests run on the
log brokers only and the rest on all five.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tdtp.brokers import NOT_TDTP, BrokerError, CaughtUp, Message, PartLog, open_broker
from tdtp.brokers.base import ZSTD_MAGIC
from tdtp.packet import Summary
from tests.broker_support import deleted_after

LOG_KINDS = ["spool", "rabbitmq-stream", "kafka"]
QUEUE_KINDS = ["rabbitmq-quorum", "rabbitmq-classic"]
ALL_KINDS = LOG_KINDS + QUEUE_KINDS

Opener = Callable[..., PartLog]


def part(i: int, size: int = 2000) -> bytes:
    """A body that looks like a TDTP part and says which one it is."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<DataPacket n="{i}">'.encode()
        + b"x" * size
        + b"</DataPacket>"
    )


def headers(i: int) -> dict[str, str]:
    return {
        "kind": "data",
        "export_id": "exp-1",
        "table": "orders",
        "partition": "2026-01-01",
        "part": str(i),
        "rows": "10",
    }


def read_all(log: PartLog, **kwargs: object) -> list[Message | CaughtUp]:
    """Everything read() yields, acking messages as an importer would after committing."""
    events: list[Message | CaughtUp] = []
    for event in log.read(**kwargs):  # type: ignore[arg-type]
        events.append(event)
        if isinstance(event, Message):
            log.ack(event)
    return events


def seqs(events: list[Message | CaughtUp]) -> list[int | str]:
    """Seqs with the marker shown as ``"CU<seq>"`` -- what a user would print."""
    return [f"CU{e.seq}" if isinstance(e, CaughtUp) else e.seq for e in events]


@pytest.fixture()
def open_log(request: pytest.FixtureRequest, kind: str, tmp_path, unique_name: str) -> Iterator[Opener]:
    """Factory opening the same fresh stream on the broker ``kind``; everything is removed afterwards."""
    if kind == "spool":
        url = f"spool:///{tmp_path}/{unique_name}"
    elif kind.startswith("rabbitmq"):
        base = request.getfixturevalue("rabbitmq_url")
        url = f"{base}/{unique_name}?queue_type={kind.split('-', 1)[1]}"
    else:
        url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}/{unique_name}"
    opened: list[PartLog] = []

    def factory(**options: object) -> PartLog:
        log = open_broker(url, **options)
        opened.append(log)
        return log

    factory.url = url  # type: ignore[attr-defined]
    # The spool lives in tmp_path; a broker's stream is deleted even if closing a log fails.
    with contextlib.nullcontext(url) if kind == "spool" else deleted_after(url):
        try:
            yield factory
        finally:
            for log in opened:
                log.close()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_publish_returns_seqs_and_read_replays_everything(open_log: Opener) -> None:
    log = open_log()
    published = [log.publish(part(i), headers(i)) for i in range(5)]
    assert published == [0, 1, 2, 3, 4]
    events = read_all(log)
    assert seqs(events) == [0, 1, 2, 3, 4, "CU5"]
    messages = [e for e in events if isinstance(e, Message)]
    assert [m.body for m in messages] == [part(i) for i in range(5)]
    assert all(headers(i).items() <= m.headers.items() for i, m in enumerate(messages))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_publish_many_confirms_in_order(open_log: Opener) -> None:
    log = open_log(max_in_flight=3)
    assert list(log.publish_many((part(i), headers(i)) for i in range(7))) == list(range(7))
    assert log.high_watermark() == 7
    assert [int(e.headers["part"]) for e in read_all(log) if isinstance(e, Message)] == list(range(7))


@pytest.mark.parametrize("kind", LOG_KINDS)
def test_read_from_the_middle_and_after_a_seq(open_log: Opener) -> None:
    log = open_log()
    for i in range(6):
        log.publish(part(i), headers(i))
    assert seqs(read_all(log, from_seq=3)) == [3, 4, 5, "CU6"]
    assert seqs(read_all(log, after_seq=3)) == [4, 5, "CU6"]
    assert seqs(read_all(log, from_seq=0)) == [0, 1, 2, 3, 4, 5, "CU6"]
    assert seqs(read_all(log, after_seq=5)) == ["CU6"]


@pytest.mark.parametrize("kind", LOG_KINDS)
def test_empty_stream_yields_only_the_marker(open_log: Opener) -> None:
    log = open_log()
    assert seqs(read_all(log)) == ["CU0"]
    assert log.high_watermark() == 0


@pytest.mark.parametrize("kind", LOG_KINDS)
def test_online_read_gets_only_parts_published_after_it_started(open_log: Opener) -> None:
    log = open_log()
    for i in range(3):
        log.publish(part(i), headers(i))
    caught_up = threading.Event()
    writer = open_log()

    def publish_later() -> None:
        caught_up.wait(10)
        for i in (3, 4):
            writer.publish(part(i), headers(i))

    thread = threading.Thread(target=publish_later)
    thread.start()
    events: list[Message | CaughtUp] = []
    try:
        reader = log.read(online=True, follow=True, timeout=10)
        for event in reader:
            events.append(event)
            if isinstance(event, CaughtUp):
                caught_up.set()
            if len(events) == 3:
                break
        reader.close()
    finally:
        caught_up.set()
        thread.join()
    assert seqs(events) == ["CU3", 3, 4]
    assert [e.body for e in events[1:]] == [part(3), part(4)]  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_follow_yields_history_marker_live_parts_then_ends_after_idle_timeout(open_log: Opener) -> None:
    log = open_log()
    for i in range(2):
        log.publish(part(i), headers(i))
    caught_up = threading.Event()
    writer = open_log()

    def publish_later() -> None:
        caught_up.wait(10)
        time.sleep(0.2)
        for i in (2, 3):
            writer.publish(part(i), headers(i))

    thread = threading.Thread(target=publish_later)
    thread.start()
    events: list[Message | CaughtUp] = []
    last_event_at = 0.0
    try:
        for event in log.read(follow=True, timeout=1.0):
            events.append(event)
            last_event_at = time.monotonic()
            if isinstance(event, CaughtUp):
                caught_up.set()
            else:
                log.ack(event)
    finally:
        caught_up.set()
        thread.join()
    ended_after = time.monotonic() - last_event_at
    assert seqs(events) == [0, 1, "CU2", 2, 3]
    assert 0.9 <= ended_after < 3.0


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_high_watermark_is_the_next_seq(open_log: Opener) -> None:
    log = open_log()
    assert log.high_watermark() == 0
    for i in range(4):
        log.publish(part(i), headers(i))
    assert log.high_watermark() == 4
    assert open_log().high_watermark() == 4  # another process's view: no local knowledge


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_foreign_message_is_dead_lettered_and_reading_goes_on(open_log: Opener) -> None:
    log = open_log()
    summary = Summary("exp-1", "orders", 3, 30, 1234, "00000000000000ff").to_json()
    bodies = [
        part(0),
        b"hello, not a packet",
        b"\xef\xbb\xbf  \n" + part(2),  # BOM + whitespace before the XML
        ZSTD_MAGIC + b"\x00compressed part",  # Go's whole-message zstd: the codec decompresses it
        summary,
    ]
    for i, body in enumerate(bodies):
        log.publish(body, {"part": str(i)})
    events = read_all(log)
    assert [e.body for e in events if isinstance(e, Message)] == [bodies[0], bodies[2], bodies[3], bodies[4]]
    assert isinstance(events[-1], CaughtUp) and events[-1].seq == 5
    dead = log.dead_letters()
    assert [(d.seq, d.reason, d.body) for d in dead] == [(1, NOT_TDTP, b"hello, not a packet")]
    assert dead[0].headers.get("part") == "1"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_oversize_body_is_rejected_before_publishing(open_log: Opener) -> None:
    log = open_log(max_message_bytes=10_000)
    log.publish(part(0, size=5000), headers(0))
    with pytest.raises(BrokerError, match="exceeds the broker's max message size 10000") as err:
        log.publish(part(1, size=10_000), headers(1))
    assert open_log.url.split("?")[0].split("@")[-1] in str(err.value)  # type: ignore[attr-defined]
    assert log.high_watermark() == 1
    assert log.publish(part(2, size=10), headers(2)) == 1


@pytest.mark.parametrize("kind", LOG_KINDS)
def test_close_stops_a_reader_following_forever(open_log: Opener) -> None:
    log = open_log()
    log.publish(part(0), headers(0))
    events: list[Message | CaughtUp] = []
    started = threading.Event()

    def follow() -> None:
        for event in log.read(follow=True, timeout=None):
            events.append(event)
            started.set()

    thread = threading.Thread(target=follow)
    thread.start()
    assert started.wait(10)
    time.sleep(0.3)
    log.close()
    thread.join(3)
    assert not thread.is_alive()
    assert seqs(events) == [0, "CU1"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_missing_stream_without_create_is_a_clear_error(open_log: Opener) -> None:
    with pytest.raises(BrokerError, match="does not exist"):
        open_log(create=False)


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(BrokerError) as err:
        open_broker("nats://user:secret@127.0.0.1:4222/orders")
    message = str(err.value)
    assert "unknown broker scheme 'nats'" in message
    assert all(s in message for s in ("spool://", "rabbitmq://", "kafka://"))
    assert "secret" not in message


def test_unknown_option_is_refused(tmp_path) -> None:
    with pytest.raises(BrokerError, match="unknown option.*retention_byte"):
        open_broker(f"spool:///{tmp_path}/s?retention_byte=1GB")


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("scheme", ["rabbitmq", "kafka"])
def test_unreachable_broker_fails_within_seconds(scheme: str) -> None:
    port = _unused_port()
    url = (
        f"rabbitmq://guest:secret@127.0.0.1:{port}/orders"
        if scheme == "rabbitmq"
        else f"kafka://127.0.0.1:{port}/orders"
    )
    started = time.monotonic()
    with pytest.raises(BrokerError) as err:
        open_broker(url)
    assert time.monotonic() - started < 8
    assert f"127.0.0.1:{port}" in str(err.value) and "orders" in str(err.value)
    assert "secret" not in str(err.value)
