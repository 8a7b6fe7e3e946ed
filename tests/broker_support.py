"""Streams the tests make on the machine's brokers, removed when the test ends.

A RabbitMQ stream or queue outlives the test that declared it (they piled up on the
shared broker, one per test run, before this), so every test that names one of its
own deletes it afterwards, whether it passed or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tdtp.brokers import BrokerError, open_broker


@contextlib.contextmanager
def deleted_after(url: str) -> Iterator[str]:
    """Yield ``url``; afterwards delete its stream (queue and dead-letter queue, or topic).

    Opened with ``create=False``: a stream the test never got to make is not made just
    to be deleted, and one already gone is no error.
    """
    try:
        yield url
    finally:
        with contextlib.suppress(BrokerError), open_broker(url, create=False) as log:
            log.delete()  # type: ignore[attr-defined]
