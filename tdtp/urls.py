"""Source and sink URLs: which backend, which file or database, and a safe form for messages.

One parser for every place a URL comes from (CLI, tables YAML, Dagster config) so
that ``sqlite:///rel.db`` means the same file everywhere and a typo in a scheme gives
one clear error listing what is supported.  Passwords never reach a message: every
error that names a URL uses :func:`redact`.

Path rules (the SQLAlchemy convention): three slashes keep the path as written, so
``sqlite:///data/x.db`` is relative to the working directory; four slashes give an
absolute path, ``sqlite:////srv/x.db``.  The same holds for ``csv:``, ``json:`` and
``jsonl:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from tdtp.packet import TdtpError

# Normalized scheme names; ``postgres`` is accepted as an alias of ``postgresql``.
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
CSV = "csv"
JSONL = "jsonl"
JSON = "json"
KNOWN_SCHEMES = (SQLITE, POSTGRESQL, CSV, JSONL, JSON)
_ALIASES = {"postgres": POSTGRESQL}
_FILE_SCHEMES = (SQLITE, CSV, JSONL, JSON)


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A URL split into what the sources and sinks need.

    ``path`` is set for file-backed schemes (SQLite, CSV, JSON, JSONL); ``gzip`` says
    the file name ends in ``.gz``.  ``url`` is the text as given: psycopg takes it as is.
    """

    scheme: str
    url: str
    path: str = ""
    gzip: bool = False

    @property
    def redacted(self) -> str:
        return redact(self.url)


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case, aliases resolved (``postgres`` -> ``postgresql``); any
    text before ``://``, known or not (brokers have their own schemes), "" without one."""
    raw = url.partition("://")[0].lower() if "://" in url else ""
    return _ALIASES.get(raw, raw)


def parse_url(url: str) -> ParsedUrl:
    """Parse a source/sink URL or raise TdtpError naming the problem (password hidden)."""
    if not isinstance(url, str) or "://" not in url:
        raise TdtpError(f"not a URL: {redact(str(url))!r} (expected scheme://..., schemes: {_known()})")
    raw_scheme, _, rest = url.partition("://")
    scheme = scheme_of(url)
    if scheme not in KNOWN_SCHEMES:
        raise TdtpError(f"unknown URL scheme {raw_scheme!r} in {redact(url)!r}; known schemes: {_known()}")
    if scheme == POSTGRESQL:
        return _parse_postgres(url)
    # File schemes: everything after "scheme://" is "/" + path (three slashes) or
    # "//abs/path" (four slashes).  A host part (scheme://host/x) is not supported.
    if not rest.startswith("/"):
        raise TdtpError(
            f"{redact(url)!r}: a {scheme} URL needs three slashes for a relative path "
            f"({scheme}:///dir/file) or four for an absolute one ({scheme}:////dir/file)"
        )
    path = rest[1:].split("?", 1)[0]
    if not path:
        raise TdtpError(f"{redact(url)!r}: the URL names no file")
    return ParsedUrl(scheme=scheme, url=url, path=path, gzip=path.lower().endswith(".gz"))


def _parse_postgres(url: str) -> ParsedUrl:
    try:
        parts = urlsplit(url)
        _ = parts.port  # validates the port number
    except ValueError as exc:
        raise TdtpError(f"bad PostgreSQL URL {redact(url)!r}: {exc}") from exc
    if not parts.path.strip("/"):
        raise TdtpError(f"PostgreSQL URL {redact(url)!r} names no database (postgresql://user@host:port/db)")
    return ParsedUrl(scheme=POSTGRESQL, url=url)


# user:password@ in the authority, and password=... in a query string.
_USERINFO_RE = re.compile(r"(?P<head>://[^/@:?#]*):(?P<pw>[^/?#]*)@")  # greedy: a raw '@' in a password
_QUERY_PW_RE = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&#]*)", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and error messages.

    The one redaction of the code base: broker URLs go through it too
    (``tdtp/brokers/base.py`` imports it as ``redact_url``).
    """
    out = _USERINFO_RE.sub(lambda m: f"{m.group('head')}:***@", url)
    return _QUERY_PW_RE.sub(lambda m: f"{m.group('head')}***", out)


def _known() -> str:
    return ", ".join(f"{s}://" for s in KNOWN_SCHEMES) + " (postgres:// too)"
