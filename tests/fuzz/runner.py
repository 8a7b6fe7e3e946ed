"""Run fuzz cases against the decoder in worker processes and count the outcomes.

A case is a mutated part (``make_case``: seed and index decide it alone, so any case
can be replayed).  Workers decode it as the importer would (``decode_packet`` with ``lazy_rows`` and
``require_hashes`` for parts written with hashes, then every row's values) and
report one outcome:

- ``typed``      a ``TdtpError`` (the wanted refusal)
- ``identical``  accepted, and the same header, schema, rows as the part mutated
- ``changed``    accepted with other content (fine without hashes; with hashes it
                 is also counted as ``changed_hashed`` when rows or schema differ,
                 which only a forgery through our own encoder may do)
- ``untyped``    any other exception (a bug: ``detail`` has the traceback's end)
- ``hang``       more than the timeout (5 s) of CPU time, or no answer within four
                 times the timeout (a case blocked without using CPU); such a
                 worker is killed and replaced.  CPU time, so that a machine
                 loaded by others does not turn slow cases into hangs
- ``memory``     peak RSS grew by more than the cap during the case, or MemoryError
- ``crash``      the worker died

Memory is the kernel's own figure: before each case a worker resets its peak RSS
(``/proc/self/clear_refs``) and reads its RSS, after it reads the peak (VmHWM).
Workers start with glibc's mmap threshold fixed, so a large buffer freed by one
case is returned to the system rather than kept for the next one to reuse
unseen.
"""

from __future__ import annotations

import os
import random
import resource
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import TextIO

from tdtp.codec import DecodeLimits, decode_packet, decode_values
from tdtp.packet import Packet, TdtpError, line_chunks
from tests.fuzz import mutate_bytes as mb
from tests.fuzz import mutate_xml as mx
from tests.fuzz.bases import Base, build_bases

Family = Callable[[random.Random, Base], bytes]
FAMILIES: dict[str, Family] = {
    "byte_flips": mb.byte_flips,
    "truncation": mb.truncation,
    "header_numbers": mx.header_numbers,
    "records_in_part": mx.records,
    "base64": mb.base64_text,
    "zstd_frames": mb.zstd_frames,
    "bombs": mb.bombs,
    "arity": mx.arity,
    "forged_values": mx.forged_values,
    "schema_attrs": mx.schema_attrs,
    "huge_attributes": mx.huge_attributes,
    "nesting": mx.nesting,
    "entities_dtd": mx.entities,
    "encodings": mb.encodings,
    "boms": mb.boms,
    "nul_bytes": mb.nul_bytes,
    "invalid_utf8": mb.invalid_utf8,
    "structure": mx.structure,
    "hashes": mx.hashes,
    "compact": mx.compact,
    "splice": lambda rng, base: mx.splice(rng, base, rng.choice(build_bases())),
}
# Re-encoded through our own writer: hashes are valid over the changed content by design.
FORGED = frozenset({"arity", "forged_values"})
OUTCOMES = ("typed", "identical", "changed", "untyped", "hang", "memory", "crash")
BAD_OUTCOMES = ("untyped", "hang", "memory", "crash")
DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_CAP_MB = 200.0
LIMITS = DecodeLimits()  # what the importer uses


@dataclass(frozen=True)
class Case:
    index: int
    family: str
    base: int
    data: bytes
    require_hashes: bool


def make_case(seed: int, index: int) -> Case:
    """Case ``index`` of run ``seed``: families in turn, a base and a mutation at random."""
    bases = build_bases()
    family = list(FAMILIES)[index % len(FAMILIES)]
    rng = random.Random(f"{seed}:{index}")
    b = rng.randrange(len(bases))
    data = FAMILIES[family](rng, bases[b])
    # Half the parts written with hashes are read as with --require-hashes: stripping the
    # hashes is then refused, and the other half lets the mutation reach everything else.
    return Case(index, family, b, data, bases[b].hashed and rng.random() < 0.5)


# ---------------------------------------------------------------- worker side


def _status(*keys: str) -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in keys:
                out[name] = int(rest.split()[0]) / 1024  # kB -> MiB
    return out


def _same(a: Packet, b: Packet) -> tuple[bool, bool]:
    """(everything equal, rows and schema equal): what hashes protect is the second."""
    content = a.rows == b.rows and a.schema == b.schema
    return content and a.header == b.header and a.extras == b.extras, content


def decode_case(data: bytes, ref: Packet, require_hashes: bool) -> tuple[str, str, bool]:
    """(outcome, detail, changed under valid hashes) of decoding ``data`` as the importer does."""
    try:
        packet = decode_packet(data, where="case", limits=LIMITS, require_hashes=require_hashes, lazy_rows=True)
        for _start, lines in line_chunks(packet.rows, 10_000):  # every value, never all of them at once
            decode_values(replace(packet, rows=lines))
    except TdtpError as exc:
        return "typed", f"{type(exc).__name__}: {str(exc)[:160]}", False
    except MemoryError:
        return "memory", "MemoryError", False
    except Exception as exc:  # what the harness is here to find
        tb = traceback.extract_tb(exc.__traceback__)[-3:]
        where = " < ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in reversed(tb))
        return "untyped", f"{type(exc).__name__}: {str(exc)[:160]} at {where}", False
    same, content = _same(packet, ref)
    if same:
        return "identical", "", False
    return "changed", "", (not content) and packet.hash_status == "ok"


