"""The part log over a file spool, RabbitMQ or Kafka, chosen by URL scheme.

``open_broker("spool:///.tdtp/spool/orders")``, ``open_broker("rabbitmq://user:pass@host:5672/orders")``
or ``open_broker("kafka://host:9092/orders")`` all return a :class:`PartLog`; see
:mod:`tdtp.brokers.base` for the contract and each module for what a seq means there.
Broker modules are imported on first use so that a spool user needs neither pika
nor kafka-python at import time.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from tdtp.brokers.base import (
    NOT_TDTP,
    BrokerError,
    CaughtUp,
    Cursor,
    DeadLetter,
    Message,
    PartLog,
    looks_like_tdtp,
    redact_url,
)
from tdtp.brokers.views import LogView, OnlyExport, PublishedSeqs, UntilExportsEnd, UntilSummary

#: URL scheme -> "module:class".
SCHEMES = {
    "spool": "tdtp.brokers.spool:SpoolLog",
    "rabbitmq": "tdtp.brokers.rabbitmq:RabbitLog",
    "kafka": "tdtp.brokers.kafka:KafkaLog",
}


def open_broker(url: str, **options: object) -> PartLog:
    """Open the part log named by ``url``; ``options`` override the URL's query options.

    Raises :class:`BrokerError` for an unknown scheme (listing the known ones), an
    unknown option, or a broker that cannot be reached after bounded retries.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    target = SCHEMES.get(scheme)
    if target is None:
        raise BrokerError(
            f"unknown broker scheme {scheme or '(none)'!r}; known schemes: "
            + ", ".join(f"{s}://" for s in SCHEMES),
            where=redact_url(url),
        )
    module_name, _, class_name = target.partition(":")
    module = __import__(module_name, fromlist=[class_name])
    cls: type[PartLog] = getattr(module, class_name)
    return cls(url, **options)


def stream_url(base_url: str, stream: str) -> str:
    """Append a stream name to a base URL that names only the broker or spool directory.

    ``stream_url("spool:///.tdtp/spool", "orders")`` -> ``spool:///.tdtp/spool/orders``;
    the query string is kept: ``rabbitmq://h:5672/?queue_type=quorum`` ->
    ``rabbitmq://h:5672/orders?queue_type=quorum``.
    """
    scheme, _, rest = base_url.partition("://")
    path_part, sep, query = rest.partition("?")
    if scheme.lower() == "spool":
        return f"{scheme}://{path_part.rstrip('/')}/{stream}{sep}{query}"
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{stream}"))


__all__ = [
    "NOT_TDTP",
    "SCHEMES",
    "BrokerError",
    "CaughtUp",
    "Cursor",
    "DeadLetter",
    "LogView",
    "Message",
    "PartLog",
    "OnlyExport",
    "PublishedSeqs",
    "UntilExportsEnd",
    "UntilSummary",
    "looks_like_tdtp",
    "open_broker",
    "redact_url",
    "stream_url",
]
