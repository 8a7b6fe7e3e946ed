"""The file spool: URL forms, segments and rotation, index, retention, crash safety, concurrency."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tdtp.brokers import BrokerError, CaughtUp, Message, open_broker
from tdtp.brokers.spool import IDX_ENTRY, REC_HEADER, REC_MAGIC, REC_PREFIX, SEG_HEADER, SpoolLog, _crc

REPO = Path(__file__).resolve().parents[3]


def body_for(i: int, size: int = 3000) -> bytes:
    """A deterministic part body for number ``i``, so any byte out of place is noticed."""
    digest = hashlib.sha256(str(i).encode()).hexdigest().encode()
    filler = (digest * (size // len(digest) + 1))[:size]
    return f'<DataPacket n="{i}">'.encode() + filler + b"</DataPacket>"


def read_all(log: SpoolLog, **kwargs: object) -> list[Message | CaughtUp]:
    return list(log.read(**kwargs))  # type: ignore[arg-type]


def messages(events: list[Message | CaughtUp]) -> list[Message]:
    return [e for e in events if isinstance(e, Message)]


def spool(tmp_path: Path, stream: str = "orders", **options: object) -> SpoolLog:
    log = open_broker(f"spool:///{tmp_path}/{stream}", **options)
    assert isinstance(log, SpoolLog)
    return log


def segment_files(directory: Path, stream: str = "orders") -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(f"{stream}.") and p.name.endswith(".dat")
                  and not p.is_symlink())


def test_three_slashes_is_relative_four_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_broker("spool:///.tdtp/spool/orders") as rel:
        rel.publish(body_for(0))
    assert (tmp_path / ".tdtp" / "spool" / "orders.00000000000000000000.dat").exists()
    absolute = tmp_path / "elsewhere"
    with open_broker(f"spool:///{absolute}/orders") as log:  # tmp_path is absolute: four slashes
        log.publish(body_for(0))
    assert (absolute / "orders.00000000000000000000.dat").exists()


def test_segments_rotate_by_size_and_are_named_by_first_seq(tmp_path: Path) -> None:
    log = spool(tmp_path, segment_bytes=10_000)
    assert [log.publish(body_for(i), {"part": str(i)}) for i in range(10)] == list(range(10))
    assert segment_files(tmp_path) == [f"orders.{n:020d}.dat" for n in (0, 3, 6, 9)]
    assert os.readlink(tmp_path / "orders.current.dat") == f"orders.{9:020d}.dat"
    assert log.high_watermark() == 10
    got = messages(read_all(log, from_seq=4))
    assert [m.seq for m in got] == [4, 5, 6, 7, 8, 9]
    assert [m.body for m in got] == [body_for(i) for i in range(4, 10)]
    assert got[0].headers == {"part": "4"}


def test_index_is_rebuilt_from_the_segments(tmp_path: Path) -> None:
    log = spool(tmp_path, segment_bytes=10_000)
    for i in range(10):
        log.publish(body_for(i))
    log.close()
    for idx in tmp_path.glob("orders.*.idx"):
        idx.unlink()
    reader = spool(tmp_path)
    assert reader.high_watermark() == 10
    assert [m.seq for m in messages(read_all(reader, from_seq=7))] == [7, 8, 9]
    assert reader.rebuild_index() == 10
    sizes = {p.name: p.stat().st_size for p in tmp_path.glob("orders.*.idx")}
    assert sizes == {f"orders.{n:020d}.idx": k * IDX_ENTRY.size for n, k in ((0, 3), (3, 3), (6, 3), (9, 1))}
    assert reader.publish(body_for(10)) == 10


def test_retention_by_size_drops_oldest_segments_and_says_so(tmp_path: Path) -> None:
    log = spool(tmp_path, segment_bytes=10_000, retention_bytes=25_000)
    for i in range(20):
        log.publish(body_for(i))
    first = log.first_seq()
    assert first > 0
    total = sum((tmp_path / name).stat().st_size for name in segment_files(tmp_path))
    assert total <= 25_000 + 10_000  # the current segment is never dropped
    assert log.high_watermark() == 20
    with pytest.raises(BrokerError, match=f"seq 0 is no longer retained: the spool starts at seq {first}"):
        read_all(log, from_seq=0)
    assert [m.seq for m in messages(read_all(log))] == list(range(first, 20))


def test_retention_by_age_drops_segments_whose_last_write_is_old(tmp_path: Path) -> None:
    log = spool(tmp_path, segment_bytes=10_000, retention_age="1h")
    for i in range(7):
        log.publish(body_for(i))
    two_hours_ago = time.time() - 7200
    for name in segment_files(tmp_path)[:2]:
        os.utime(tmp_path / name, (two_hours_ago, two_hours_ago))
    for i in range(7, 10):  # rotates, which applies retention
        log.publish(body_for(i))
    assert segment_files(tmp_path) == [f"orders.{n:020d}.dat" for n in (6, 9)]
    assert [m.seq for m in messages(read_all(log))] == [6, 7, 8, 9]


def test_a_torn_last_record_is_never_returned_and_is_cut_by_the_next_writer(tmp_path: Path) -> None:
    log = spool(tmp_path)
    for i in range(3):
        log.publish(body_for(i))
    log.close()
    segment = tmp_path / segment_files(tmp_path)[0]
    data = segment.read_bytes()
    clean_size = len(data)
    body = body_for(3)
    prefix = REC_PREFIX.pack(REC_MAGIC, 3, 0, len(body))
    record = prefix + struct.pack("<I", _crc(prefix, b"", body)) + body
    with open(segment, "ab") as f:  # what a writer killed mid-append leaves: the start of record 3
        f.write(record[:1500])
    reader = spool(tmp_path, create=False)  # a reader repairs nothing, and returns nothing torn
    assert reader.high_watermark() == 3
    events = read_all(reader)
    assert [m.body for m in messages(events)] == [body_for(i) for i in range(3)]
    assert isinstance(events[-1], CaughtUp) and events[-1].seq == 3
    assert segment.stat().st_size == clean_size + 1500
    writer = spool(tmp_path)  # opening to write cuts the debris
    assert segment.stat().st_size == clean_size
    assert writer.publish(body_for(3)) == 3
    assert segment.stat().st_size == clean_size + REC_HEADER.size + len(body_for(3))  # debris gone
    assert [m.body for m in messages(read_all(writer))] == [body_for(i) for i in range(4)]


def test_corruption_in_the_middle_is_an_error_not_silence(tmp_path: Path) -> None:
    log = spool(tmp_path)
    for i in range(3):
        log.publish(body_for(i))
    segment = tmp_path / segment_files(tmp_path)[0]
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside record 1's body
    segment.write_bytes(bytes(raw))
    with pytest.raises(BrokerError, match="corrupt record seq 1"):
        read_all(log)


WRITER_SCRIPT = """
import random, sys
from tdtp.brokers import open_broker
payload = random.Random(7).randbytes(4_000_000)
log = open_broker(sys.argv[1], segment_bytes=200_000_000)
i = 0
while True:
    seq = log.publish(b'<DataPacket n="%d">' % i + payload, {"i": str(i)})
    print(seq, flush=True)
    i += 1
