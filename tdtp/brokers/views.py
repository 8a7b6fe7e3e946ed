"""Views of a part log: wrappers that change what a read yields or remember what was published.

Why apart from ``tdtp/brokers/base.py``: these are not brokers but tools the
callers put around one (the export asset remembers its seqs with
:class:`PublishedSeqs`, a lander reads one export with :class:`OnlyExport` and stops
at its summary with :class:`UntilSummary`).  They work the same on every broker,
because they only see :class:`~tdtp.brokers.base.Message` headers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from tdtp.brokers.base import Message, PartLog
from tdtp.brokers.headers import EXPORT_ID, KIND, KIND_SUMMARY


class LogView:
    """A part log seen through a wrapper: everything not overridden is the wrapped log's."""

    def __init__(self, log: PartLog | LogView) -> None:
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class ReadFilter(LogView, ABC):
    """A log view whose reads pass through :meth:`passed`; the inner read is closed either way."""

    def read(self, **kwargs: Any) -> Iterator[Any]:
        inner = self._log.read(**kwargs)

        def items() -> Iterator[Any]:
            try:
                yield from self.passed(inner)
            finally:
                inner.close()

        return items()

    @abstractmethod
    def passed(self, items: Iterator[Any]) -> Iterator[Any]:
        """The items a read yields, from the wrapped log's ``items``."""


class PublishedSeqs(LogView):
    """A part log that remembers the first and last seq published through it (one export's).

    ``first`` is safe to read the export back from: where publish seqs are estimates
    (several writers on a RabbitMQ stream, see ``publish_seqs_exact``) it is the high
    watermark taken before the first publish when that is lower, so a reader from
    ``first`` never starts past the export's first part; it may meet other writers'
    messages, which :class:`OnlyExport` steps over.  ``on_first(first)`` is called once,
    right after the first publish (a copy run starts its lander there).
    """

    def __init__(self, log: PartLog | LogView, on_first: Callable[[int], None] | None = None) -> None:
        super().__init__(log)
        self._on_first = on_first
        self._floor: int | None = None if log.publish_seqs_exact else log.seq_floor()
        self.first: int | None = None
        self.last: int | None = None

    def publish(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        seq = self._log.publish(body, headers)
        if self.first is None:
            self.first = seq if self._floor is None else min(seq, self._floor)
            if self._on_first is not None:
                self._on_first(self.first)
        self.last = seq
        return seq


class OnlyExport(ReadFilter):
    """A part log whose reads yield one export's messages and step over every other one.

    Several exports of a table share its stream, and exports running at the same time
    interleave there.  A reader that lands one export (a copy run's lander, an import
    step landing its own seq range) must leave the other exports' messages to whoever
    lands those: landing them would take away the observations their own chain waits
    for.  ``others`` collects the export ids it stepped over ("" for a message that
    names none), so the caller can say which other exports lay in its seq range.
    Markers such as CaughtUp pass through.
    """

    def __init__(self, log: PartLog | LogView, export_id: str) -> None:
        super().__init__(log)
        self._export_id = export_id
        self.others: set[str] = set()

    def passed(self, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            if isinstance(item, Message):
                owner = item.headers.get(EXPORT_ID) or ""
                if owner != self._export_id:
                    self.others.add(owner)
                    continue
            yield item


class UntilSummary(ReadFilter):
    """A part log whose reads end right after a summary message.

    An importer following a stream live otherwise waits for more messages until a
    timeout; the summary is an export's last message, so after it that export has
    nothing left to land.  ``export_id`` picks whose summary ends the read (None:
    the first summary met); ``summary_seq`` is where it was.
    """

    def __init__(self, log: PartLog | LogView, export_id: str | None = None) -> None:
        super().__init__(log)
        self._export_id = export_id
        self.summary_seq: int | None = None

    def passed(self, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            yield item
            if (
                isinstance(item, Message)
                and item.headers.get(KIND) == KIND_SUMMARY
                and self._export_id in (None, item.headers.get(EXPORT_ID))
            ):
                self.summary_seq = item.seq
                return


class UntilExportsEnd(ReadFilter):
    """A log whose reads cover a seq range, then go on until every export begun in it has ended.

    Why: a Dagster land run costs seconds to start, so the part-arrival sensor launches
    one as soon as an export's first part is in the stream, for the seqs it saw.  Read
    with ``follow``, this view keeps yielding the messages that arrive after
    ``until_seq`` (inclusive, always read) until each export it adopted has sent its
    summary, like ``tdtp import --follow`` stopped at the right moment: the run lands,
    publishes and checks the exports that were still being exported when it started.

    An export is adopted when one of its data messages is read while fewer than
    ``adopt_limit`` messages have been read (so a busy stream cannot keep one read
    going forever); later exports' messages are still yielded (the read stays one
    contiguous range) and are finished by whoever reads on.  When the adopted exports
    have ended, the read goes on while the stream already holds more (one broker
    call: exports launched together land in one run rather than one run each).
    ``last_seq`` is the last seq yielded: the range read is ``from_seq..last_seq``.
    """

    def __init__(self, log: PartLog | LogView, until_seq: int, adopt_limit: int) -> None:
        super().__init__(log)
        self._until = until_seq
        self._adopt_limit = adopt_limit
        self.open: set[str] = set()  # adopted exports whose summary has not been read
        self._ended: set[str] = set()
        self.last_seq: int | None = None

    def passed(self, items: Iterator[Any]) -> Iterator[Any]:
        read = 0
        for item in items:
            if not isinstance(item, Message):
                yield item  # CaughtUp: the history is read; the range may already be covered
                if self._done(item.seq - 1):
                    return
                continue
            read += 1
            owner = item.headers.get(EXPORT_ID) or ""
            if item.headers.get(KIND) == KIND_SUMMARY:
                self.open.discard(owner)
                self._ended.add(owner)
            elif owner and owner not in self._ended and read <= self._adopt_limit:
                self.open.add(owner)
            if read >= self._adopt_limit:
                self._adopt_limit = 0  # adopts no more: stops as soon as the adopted ones end
            yield item
            self.last_seq = item.seq
            if self._done(item.seq):
                return

    def _done(self, seq: int) -> bool:
        if seq < self._until or self.open:
            return False
        # Nothing adopted is open: stop, unless more is waiting (and may still be adopted).
        return self._adopt_limit <= 0 or self._log.high_watermark() - 1 <= seq
