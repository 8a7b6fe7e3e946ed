"""Child processes of ``bench/peers.py``: running, stopping, their environment and the one line
of output that says why one failed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from peers_common import ROOT

ERROR_WORDS = re.compile(r"error|exception|failed|fatal|missing|denied|refused|not found|timed out", re.I)


def one_line(text: str | bytes | None, limit: int = 300) -> str:
    """The line of a tool's output that names the failure: the last one that sounds like an error."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    telling = [
        ln for ln in lines if ERROR_WORDS.search(ln) and not ln.upper().startswith(("WARNING", "WARN "))
    ]
    line = telling[-1] if telling else (lines[-1] if lines else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_proc(
    argv: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    """Run a process to its end (in ``cwd``, default the repository); a failure raises with
    the last line of its output."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or ROOT)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{Path(argv[0]).name} {argv[1] if len(argv) > 1 else ''}: timed out") from err
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(argv[0]).name} exit {done.returncode}: {one_line(done.stderr) or one_line(done.stdout)}"
        )
    return done.stdout


def stop(proc: subprocess.Popen[Any] | None) -> None:
    """End a child this benchmark started (by its own handle), if it is still running."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def tdtp_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tdtp.cli", *args]
