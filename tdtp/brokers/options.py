"""Broker options: typed values from a URL's query string and keyword arguments.

Every broker takes its options both ways (``spool:///d/s?segment_bytes=64MB`` or
``open_broker(url, segment_bytes="64MB")``) and declares them as a spec of
``name -> (converter, default)``; :func:`resolve_options` merges the two and types
them.  Kept apart from ``tdtp/brokers/base.py`` because it is configuration, not the
part log's contract.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from tdtp.brokers.base import BrokerError
from tdtp.urls import redact

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_size(value: object) -> int:
    """A byte size from an int or text such as ``256MB``, ``64MiB``, ``1.5GB``, ``1000``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r}")
    number = float(m.group(1))
    unit = (m.group(2) or "").lower()
    base = unit[:1] if unit[:1] in "kmgt" else ""
    factor = _SIZE_UNITS[base]
    if "i" in unit:
        factor = 1024 ** "_kmgt".index(base) if base else 1
    return int(number * factor)


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or text such as ``30``, ``1.5s``, ``10m``, ``6h``, ``7d``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", str(value), re.IGNORECASE)
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _optional(conv: Callable[[object], Any]) -> Callable[[object], Any]:
    def parse(value: object) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        return conv(value)

    return parse


#: Converters for option specs: ``name -> (converter, default)``.
SIZE = parse_size
OPT_SIZE = _optional(parse_size)
DURATION = parse_duration
OPT_DURATION = _optional(parse_duration)
BOOL = parse_bool


def INT(value: object) -> int:  # noqa: N802 - used like a type name in option specs
    return int(str(value)) if not isinstance(value, int) else value


def STR(value: object) -> str:  # noqa: N802
    return str(value)


def resolve_options(
    url: str,
    query: str,
    options: Mapping[str, object],
    spec: Mapping[str, tuple[Callable[[object], Any], Any]],
) -> dict[str, Any]:
    """Merge URL query options and keyword options (keywords win), typed by ``spec``.

    Unknown names are an error rather than silently ignored: a typo in a retention
    option would otherwise keep data forever or drop it early without a word.
    """
    raw: dict[str, object] = dict(parse_qsl(query, keep_blank_values=True))
    raw.update(options)
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise BrokerError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(spec))}",
            where=redact(url),
        )
    out: dict[str, Any] = {}
    for name, (conv, default) in spec.items():
        if name in raw:
            try:
                out[name] = conv(raw[name])
            except (TypeError, ValueError) as exc:
                raise BrokerError(f"option {name}: {exc}", where=redact(url)) from exc
        else:
            out[name] = default
    return out
