"""RabbitMQ specifics: queue semantics and Go interop, restarts, blocked connections, limits.

The restart and resource-alarm tests change the shared broker for a second or
two and always put it back in ``finally``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pika
import pytest

from tdtp.brokers import BrokerError, CaughtUp, Message, PartLog, open_broker
from tdtp.brokers.rabbitmq import REASON_HEADER, RabbitLog


def part(i: int, size: int = 1000) -> bytes:
    return f'<?xml version="1.0"?><DataPacket n="{i}">'.encode() + b"y" * size + b"</DataPacket>"


def amqp_params() -> pika.ConnectionParameters:
    return pika.ConnectionParameters("127.0.0.1", 5672, "/", pika.PlainCredentials("guest", "guest"))


@pytest.fixture()
def queue_url(rabbitmq_url: str, unique_name: str) -> Iterator[str]:
    """``rabbitmq://…/NAME`` (add ``?queue_type=``); the queue and its dead letters are deleted afterwards."""
    yield f"{rabbitmq_url}/{unique_name}"
    conn = pika.BlockingConnection(amqp_params())
    try:
        for name in (unique_name, f"{unique_name}.dead"):
            channel = conn.channel()
            with contextlib.suppress(pika.exceptions.AMQPError):
                channel.queue_delete(name)
    finally:
        conn.close()


