"""Connection values of the tables file: a URL or ``{env: NAME}``, and what is safe to show of them.

Kept apart from the file's models so the load-time checks (``tdtp_assets.config_checks``)
and the models (``tdtp_assets.tables_config``) share them without importing each other.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator


class EnvRef(BaseModel):
    """``{env: NAME}``: the value is read from the environment when a run starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str

    @field_validator("env")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value


Connection = str | EnvRef


def describe(conn: Connection) -> str:
    """A label safe to show: the URL without credentials, or ``$NAME`` for an env reference."""
    if isinstance(conn, EnvRef):
        return f"${conn.env}"
    parts = urlsplit(conn)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def scheme_of(conn: Connection) -> str:
    """``sqlite``/``postgresql``/``spool``/...; ``env`` when only the environment knows."""
    if isinstance(conn, EnvRef):
        return "env"
    scheme = urlsplit(conn).scheme.split("+", 1)[0]
    return "postgresql" if scheme == "postgres" else scheme


def label_of(conn: Connection) -> str:
    """A short identifier for a connection: database/file stem, or the env name (group and tag values)."""
    if isinstance(conn, EnvRef):
        raw = conn.env.lower()
    else:
        path = urlsplit(conn).path.rstrip("/")
        raw = Path(path).stem if path else (urlsplit(conn).hostname or scheme_of(conn))
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", raw).strip("_").lower()
    return cleaned or "default"


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite://`` URL names, by the engine's rule (three slashes relative, four absolute)."""
    if scheme_of(url) != "sqlite":
        return None
    return url.partition("://")[2][1:].split("?", 1)[0] or None
