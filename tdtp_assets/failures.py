"""Step failures that say why: the root cause as the run's failure message.

Dagster 1.13 shows as a run's failure the error of its first failed step.  An
exception that escapes an op with a retry policy ends, after the last retry, as
"Exceeded max_retries of N" with the real error only in the step's events; an
exception without one shows its class and text, driver noise included.  The steps
here therefore end with ``dg.Failure``: its description is one line naming what
failed and why (the engine's own wording, which names the target or the broker and
carries the driver's message, e.g. ``database "dw" does not exist``), its metadata
the error's class; on the last attempt it bypasses the retry policy, so the run's
failure message is that line and not the retry counter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg

from tdtp.packet import TdtpError

# A failure description stays one readable line.
_LIMIT = 500


def one_line(text: str, limit: int = _LIMIT) -> str:
    """``text`` with its whitespace collapsed, cut at ``limit`` characters."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def root_cause(exc: BaseException) -> str:
    """One line saying why ``exc`` happened.

    The outermost engine error (``TdtpError``) is the best wording: it names the
    target, broker, part or field, and carries the driver's message.  Without one,
    the innermost exception is the cause, named with its class.
    """
    if isinstance(exc, dg.Failure) and exc.description:
        return one_line(exc.description)
    chain = list(_chain(exc))
    for item in chain:
        if isinstance(item, TdtpError):
            return one_line(str(item))
    inner = chain[-1]
    text = str(inner).strip()
    return one_line(f"{type(inner).__name__}: {text}" if text else type(inner).__name__)


@contextmanager
def failure_with_cause(
    what: str,
    *,
    retry_number: int = 0,
    max_retries: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """Turn any exception of the block into ``dg.Failure("<what>: <root cause>")``.

    ``retry_number``/``max_retries``: the step's attempt and its retry policy.  The
    failure allows retries while attempts are left and bypasses the policy on the
    last one, so Dagster reports this description rather than "Exceeded max_retries".
    A ``dg.Failure`` raised inside passes unchanged.
    """
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        cause = root_cause(exc)
        raise dg.Failure(
            description=one_line(f"{what}: {cause}"),
            metadata={"cause": cause, "error_class": type(exc).__name__, **(metadata or {})},
            allow_retries=retry_number < max_retries,
        ) from exc