def _worker(conn: Connection, bodies: list[bytes]) -> None:
    """Decode cases sent over ``conn`` until it closes; answer each with its outcome and cost."""
    refs = [decode_packet(b) for b in bodies]
    vm = _status("VmSize")["VmSize"]
    limit = int((vm + 3072) * 2**20)  # a runaway case gets MemoryError, not the machine's memory
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    clear = open("/proc/self/clear_refs", "w")  # noqa: SIM115 - kept open for the worker's life
    try:
        conn.send("ready")  # cases are timed from here, not from the interpreter's start
        _serve(conn, refs, clear)
    except (EOFError, OSError):  # the parent closed the pipe: done (or it gave up on this worker)
        return


def _serve(conn: Connection, refs: list[Packet], clear: TextIO) -> None:
    while True:
        index, base, require, data = conn.recv()
        clear.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        clear.flush()
        rss = _status("VmRSS")["VmRSS"]
        t0 = time.process_time()
        outcome, detail, changed_hashed = decode_case(data, refs[base], require)
        seconds = time.process_time() - t0
        del data
        growth = _status("VmHWM")["VmHWM"] - rss
        conn.send((index, outcome, detail, changed_hashed, growth, seconds))


# ---------------------------------------------------------------- parent side


@dataclass
class Results:
    timeout: float = DEFAULT_TIMEOUT
    mem_cap_mb: float = DEFAULT_MEMORY_CAP_MB
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    peak_mb: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    slowest_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    changed_hashed: int = 0
    bad: list[tuple[int, str, str, str]] = field(default_factory=list)  # index, family, outcome, detail
    cases: int = 0
    seconds: float = 0.0

    def total(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.counts.values())

    def record(
        self, case: Case, outcome: str, detail: str, growth: float = 0.0, seconds: float = 0.0
    ) -> None:
        if outcome not in ("hang", "crash") and seconds > self.timeout:
            outcome, detail = "hang", f"{seconds:.2f} s of CPU ({outcome}: {detail})"
        if outcome not in ("hang", "crash") and growth > self.mem_cap_mb:
            outcome, detail = "memory", f"peak RSS grew {growth:.0f} MB ({outcome}: {detail})"
        self.counts[case.family][outcome] += 1
        self.peak_mb[case.family] = max(self.peak_mb[case.family], growth)
        self.slowest_s[case.family] = max(self.slowest_s[case.family], seconds)
        self.cases += 1
        if outcome in BAD_OUTCOMES:
            self.bad.append((case.index, case.family, outcome, detail))


class _Worker:
    def __init__(self, bodies: list[bytes]) -> None:
        ctx = get_context("spawn")
        self.conn, child = ctx.Pipe()
        saved = {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
        os.environ["MALLOC_TRIM_THRESHOLD_"] = str(128 * 1024)
        try:
            self.proc = ctx.Process(target=_worker, args=(child, bodies), daemon=True)
            self.proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        if not self.conn.poll(120) or self.conn.recv() != "ready":
            raise RuntimeError("a fuzz worker did not start")
        self.case: Case | None = None
        self.started = 0.0

    def send(self, case: Case) -> None:
        self.case, self.started = case, time.monotonic()
        self.conn.send((case.index, case.base, case.require_hashes, case.data))

    def stop(self) -> None:
        """End this worker (ours: started above), politely, then for sure."""
        self.conn.close()
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def run_cases(
    indices: Iterable[int],
    seed: int,
    *,
    workers: int = 2,
    timeout: float = DEFAULT_TIMEOUT,
    mem_cap_mb: float = DEFAULT_MEMORY_CAP_MB,
) -> Results:
    """Run the cases ``indices`` of run ``seed`` on ``workers`` processes."""
    bodies = [b.body for b in build_bases()]
    results = Results(timeout, mem_cap_mb)
    todo = iter(indices)
    pool = [_Worker(bodies) for _ in range(workers)]
    t0 = time.monotonic()
    try:
        while True:
            for w in pool:
                if w.case is None and (idx := next(todo, None)) is not None:
                    w.send(make_case(seed, idx))
            busy = [w for w in pool if w.case is not None]
            if not busy:
                break
            soonest = min(w.started for w in busy) + 4 * timeout
            ready = wait([w.conn for w in busy], timeout=max(0.0, soonest - time.monotonic()))
            now = time.monotonic()
            for i, w in enumerate(pool):
                if w.case is None:
                    continue
                case = w.case
                if w.conn in ready:
                    try:
                        _, outcome, detail, changed_hashed, growth, seconds = w.conn.recv()
                    except (EOFError, OSError):
                        results.record(case, "crash", f"exit code {w.proc.exitcode}")
                        w.stop()
                        pool[i] = _Worker(bodies)
                        continue
                    results.changed_hashed += changed_hashed and case.family not in FORGED
                    results.record(case, outcome, detail, growth, seconds)
                    w.case = None
                elif now - w.started > 4 * timeout:
                    results.record(case, "hang", f"no answer in {4 * timeout:g} s")
                    w.stop()
                    pool[i] = _Worker(bodies)
    finally:
        for w in pool:
            w.stop()
    results.seconds = time.monotonic() - t0
    return results


def table(results: Results) -> str:
    """Family x outcome counts as a Markdown table, plus the worst memory and time per family."""
    head = ["family", *OUTCOMES, "peak MB", "slowest CPU s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fam in FAMILIES:
        c = results.counts.get(fam)
        if not c:
            continue
        cells = [
            fam,
            *(str(c[o]) for o in OUTCOMES),
            f"{results.peak_mb[fam]:.0f}",
            f"{results.slowest_s[fam]:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    totals = ["**all**", *(f"**{results.total(o)}**" for o in OUTCOMES), "", ""]
    lines.append("| " + " | ".join(totals) + " |")
    return "\n".join(lines)
