"""``copy_out_chunks``: COPY's rows in chunks of whole lines, read in C with the collector
paused, on a real server: what it yields, and the connection it leaves after an error or
an early stop."""

from __future__ import annotations

import gc

import psycopg
import pytest

from tdtp.sources.pg_copy import FIRST_CHUNK_BYTES, copy_out_chunks

QUERY = "COPY (SELECT g, repeat('x', g % 300), g * 1.5 FROM generate_series(1, {n}) g) TO STDOUT"


def _plain_copy(conn: psycopg.Connection, statement: str) -> bytes:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        return b"".join(bytes(block) for block in copy)


@pytest.mark.parametrize("rows", [0, 1, 7, 50_000])
def test_chunks_are_whole_lines_and_the_same_bytes(pg_conn: psycopg.Connection, rows: int) -> None:
    statement = QUERY.format(n=rows)
    chunks = list(copy_out_chunks(pg_conn, statement, chunk_bytes=64 * 1024))
    assert b"".join(chunks) == _plain_copy(pg_conn, statement)
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    assert sum(chunk.count(b"\n") for chunk in chunks) == rows
    if rows == 50_000:
        assert len(chunks[0]) < 2 * FIRST_CHUNK_BYTES  # the first part can leave after a few rows
        assert max(map(len, chunks)) < 2 * 64 * 1024  # chunks stay near their size
    assert gc.isenabled()


def test_a_row_longer_than_a_chunk_comes_whole(pg_conn: psycopg.Connection) -> None:
    statement = "COPY (SELECT g, repeat('y', 200000) FROM generate_series(1, 5) g) TO STDOUT"
    chunks = list(copy_out_chunks(pg_conn, statement, chunk_bytes=16 * 1024))
    assert b"".join(chunks) == _plain_copy(pg_conn, statement)
    assert all(chunk.endswith(b"\n") for chunk in chunks)


def test_an_error_midway_raises_and_leaves_the_connection_usable(pg_conn: psycopg.Connection) -> None:
    statement = "COPY (SELECT g, 1 / (20000 - g) FROM generate_series(1, 30000) g) TO STDOUT"
    got = 0
    with pytest.raises(psycopg.Error, match="division by zero"):
        for chunk in copy_out_chunks(pg_conn, statement):
            got += chunk.count(b"\n")
    assert got < 20000
    assert gc.isenabled()
    assert pg_conn.execute("SELECT 42").fetchone() == (42,)


def test_an_early_stop_cancels_and_leaves_the_connection_usable(pg_conn: psycopg.Connection) -> None:
    chunks = copy_out_chunks(pg_conn, QUERY.format(n=500_000))
    first = next(chunks)
    assert first.endswith(b"\n")
    chunks.close()
    assert gc.isenabled()
    assert pg_conn.execute("SELECT 7").fetchone() == (7,)


def test_other_threads_run_while_the_server_pauses(pg_conn: psycopg.Connection) -> None:
    """A query that trickles rows (a slow view, a lock) must not freeze the process: the
    Dagster run worker's threads, a Kafka producer's thread, Ctrl-C.  A blocking read held
    the GIL through every pause of the server, a whole batch of rows long (3 s here)."""
    import threading
    import time

    ticks: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    statement = (
        "COPY (SELECT g, repeat('x', 9000), pg_sleep(CASE WHEN g % 5 = 0 THEN 0.3 ELSE 0 END)"
        " FROM generate_series(1, 30) g) TO STDOUT"
    )
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        rows = sum(chunk.count(b"\n") for chunk in copy_out_chunks(pg_conn, statement))
    finally:
        stop.set()
        watcher.join()
    assert rows == 30
    worst = max(b - a for a, b in zip(ticks, ticks[1:], strict=False))
    assert worst < 0.2, f"other threads frozen for {worst:.2f} s while the COPY waited for rows"


def test_ctrl_c_stops_an_export_of_a_slow_query_at_once(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C during ``tdtp export`` of a query whose rows come slowly: it stops within a second
    (exit 130, one line), not after a batch of rows (4 s here with the blocking read)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "tdtp.cli", "export", "--source", pg_url, "--query",
         "SELECT g, repeat('x', 9000) AS x, pg_sleep(0.2) AS s FROM generate_series(1, 200) g",
         "--to", str(tmp_path / "out"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2.5)  # well into the COPY: the interpreter has started and the first rows came
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        waited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip() == "tdtp export: interrupted", err
    assert waited < 1.0, f"Ctrl-C took {waited:.2f} s"


def test_the_socket_gets_its_low_water_mark_back(pg_conn: psycopg.Connection) -> None:
    """The COPY raises the socket's receive low-water mark (fewer wake-ups); libpq's and
    psycopg's own waits need it at 1 byte again afterwards, or a short answer would never wake them."""
    import os
    import socket

    def low_water() -> int:
        with socket.socket(fileno=os.dup(pg_conn.pgconn.socket)) as sock:
            return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)

    during = []
    for chunk in copy_out_chunks(pg_conn, QUERY.format(n=20_000)):
        during.append(low_water())
        assert chunk
    assert max(during) == 64 * 1024
    assert low_water() == 1
    assert pg_conn.execute("SELECT 1").fetchone() == (1,)  # answers at once
    with pytest.raises(psycopg.Error):
        list(copy_out_chunks(pg_conn, "COPY (SELECT 1 / (g - 500) FROM generate_series(1, 1000) g) TO STDOUT"))
    assert low_water() == 1
