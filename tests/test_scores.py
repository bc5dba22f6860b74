import numpy as np
import pytest

from xtra.scores import REFERENCE_SCORES, bootstrap_ci, human_normalized, iqm, ratio_ci


def test_reference_table_is_pinned():
    assert REFERENCE_SCORES["Alien"] == (227.8, 7127.7)
    assert REFERENCE_SCORES["Breakout"] == (1.7, 30.5)
    assert REFERENCE_SCORES["Pong"] == (-20.7, 14.6)
    assert REFERENCE_SCORES["PrivateEye"] == (24.9, 69571.3)
    assert len(REFERENCE_SCORES) == 32


def test_human_normalized():
    assert human_normalized("atari/Breakout", 30.5) == pytest.approx(1.0)
    assert human_normalized("atari/Breakout", 1.7) == pytest.approx(0.0)
    assert human_normalized("atari/Carnival", 100.0) is None
    assert human_normalized("minatar/breakout", 5.0) is None


def test_iqm_and_bootstrap():
    scores = np.array([[0.0, 1.0, 2.0, 100.0], [1.0, 2.0, 3.0, -50.0]])
    assert iqm(scores) == pytest.approx(np.mean([1.0, 1.0, 2.0, 2.0]))  # sorted: -50 0 | 1 1 2 2 | 3 100
    lo, hi = bootstrap_ci(scores, reps=200)
    assert lo <= iqm(scores) <= hi


def test_ratio_ci_covers_the_true_ratio_about_as_often_as_it_says():
    """Two evaluations of 32 episodes whose true means are 7 and 10 (the 70 % bar exactly): the 95 % interval of
    the ratio of their means should contain 0.7 in about 95 % of repeated experiments, and be wide."""
    rng = np.random.default_rng(1)
    hits, widths = 0, []
    trials = 150
    for t in range(trials):
        num = rng.exponential(7.0, size=32)  # skewed, non-negative, like game returns
        den = rng.exponential(10.0, size=32)
        point, lo, hi = ratio_ci(num, den, reps=1_000, seed=t)
        assert lo <= point <= hi
        hits += lo <= 0.7 <= hi
        widths.append(hi - lo)
    assert 0.88 <= hits / trials <= 0.995
    assert np.median(widths) > 0.5  # 32 episodes cannot tell 70 % from 100 % of a noisy return


def test_ratio_ci_narrows_with_episodes_and_handles_a_zero_denominator():
    rng = np.random.default_rng(2)
    point, lo, hi = ratio_ci(rng.normal(7.0, 1.0, 4_000), rng.normal(10.0, 1.0, 4_000), reps=500)
    assert point == pytest.approx(0.7, abs=0.01) and hi - lo < 0.02
    point, lo, hi = ratio_ci(np.array([1.0, 2.0]), np.zeros(3), reps=100)
    assert point == np.inf and lo == np.inf
    with pytest.raises(ValueError, match="at least one episode"):
        ratio_ci(np.array([]), np.ones(3))
