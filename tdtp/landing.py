"""A lander process: one export landed from a broker into a target by a process of its own.

Why a process, not a thread: the export's row encoding and the importer's receive
loop and publisher would take turns on one GIL (docs/importer.md, the copy runs;
measured 37 s against 20 s for the 1M-row demo).  Why a fresh interpreter, not a
fork: the caller may run threads, and a fork taken while one holds a lock leaves
that lock held forever in the child.

The process is ``python -m tdtp.importer.one_export``.  Started with ``from_seq=None``
it gets ready (imports, target connection, bookkeeping, broker) while the export
opens its source, and waits for :meth:`LanderProcess.begin` to say where the
export's first part is; then it lands the export's messages until its summary.
For ``tdtp copy`` (Linux) it is killed with its parent (``PR_SET_PDEATHSIG``), and its
worker processes with it, so a killed copy leaves no landing behind holding a
transaction.  Dagster's copy runs (``tdtp_assets/copying.py``) start it too; there a
landing outliving its run worker lands the rest and ends when its export's messages stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

from tdtp.importer import JOB_ENV, LANDER_MODULE, LANDER_READY, ExportLanding


def _death_signal() -> Any:
    """A function for the child (between fork and exec) that has it killed with its parent, or None.

    Looked up here, in the parent: the child then only calls into libc (no import, no
    lookup), as little as may run between fork and exec.  Linux only (``PR_SET_PDEATHSIG``).
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class LanderProcess:
    """Starts, feeds and collects one lander process (see the module doc).

    ``job`` is what ``tdtp.importer.one_export`` reads: ``target_url``, ``broker_url``,
    ``table``, ``mode``, ``workers``, ``export_id`` (and optionally ``require_hashes``).
    ``stderr`` is where the process's own messages go (default: a temporary file whose
    tail is quoted when the process ends without a result).  ``die_with_parent``: only
    for a caller without threads (``tdtp copy``): the death signal is set between fork
    and exec, where a lock another thread held at the fork would stay held.
    """

    def __init__(
        self, job: dict[str, Any], *, stderr: IO[Any] | None = None, die_with_parent: bool = False
    ) -> None:
        self.job = dict(job)
        self._preexec = _death_signal() if die_with_parent else None
        self._stderr_given = stderr
        self._stderr: IO[Any] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._head = b""  # stdout read before finish() (the ready line, or the start of a result)
        self.error: str | None = None
        #: It answered something other than ready (its result: it failed before reading).
        self.failed_early = False

    def start(self, from_seq: int | None = None) -> None:
        """Start the process; with ``from_seq=None`` it waits for :meth:`begin`."""
        self._stderr = self._stderr_given or tempfile.TemporaryFile()  # noqa: SIM115 - closed in _done()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", LANDER_MODULE],
                env={**os.environ, JOB_ENV: json.dumps({**self.job, "from_seq": from_seq})},
                stdin=subprocess.PIPE if from_seq is None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                preexec_fn=self._preexec,  # noqa: PLW1509 - only for callers without threads (see the class doc)
            )
        except OSError as exc:
            self.error = f"the landing process could not start: {exc}"
            self._done()

    def begin(self, from_seq: int, *, wait: float = 0.0) -> bool:
        """Tell a waiting process where the export starts; wait up to ``wait`` s until it reads.

        True once it said it is ready; False when it did not within ``wait`` or ended
        (:meth:`finish` then reports why).  Waiting lets the export publish its first
        part to a reader already there: the import starts with the first part.
        """
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        with contextlib.suppress(OSError):  # it died: finish() reports why
            proc.stdin.write(b"%d\n" % from_seq)
            proc.stdin.close()
        proc.stdin = None  # closed: communicate() must not flush it
        return self._wait_ready(wait) if wait > 0 else False

    def _wait_ready(self, wait: float) -> bool:
        """Read stdout up to the ready line, byte by byte (raw: nothing stays in a buffer
        that communicate() would not see); whatever else comes is kept for finish()."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                break
            byte = os.read(fd, 1)
            if not byte:
                self.failed_early = True
                return False
            self._head += byte
            if byte == b"\n":
                if self._head.strip() == LANDER_READY.encode():
                    self._head = b""
                    return True
                self.failed_early = True
                return False
        return False

    def finish(self, timeout: float | None = None) -> ExportLanding:
        """Wait for the landing (to the export's summary) and return what it did.

        A landing that does not end within ``timeout`` seconds is stopped and reported
        as an error; whatever interrupts the wait stops the landing too.
        """
        proc = self._proc
        if proc is None:
            return ExportLanding(error=self.error or "no landing process")
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.abandon()
            return ExportLanding(error=f"the landing did not reach the export's summary within {timeout:g} s")
        except BaseException:
            self.abandon()
            raise
        result = last_json_line(self._head + out)
        if result is None:
            result = {"error": f"the landing process ended without a result (exit code {proc.returncode})"}
            tail = self._stderr_tail()
            if tail:
                result["error"] += f": {tail}"
        self._done()
        return ExportLanding.from_dict(result)

    def abandon(self) -> None:
        """Stop the landing (the export failed): what landed stays in the ledger, the rest in the broker."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
                proc.stdin = None
            proc.terminate()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        self._done()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _stderr_tail(self) -> str:
        if self._stderr is None or self._stderr_given is not None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-800:]

    def _done(self) -> None:
        self._proc = None
        if self._stderr is not None and self._stderr_given is None:
            self._stderr.close()
        self._stderr = None


def last_json_line(out: bytes) -> dict[str, Any] | None:
    """A lander's result: the last line of its stdout that is a JSON object."""
    for line in reversed(out.decode(errors="replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None
