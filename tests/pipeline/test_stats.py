"""The paired bootstrap (mllm3d.pipeline.stats) against cases computed by hand."""

from __future__ import annotations

import pytest

from mllm3d.pipeline.stats import mean_std, paired_bootstrap
from mllm3d.shared.errors import BadInputError


def test_two_values_by_hand():
    # d = [0, 1]: a resample's mean is 0 (p 1/4), 0.5 (p 1/2) or 1 (p 1/4): the 95 % interval is [0, 1]
    ci = paired_bootstrap([1.0, 2.0], [1.0, 1.0], n_boot=20000)
    assert ci.mean == 0.5 and ci.n == 2
    assert (ci.low, ci.high) == (0.0, 1.0)
    assert not ci.excludes_zero()
    # the 40 % interval: quantiles 0.3 and 0.7 of {0: 1/4, 0.5: 1/2, 1: 1/4} both fall in the middle mass
    mid = paired_bootstrap([1.0, 2.0], [1.0, 1.0], n_boot=20000, level=0.4)
    assert (mid.low, mid.high) == (0.5, 0.5)


def test_constant_difference_is_exact_and_stratification_removes_the_seed_offset():
    ci = paired_bootstrap([0.3, 0.5, 0.9], [0.1, 0.3, 0.7])
    assert ci.mean == pytest.approx(0.2) and ci.low == pytest.approx(0.2) and ci.high == pytest.approx(0.2)
    assert ci.excludes_zero() and ci.text() == "+20.00 [+20.00, +20.00]"
    # seed 0: d = 0, 0; seed 1: d = 1, 1. Within-seed resampling always gives mean 0.5; pooled resampling
    # does not (a resample of four draws from {0, 0, 1, 1} has mean 0 with probability 1/16)
    a, b, seeds = [0.0, 0.0, 1.0, 1.0], [0.0] * 4, [0, 0, 1, 1]
    strat = paired_bootstrap(a, b, groups=seeds)
    assert (strat.low, strat.high) == (0.5, 0.5)
    pooled = paired_bootstrap(a, b)
    assert pooled.low < 0.5 < pooled.high


def test_bad_inputs_and_mean_std():
    with pytest.raises(BadInputError, match="paired"):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(BadInputError, match="no paired"):
        paired_bootstrap([], [])
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))
    assert mean_std([4.0]) == (4.0, 0.0)