"""


def big_body(i: int) -> bytes:
    return b'<DataPacket n="%d">' % i + random.Random(7).randbytes(4_000_000)


def test_sigkill_mid_append_loses_no_confirmed_record_and_returns_nothing_torn(tmp_path: Path) -> None:
    url = f"spool:///{tmp_path}/orders"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, url], stdout=subprocess.PIPE, env=env)
    confirmed: list[int] = []
    try:
        assert proc.stdout is not None
        while len(confirmed) < 5:
            line = proc.stdout.readline()
            assert line, "writer died before it was killed"
            confirmed.append(int(line))
        time.sleep(0.0015)  # about when the next 4 MB record is being written
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        confirmed += [int(line) for line in proc.stdout.read().split()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert confirmed == list(range(len(confirmed)))
    segment = tmp_path / segment_files(tmp_path)[0]
    killed_size = segment.stat().st_size

    reader = spool(tmp_path, create=False)  # before any writer repairs anything
    got = messages(read_all(reader))
    assert [m.seq for m in got][: len(confirmed)] == confirmed
    assert all(m.body == big_body(m.seq) and m.headers == {"i": str(m.seq)} for m in got)
    whole = len(got)
    assert reader.high_watermark() == whole
    clean_size = SEG_HEADER.size + sum(record_size(m) for m in got)
    debris = killed_size - clean_size
    assert debris >= 0

    writer = spool(tmp_path)
    assert writer.publish(big_body(whole), {"i": str(whole)}) == whole
    got = messages(read_all(writer))
    assert [m.seq for m in got] == list(range(whole + 1))
    assert all(m.body == big_body(m.seq) for m in got)
    assert segment.stat().st_size == clean_size + record_size(got[-1])  # the torn tail is gone
    print(f"SIGKILL left {debris} bytes of a torn record after {whole} whole records")


def record_size(m: Message) -> int:
    return REC_HEADER.size + len(json.dumps(m.headers, separators=(",", ":"))) + len(m.body)


def test_reader_follows_a_concurrent_writer_across_rotations(tmp_path: Path) -> None:
    writer = spool(tmp_path, segment_bytes=20_000)
    reader = spool(tmp_path)
    writer.publish(body_for(0))

    def write() -> None:
        for i in range(1, 60):
            writer.publish(body_for(i), {"part": str(i)})
            if i % 10 == 0:
                time.sleep(0.05)

    thread = threading.Thread(target=write)
    got: list[Message] = []
    markers = 0
    thread.start()
    try:
        for event in reader.read(follow=True, timeout=1.0):
            if isinstance(event, CaughtUp):
                markers += 1
            else:
                got.append(event)
    finally:
        thread.join()
    assert markers == 1
    assert [m.seq for m in got] == list(range(60))
    assert all(m.body == body_for(m.seq) for m in got)
    assert len(segment_files(tmp_path)) > 5


def test_two_writers_interleave_whole_records(tmp_path: Path) -> None:
    writers = [spool(tmp_path, segment_bytes=30_000) for _ in range(2)]
    returned: list[list[tuple[int, int]]] = [[], []]

    def write(w: int) -> None:
        for k in range(30):
            i = w * 100 + k
            returned[w].append((writers[w].publish(body_for(i), {"i": str(i)}), i))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_seq = {m.seq: m for m in messages(read_all(writers[0]))}
    assert sorted(by_seq) == list(range(60))
    for seq, i in returned[0] + returned[1]:
        assert by_seq[seq].body == body_for(i) and by_seq[seq].headers == {"i": str(i)}


def test_dead_letters_are_files_a_user_can_open(tmp_path: Path) -> None:
    log = spool(tmp_path)
    log.publish(body_for(0))
    log.publish(b"PK\x03\x04 a zip file", {"part": "1"})
    assert [m.seq for m in messages(read_all(log))] == [0]
    dead = tmp_path / "orders.dead"
    assert sorted(p.name for p in dead.iterdir()) == [f"{1:020d}.body", f"{1:020d}.reason.json"]
    assert (dead / f"{1:020d}.body").read_bytes() == b"PK\x03\x04 a zip file"
    meta = json.loads((dead / f"{1:020d}.reason.json").read_text())
    assert meta["reason"] == "not a TDTP packet" and meta["headers"] == {"part": "1"} and meta["seq"] == 1


def test_delete_removes_only_this_streams_files(tmp_path: Path) -> None:
    other = spool(tmp_path, "customers")
    other.publish(body_for(0))
    log = spool(tmp_path, segment_bytes=10_000)
    for i in range(5):
        log.publish(body_for(i))
    log.publish(b"junk")
    read_all(log)
    log.delete()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "customers.00000000000000000000.dat",
        "customers.00000000000000000000.idx",
        "customers.current.dat",
        "customers.lock",
    ]


def test_one_exports_reader_steps_over_interleaved_exports_and_ends_at_its_summary(tmp_path: Path) -> None:
    """Two exports of one table write into its stream at once: a reader of one sees only its own."""
    from tdtp.brokers import OnlyExport, UntilSummary

    log = spool(tmp_path)
    order = ["a", "b", "a", "", "b", "a", "b"]  # "" : a message that names no export
    for n, owner in enumerate(order):
        log.publish(b"<DataPacket/>", {"kind": "data", "export_id": owner, "part": str(n)} if owner else {})
    log.publish(b"<Summary/>", {"kind": "summary", "export_id": "b"})
    log.publish(b"<Summary/>", {"kind": "summary", "export_id": "a"})
    log.publish(b"<DataPacket/>", {"kind": "data", "export_id": "c", "part": "1"})  # after a's summary

    own = OnlyExport(log, "a")
    reader = UntilSummary(own, "a")
    started = time.monotonic()
    read = messages(list(reader.read(from_seq=0, follow=True, timeout=30)))
    assert time.monotonic() - started < 10, "the read ended at a's summary, not at the follow timeout"
    assert [(m.seq, m.headers["export_id"], m.headers["kind"]) for m in read] == [
        (0, "a", "data"), (2, "a", "data"), (5, "a", "data"), (8, "a", "summary"),
    ]  # fmt: skip
    assert reader.summary_seq == 8
    assert own.others == {"b", ""}, "c came after the summary and was never read"


def test_a_range_reader_follows_until_the_exports_begun_in_it_end(tmp_path: Path) -> None:
    """A land run's read: its range, then on until every export adopted there has its summary."""
    from tdtp.brokers import UntilExportsEnd

    log = spool(tmp_path)
    for owner in ("a", "b", "a"):
        log.publish(b"<DataPacket/>", {"kind": "data", "export_id": owner})
    # Range 0..1 (a, b): a and b are adopted, so is c below (within the adopt limit of 4 messages).
    log.publish(b"<Summary/>", {"kind": "summary", "export_id": "b"})  # 3
    log.publish(b"<DataPacket/>", {"kind": "data", "export_id": "c"})  # 4: the 5th message, not adopted
    log.publish(b"<Summary/>", {"kind": "summary", "export_id": "a"})  # 5: the last adopted export ends
    log.publish(b"<DataPacket/>", {"kind": "data", "export_id": "c"})  # 6: never read

    view = UntilExportsEnd(log, until_seq=1, adopt_limit=4)
    started = time.monotonic()
    read = messages(list(view.read(from_seq=0, follow=True, timeout=30)))
    assert time.monotonic() - started < 10, "the read ended at a's summary, not at the follow timeout"
    assert [m.seq for m in read] == [0, 1, 2, 3, 4, 5]
    assert view.last_seq == 5 and not view.open

    # Nothing of the range is open and nothing more may be adopted: the read stops at the range's end.
    ended = UntilExportsEnd(log, until_seq=5, adopt_limit=1)
    assert [m.seq for m in messages(list(ended.read(from_seq=5, follow=True, timeout=30)))] == [5]
    # An export whose summary never comes: the read ends on the follow timeout, the export still open.
    stuck = UntilExportsEnd(log, until_seq=6, adopt_limit=100)
    assert [m.seq for m in messages(list(stuck.read(from_seq=6, follow=True, timeout=0.5)))] == [6]
    assert stuck.open == {"c"} and stuck.last_seq == 6


def test_a_range_reader_reads_on_while_the_stream_holds_more(tmp_path: Path) -> None:
    """Exports launched together land in one run: past its range the reader takes what is already there."""
    from tdtp.brokers import UntilExportsEnd

    log = spool(tmp_path)
    for owner in ("x", "y"):
        log.publish(b"<DataPacket/>", {"kind": "data", "export_id": owner})
        log.publish(b"<Summary/>", {"kind": "summary", "export_id": owner})
    view = UntilExportsEnd(log, until_seq=1, adopt_limit=100)
    started = time.monotonic()
    assert [m.seq for m in messages(list(view.read(from_seq=0, follow=True, timeout=30)))] == [0, 1, 2, 3]
    assert time.monotonic() - started < 10 and view.last_seq == 3