def rabbitmqctl(*args: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not available")
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def wait_for_broker(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            pika.BlockingConnection(amqp_params()).close()
            return
        except pika.exceptions.AMQPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def messages(log: PartLog, **kwargs: object) -> list[Message]:
    return [e for e in log.read(**kwargs) if isinstance(e, Message)]  # type: ignore[arg-type]


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_unacked_message_is_redelivered_to_the_next_reader(queue_url: str, queue_type: str) -> None:
    url = f"{queue_url}?queue_type={queue_type}"
    with open_broker(url) as log:
        for i in range(3):
            log.publish(part(i), {"part": str(i)})
        reader = log.read()
        first = next(reader)
        assert isinstance(first, Message) and first.headers["part"] == "0"
        log.ack(first)  # imported and committed
        second = next(reader)
        assert isinstance(second, Message) and second.headers["part"] == "1"
        reader.close()  # the importer crashed before committing part 1
    with open_broker(url) as log:
        events = list(log.read())
        got = [e for e in events if isinstance(e, Message)]
        assert [m.headers["part"] for m in got] == ["1", "2"]
        assert events[-1] == CaughtUp(2)
        for m in got:
            log.ack(m)
    with open_broker(url) as log:
        assert log.high_watermark() == 0


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_parts_can_be_acked_after_the_read_ended(queue_url: str, queue_type: str) -> None:
    """An importer may collect a batch, commit it, and ack afterwards: the acks still count."""
    url = f"{queue_url}?queue_type={queue_type}"
    with open_broker(url) as log:
        for i in range(4):
            log.publish(part(i), {"part": str(i)})
        batch = messages(log)  # the read is over here
        assert [m.headers["part"] for m in batch] == ["0", "1", "2", "3"]
        acker = threading.Thread(target=lambda: [log.ack(m) for m in batch[:3]])  # e.g. a worker thread
        acker.start()
        acker.join()
    with open_broker(url) as log:
        left = messages(log)
        assert [m.headers["part"] for m in left] == ["3"]  # the one never acked came back
        log.ack(left[0])


def test_go_producer_bare_xml_is_read_as_a_part(queue_url: str, unique_name: str) -> None:
    conn = pika.BlockingConnection(amqp_params())
    try:
        channel = conn.channel()
        channel.queue_declare(unique_name, durable=True)  # what the Go tool declares
        props = pika.BasicProperties(content_type="application/xml", delivery_mode=2)
        channel.basic_publish("", unique_name, part(7), props)
    finally:
        conn.close()
    with open_broker(f"{queue_url}?queue_type=classic") as log:
        assert log.high_watermark() == 1
        got = messages(log)
        assert [(m.seq, m.body, m.headers) for m in got] == [(0, part(7), {})]
        log.ack(got[0])


def test_parts_are_published_the_way_a_go_consumer_expects(queue_url: str, unique_name: str) -> None:
    with open_broker(f"{queue_url}?queue_type=classic") as log:
        log.publish(part(1), {"part": "1"})
    conn = pika.BlockingConnection(amqp_params())
    try:
        channel = conn.channel()
        channel.queue_declare(unique_name, durable=True)  # Go's flags are accepted: same queue
        method, props, body = channel.basic_get(unique_name, auto_ack=True)
    finally:
        conn.close()
    assert body == part(1)
    assert (method.exchange, method.routing_key) == ("", unique_name)
    assert props.content_type == "application/xml" and props.delivery_mode == 2


def test_queue_declared_with_other_flags_is_a_clear_error(queue_url: str) -> None:
    with open_broker(f"{queue_url}?queue_type=quorum"):
        pass
    with pytest.raises(BrokerError, match="exists with other settings than queue_type=classic"):
        open_broker(f"{queue_url}?queue_type=classic")


def test_a_queue_has_no_replay(queue_url: str) -> None:
    with open_broker(f"{queue_url}?queue_type=quorum") as log:
        log.publish(part(0))
        with pytest.raises(BrokerError, match="no replay"):
            list(log.read(from_seq=1))
        with pytest.raises(BrokerError, match="no replay"):
            list(log.read(online=True))


def test_dead_letters_carry_the_reason_header(queue_url: str, unique_name: str) -> None:
    with open_broker(f"{queue_url}?queue_type=stream") as log:
        log.publish(b"not xml", {"part": "1"})
        assert messages(log) == []
    conn = pika.BlockingConnection(amqp_params())
    try:
        channel = conn.channel()
        channel.basic_qos(prefetch_count=10)
        deliveries = channel.consume(f"{unique_name}.dead", arguments={"x-stream-offset": "first"},
                                     inactivity_timeout=5)
        method, props, body = next(deliveries)
        assert method is not None, "no dead letter arrived"
        channel.cancel()
    finally:
        conn.close()
    assert body == b"not xml"
    assert props.headers[REASON_HEADER] == "not a TDTP packet" and props.headers["part"] == "1"


def test_stream_high_watermark_is_cheap(queue_url: str) -> None:
    with open_broker(f"{queue_url}?queue_type=stream") as log:
        big = part(0, size=1_900_000)
        assert list(log.publish_many((big, {"part": str(i)}) for i in range(20))) == list(range(20))
    with open_broker(f"{queue_url}?queue_type=stream") as fresh:
        started = time.monotonic()
        assert fresh.high_watermark() == 20
        assert time.monotonic() - started < 0.6


class _CountedProbe:
    """The log's stream probe, counting its calls."""

    def __init__(self, probe: object, calls: list[int]) -> None:
        self._probe = probe
        self._calls = calls

    def next_offset(self, *args: object, **kwargs: object) -> int:
        self._calls.append(1)
        return self._probe.next_offset(*args, **kwargs)  # type: ignore[attr-defined]


def test_stream_seq_floor_is_never_past_the_end(queue_url: str) -> None:
    """A floor is where a reader of what comes next may start (tdtp copy's lander starts there):
    never past the stream's end.  The log that created the stream answers without probing
    (it was empty); another writer's messages since then stay at or after that floor."""
    url = f"{queue_url}?queue_type=stream"
    with open_broker(url) as creator:
        probes: list[int] = []
        creator._probe = _CountedProbe(creator._probe, probes)  # an empty stream's probe waits 0.25 s
        assert creator.seq_floor() == 0
        assert probes == []  # answered without probing
        with open_broker(url) as other:
            assert list(other.publish_many((part(i), {"part": str(i)}) for i in range(3))) == [0, 1, 2]
            floor = other.seq_floor()  # found by probing: at or below the end
            assert 0 <= floor <= other.high_watermark() == 3
        assert creator.seq_floor() <= 3
        assert creator.publish(part(9), {"part": "9"}) == 3
        assert creator.seq_floor() <= 4
        read = [m.seq for m in creator.read(from_seq=0, follow=False) if isinstance(m, Message)]
        assert read == [0, 1, 2, 3]


def test_default_max_message_size_is_rabbitmqs_128_mib(queue_url: str) -> None:
    with open_broker(f"{queue_url}?queue_type=quorum") as log:
        assert log.max_message_bytes == 128 * 1024 * 1024
        with pytest.raises(BrokerError, match="exceeds the broker's max message size"):
            log.publish(b"<" + bytes(128 * 1024 * 1024))
        assert log.high_watermark() == 0


def test_publishing_survives_a_broker_restart_without_losing_a_confirmed_part(queue_url: str) -> None:
    url = f"{queue_url}?queue_type=stream"
    log = open_broker(url)
    assert isinstance(log, RabbitLog)
    confirmed: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    followed: list[Message] = []
    follower = open_broker(url)

    def publish() -> None:
        i = 0
        while not stop.is_set():
            try:
                confirmed.append((log.publish(part(i, 100_000), {"i": str(i)}), i))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
                return
            i += 1

    def follow() -> None:  # a reader following live parts through the restart
        for event in follower.read(follow=True):
            if isinstance(event, Message):
                followed.append(event)

    threads = [threading.Thread(target=publish), threading.Thread(target=follow)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        try:
            rabbitmqctl("stop_app")
            time.sleep(0.5)
        finally:
            rabbitmqctl("start_app")
            wait_for_broker()
        time.sleep(1.0)
    finally:
        stop.set()
        threads[0].join(60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len({m.headers["i"] for m in followed}) < len(confirmed):
            time.sleep(0.1)
        follower.close()  # ends the follow loop
        threads[1].join(60)
    assert errors == []
    assert len(confirmed) > 10
    with open_broker(url) as reader:
        stored = {m.seq: m for m in messages(reader)}
    for seq, i in confirmed:  # every part publish() returned for is there, at the seq it returned
        assert stored[seq].headers["i"] == str(i) and stored[seq].body == part(i, 100_000)
    assert {int(m.headers["i"]) for m in followed} >= {i for _, i in confirmed}
    log.close()


def test_blocked_connection_makes_publish_wait_then_fail_clearly(queue_url: str) -> None:
    with open_broker(f"{queue_url}?queue_type=quorum", publish_timeout=1.5) as log:
        log.publish(part(0))
        try:
            rabbitmqctl("set_vm_memory_high_watermark", "0")  # memory alarm: the broker blocks publishers
            time.sleep(0.3)
            started = time.monotonic()
            with pytest.raises(BrokerError, match="blocked"):
                log.publish(part(1))
            assert 1.4 <= time.monotonic() - started < 5
        finally:
            rabbitmqctl("set_vm_memory_high_watermark", "0.4")
        time.sleep(0.3)
        assert log.publish(part(2)) == 1


def test_two_exports_publishing_at_once_are_each_read_back_whole(queue_url: str) -> None:
    """Confirms carry no stream offset: with two writers the seqs publish returns are estimates.

    Each export is read back from PublishedSeqs.first (never past its first part) to its
    summary, stepping over the other's messages: every part of each, nothing of the other.
    """
    from tdtp.brokers import OnlyExport, PublishedSeqs, UntilSummary

    url = f"{queue_url}?queue_type=stream"
    with open_broker(url) as log:
        log.publish(part(0), {"kind": "data", "export_id": "before"})  # the stream holds something
        assert log.publish_seqs_exact is False
    recorders: dict[str, PublishedSeqs] = {}
    start = threading.Barrier(2)

    def export(export_id: str) -> None:
        with open_broker(url) as writer:
            recorder = recorders[export_id] = PublishedSeqs(writer)
            start.wait()
            for i in range(40):
                recorder.publish(part(i), {"kind": "data", "export_id": export_id, "part": str(i + 1)})
            recorder.publish(b"<Summary/>", {"kind": "summary", "export_id": export_id})

    threads = [threading.Thread(target=export, args=(e,)) for e in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    with open_broker(url) as log:
        everything = messages(log, from_seq=0)
        for export_id, recorder in recorders.items():
            actual_first = min(m.seq for m in everything if m.headers.get("export_id") == export_id)
            assert recorder.first is not None and recorder.first <= actual_first
            own = OnlyExport(log, export_id)
            reader = UntilSummary(own, export_id)
            read = [m for m in reader.read(from_seq=recorder.first, follow=True, timeout=10) if isinstance(m, Message)]
            assert [m.headers.get("part") for m in read] == [str(i) for i in range(1, 41)] + [None]
            assert reader.summary_seq == max(m.seq for m in everything if m.headers.get("export_id") == export_id)
            assert export_id not in own.others and own.others <= {"a", "b", "before"}
