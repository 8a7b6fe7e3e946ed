"""The fuzz harness's fixed-seed slice: 1,000 mutated parts, none of them may raise an
untyped exception, hang, crash, go over the memory cap, or pass a byte-level change
under valid hashes (the full run: ``python -m tests.fuzz --cases 10000``)."""

from __future__ import annotations

from tests.fuzz.runner import BAD_OUTCOMES, FAMILIES, run_cases, table

SEED = 12
CASES = 1000


def test_a_fixed_slice_of_1000_cases_is_all_typed_or_accepted() -> None:
    results = run_cases(range(CASES), SEED, workers=2)
    report = table(results) + "".join(
        f"\ncase {i} ({fam}): {out}: {detail}" for i, fam, out, detail in results.bad
    )
    assert results.cases == CASES
    assert len(results.counts) == len(FAMILIES) >= 15, report
    for outcome in BAD_OUTCOMES:
        assert results.total(outcome) == 0, report
    assert results.changed_hashed == 0, report
    assert results.total("typed") > CASES // 2, report  # the mutations do reach the checks
