"""The part broker resource: one stream of the part log (spool, RabbitMQ or Kafka)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from tdtp.brokers import PartLog, open_broker, redact_url


class PartBroker(dg.ConfigurableResource):
    """A broker URL naming one stream: ``spool:///DIR/STREAM``, ``rabbitmq://…/STREAM``, ``kafka://…/TOPIC``.

    The export asset publishes into it, the sensor polls its high watermark and the
    import ops read parts from it.  Connections are opened per use and closed at once:
    a sensor tick or an op must not hold a broker connection between calls.
    """

    url: str = Field(description="Broker URL of this table's stream; use an EnvVar when it has a password.")

    @contextmanager
    def open(self) -> Iterator[PartLog]:
        log = open_broker(self.url)
        try:
            yield log
        finally:
            log.close()

    def high_watermark(self) -> int:
        """The seq the next message will get (cheap: no part bodies are read)."""
        with self.open() as log:
            return log.high_watermark()

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)
