import numpy as np
import pytest

from xtra.scores import REFERENCE_SCORES, bootstrap_ci, human_normalized, iqm


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
