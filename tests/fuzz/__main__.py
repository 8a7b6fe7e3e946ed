"""``python -m tests.fuzz --cases 10000 --seed N``: the full fuzz run, printed as a table.

``--case I`` replays one case (``--dump FILE`` writes its bytes); the exit status is
1 when any case was untyped, hung, crashed, went over the memory cap, or was
accepted changed under valid hashes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.fuzz.bases import build_bases
from tests.fuzz.runner import (
    DEFAULT_MEMORY_CAP_MB,
    DEFAULT_TIMEOUT,
    FAMILIES,
    decode_case,
    make_case,
    run_cases,
    table,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds before a case is a hang")
    p.add_argument("--mem-cap-mb", type=float, default=DEFAULT_MEMORY_CAP_MB, help="peak RSS growth per case")
    p.add_argument("--case", type=int, help="replay this one case in this process")
    p.add_argument("--dump", type=Path, help="with --case: write the case's bytes here")
    args = p.parse_args(argv)

    if args.case is not None:
        case = make_case(args.seed, args.case)
        if args.dump:
            args.dump.write_bytes(case.data)
        ref = build_bases()[case.base].packet
        outcome, detail, _ = decode_case(case.data, ref, case.require_hashes)
        print(f"case {case.index}: family {case.family}, base {build_bases()[case.base].name}, "
              f"{len(case.data)} bytes: {outcome} {detail}")  # fmt: skip
        return 0 if outcome in ("typed", "identical", "changed") else 1

    r = run_cases(
        range(args.cases), args.seed, workers=args.workers, timeout=args.timeout, mem_cap_mb=args.mem_cap_mb
    )
    print(f"python -m tests.fuzz --cases {args.cases} --seed {args.seed}: {r.cases} cases, "
          f"{len(FAMILIES)} families, {r.seconds:.0f} s on {args.workers} workers, "
          f"timeout {args.timeout:g} s, memory cap {args.mem_cap_mb:g} MB of peak RSS growth per case\n")  # fmt: skip
    print(table(r))
    print(
        f"\naccepted with changed rows or schema under valid hashes (byte-level mutations): {r.changed_hashed}"
    )
    for index, family, outcome, detail in r.bad[:40]:
        print(f"  case {index} ({family}): {outcome}: {detail}")
    return 1 if r.bad or r.changed_hashed else 0


if __name__ == "__main__":
    sys.exit(main())
