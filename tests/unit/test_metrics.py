"""The bootstrap CIs (pdr.evaluation.metrics) on numpy are those of the plain-Python definition, bit
for bit, for any seed: the reference below is the definition they replaced."""

from __future__ import annotations

import random

import pytest

from pdr.evaluation.metrics import bootstrap_ci, paired_bootstrap, summarize


def _reference_ci(values, n_boot, level, seed):
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    return means[int((1 - level) / 2 * (n_boot - 1))], means[int((1 + level) / 2 * (n_boot - 1))]


def _reference_p(diffs, n_boot, seed):
    rng = random.Random(seed + 1)
    n = len(diffs)
    return sum(1 for _ in range(n_boot) if sum(diffs[rng.randrange(n)] for _ in range(n)) <= 0) / n_boot


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 + 3, 2**70 + 9, -5])
@pytest.mark.parametrize("n", [2, 3, 12, 30, 129])
def test_bootstraps_equal_the_plain_python_definition(seed, n):
    rng = random.Random(n * 1000 + abs(seed) % 997)
    values = [rng.choice([0.0, 1 / 3, 0.5, 2 / 3, 1.0, 0.1 * rng.randrange(11)]) for _ in range(n)]
    other = [rng.choice([0.0, 0.25, 1 / 3, 1.0]) for _ in range(n)]
    a = {str(i): v for i, v in enumerate(values)}
    b = {str(i): v for i, v in enumerate(other)}
    diffs = [a[k] - b[k] for k in sorted(a)]  # the problems in paired_bootstrap's order
    for n_boot, level in ((2000, 0.95), (137, 0.9)):
        assert bootstrap_ci(values, n_boot, level, seed) == _reference_ci(values, n_boot, level, seed)
        result = paired_bootstrap(a, b, n_boot, level, seed)
        assert (result["ci_low"], result["ci_high"]) == _reference_ci(diffs, n_boot, level, seed)
        assert result["p_a_le_b"] == _reference_p(diffs, n_boot, seed)
        assert result["diff"] == pytest.approx(sum(diffs) / n)


def test_degenerate_inputs():
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    lo, hi = bootstrap_ci([])
    assert lo != lo and hi != hi  # nan
    assert summarize([]) == {}


def test_the_quickstart_interval_is_unchanged():
    """12 problems x 4 samples, 44 correct (the quickstart): [0.854, 0.979] as before numpy."""
    per_problem = [1.0] * 9 + [0.75, 0.5, 0.75]
    lo, hi = bootstrap_ci(per_problem, 2000, 0.95, 0)
    assert (lo, hi) == _reference_ci(per_problem, 2000, 0.95, 0)
