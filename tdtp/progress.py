"""Progress of long CLI work (``export``, ``import``, ``copy``) on stderr, for a person.

On a terminal: a bar drawn by ``rich`` with the rows done, the percentage and the
time left when the total is known or cheaply estimated (``Source.estimated_rows``:
the PostgreSQL planner's estimate, a SQLite ``count(*)`` of a small file, a CSV or
JSONL file's size over its mean line), else the rows, parts and rate.  Not on a
terminal (a log file, a pipe, a CI job): one plain line every ``every`` seconds and
a last one at the end, so a log shows how it went without control codes.  Quiet:
nothing.  stdout is never touched: it carries the commands' JSON results.

No background thread: the bar is redrawn from :meth:`Progress.update`, at most ten
times a second (the importer forks worker processes, and a fork taken while a
drawing thread holds the console's lock would leave it held in the child).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: Shortest time between two redraws of the bar.
_REDRAW_SECONDS = 0.1


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Rows and parts done so far, shown as a bar on a terminal or as periodic lines.

    ``total`` (rows) may be an estimate: the bar never goes past 100 % (the total is
    raised to the rows done) and ends at 100 % when :meth:`update` is called with
    ``force=True``, which callers do once at the end.
    """

    def __init__(
        self,
        label: str,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        every: float = 1.0,
        total: int | None = None,
        terminal: bool | None = None,
    ) -> None:
        self.label = label
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.every = every
        self.total = total
        self.start = time.perf_counter()
        self._last = self.start
        self._terminal = self._isatty() if terminal is None else terminal
        self._bar: Any = None
        self._task: Any = None
        self._done = False
        self._printed = -1  # rows of the last plain line (the last one is not printed twice)

    def _isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def set_total(self, total: int | None) -> None:
        """The rows expected (an estimate is fine); None when unknown."""
        self.total = total

    def update(self, rows: int, parts: int, *, force: bool = False) -> None:
        """Show ``rows`` and ``parts`` done; ``force`` once at the end (a last line, the bar completed)."""
        if self.quiet or self._done:
            return
        now = time.perf_counter()
        if self._terminal:
            self._draw(rows, parts, now, final=force)
        elif (force and rows != self._printed) or now - self._last >= self.every:
            self._last, self._printed = now, rows
            self.stream.write(self.line(rows, parts, now) + "\n")
            self.stream.flush()
        if force:
            self._done = True

    def line(self, rows: int, parts: int, now: float | None = None) -> str:
        """The plain line: rows (of the total, with % and ETA, when known), parts, rows/s."""
        elapsed = max((now or time.perf_counter()) - self.start, 1e-9)
        rate = rows / elapsed
        if self.total:
            total = max(self.total, rows)
            eta = (total - rows) / rate if rate > 0 else 0.0
            return (
                f"{self.label}: {rows:,} of ~{total:,} rows ({rows * 100 // total}%), {parts} parts, "
                f"{rate:,.0f} rows/s, ETA {_clock(eta)}"
            )
        return f"{self.label}: {rows:,} rows, {parts} parts, {rate:,.0f} rows/s"

    # ------------------------------------------------------------- terminal
    def _draw(self, rows: int, parts: int, now: float, *, final: bool) -> None:
        if self._bar is None:
            self._open()
        total = max(self.total, rows) if self.total else None
        if final:
            total = rows
        rate = rows / max(now - self.start, 1e-9)
        self._bar.update(self._task, completed=rows, total=total, parts=parts, rate=f"{rate:,.0f} rows/s")
        if final or now - self._last >= _REDRAW_SECONDS:
            self._last = now
            self._bar.refresh()
        if final:
            self._bar.stop()

    def _open(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:,} rows, {task.fields[parts]} parts, {task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=self.stream, force_terminal=True),
            auto_refresh=False,
        )
        self._task = self._bar.add_task(self.label, total=self.total, parts=0, rate="")
        self._bar.start()

    def close(self) -> None:
        """Stop drawing (for callers that end without a final ``update``)."""
        if self._bar is not None and not self._done:
            self._bar.stop()
        self._done = True
