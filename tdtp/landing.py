"""A lander process: one export landed from a broker into a target by a process of its own.

Why a process, not a thread: the export's row encoding and the importer's receive
loop and publisher would take turns on one GIL (docs/importer.md, the copy runs;
measured 37 s against 20 s for the 1M-row demo).  Why a fresh interpreter, not a
fork, by default: the caller may run threads (Dagster's run worker does), and a fork
taken while one holds a lock leaves that lock held forever in the child.  ``tdtp copy``
runs no thread and opens no connection before its lander starts, so it forks
(``fork=True``): the child has the modules the parent imported, and is ready
~0.3 s sooner for ~0.35 CPU-s less than an interpreter that imports them again.

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
from collections.abc import Callable
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
    and exec, where a lock another thread held at the fork would stay held.  ``fork``:
    the process is a fork of this one, running the lander's ``main`` (see the module
    doc); only for a caller with no thread and no open connection.
    """

    def __init__(
        self,
        job: dict[str, Any],
        *,
        stderr: IO[Any] | None = None,
        die_with_parent: bool = False,
        fork: bool = False,
    ) -> None:
        self.job = dict(job)
        self._preexec = _death_signal() if die_with_parent else None
        self._fork = fork
        self._stderr_given = stderr
        self._stderr: IO[Any] | None = None
        self._proc: subprocess.Popen[bytes] | ForkedLander | None = None
        self._head = b""  # stdout read before finish() (the ready line, or the start of a result)
        self.error: str | None = None
        #: It answered something other than ready (its result: it failed before reading).
        self.failed_early = False
        self._ready = False

    def start(self, from_seq: int | None = None) -> None:
        """Start the process; with ``from_seq=None`` it waits for :meth:`begin`."""
        self._stderr = self._stderr_given or tempfile.TemporaryFile()  # noqa: SIM115 - closed in _done()
        job_text = json.dumps({**self.job, "from_seq": from_seq})
        try:
            if self._fork:
                self._proc = ForkedLander(job_text, self._stderr, self._preexec)
                return
            self._proc = subprocess.Popen(
                [sys.executable, "-m", LANDER_MODULE],
                env={**os.environ, JOB_ENV: job_text},
                stdin=subprocess.PIPE if from_seq is None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                preexec_fn=self._preexec,  # noqa: PLW1509 - only for callers without threads (see the class doc)
            )
        except OSError as exc:
            self.error = f"the landing process could not start: {exc}"
            self._done()

    def begin(self, from_seq: int) -> None:
        """Tell a waiting process where the export starts; :meth:`wait_ready` waits until it reads.

        Waiting lets the export publish its first part to a reader already there: the
        import starts with the first part.  A process that died is reported by :meth:`finish`.
        """
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        with contextlib.suppress(OSError):  # it died: finish() reports why
            proc.stdin.write(b"%d\n" % from_seq)
            proc.stdin.close()
        proc.stdin = None  # closed: communicate() must not flush it

    def wait_ready(self, wait: float) -> bool:
        """Wait up to ``wait`` s for the process to say it reads (after :meth:`begin`).

        Reads stdout up to the ready line, byte by byte (raw: nothing stays in a buffer
        that communicate() would not see); whatever else comes is kept for finish().
        True once it said so, also on a later call; False when it did not in time or
        ended (``failed_early``).
        """
        if self._ready:
            return True
        if self.failed_early:
            return False
        proc = self._proc
        if proc is None or proc.stdout is None:
            return False
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
                    self._ready = True
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


def _name_process(name: bytes) -> None:
    """Set the process name ``ps -o comm``, ``top`` and psutil's ``name()`` show (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # 15 = PR_SET_NAME


class ForkedLander:
    """A lander forked from this process: what :class:`LanderProcess` uses of a ``Popen``.

    The child points its standard streams at pipes (and ``stderr``), puts the job in
    its environment, runs ``tdtp.importer.one_export.main`` and leaves with
    ``os._exit``: none of the parent's exit handlers or buffers run twice.
    """

    def __init__(self, job_text: str, stderr: IO[Any], preexec: Callable[[], Any] | None) -> None:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # nothing of the parent's is written again by the child
        pid = os.fork()
        if pid == 0:  # the lander
            code = 1
            try:
                os.dup2(in_r, 0)
                os.dup2(out_w, 1)
                os.dup2(stderr.fileno(), 2)
                for fd in (in_r, in_w, out_r, out_w):
                    os.close(fd)
                if preexec is not None:
                    preexec()
                _name_process(b"tdtp-lander")  # what ps/top show for it (its cmdline is the copy's)
                sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - the child's, until _exit
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                os.environ[JOB_ENV] = job_text
                from tdtp.importer.one_export import main

                code = main()
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001 - reported on stderr, the parent quotes it
                with contextlib.suppress(BaseException):
                    import traceback

                    traceback.print_exc()
                    sys.stderr.flush()
            finally:
                os._exit(code)
        os.close(in_r)
        os.close(out_w)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: IO[bytes] | None = os.fdopen(in_w, "wb", buffering=0)
        self.stdout: IO[bytes] = os.fdopen(out_r, "rb", buffering=0)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[bytes, None]:
        """Its stdout to the end, then its exit; ``subprocess.TimeoutExpired`` past ``timeout``."""
        if self.stdin is not None:
            with contextlib.suppress(OSError):
                self.stdin.close()
            self.stdin = None
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.stdout.fileno()
        out: list[bytes] = []
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise subprocess.TimeoutExpired(LANDER_MODULE, timeout or 0.0)
            if not select.select([fd], [], [], remaining)[0]:
                continue  # the deadline is checked above
            data = os.read(fd, 65536)
            if not data:
                break
            out.append(data)
        self.stdout.close()
        self.wait()
        return b"".join(out), None

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


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
