"""Reference scores and normalisation for Atari, and robust aggregates over runs.

Random and human scores are those of the Atari-100k literature (the table used by DER, SPR and EfficientZero,
itself from the DQN papers); the games outside the 26-game Atari-100k set come from the same Atari-57 table.
Games without a reference (e.g. Carnival, Pooyan) are reported as raw scores only.
"""

from __future__ import annotations

import numpy as np

# game: (random, human)
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3),
    "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5),
    "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5),
    "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4),
    "DemonAttack": (152.1, 1971.0),
    "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7),
    "Gopher": (257.6, 2412.5),
    "Hero": (1027.0, 30826.4),
    "Jamesbond": (29.0, 302.8),
    "Kangaroo": (52.0, 3035.0),
    "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3),
    "MsPacman": (307.3, 6951.6),
    "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0),
    "RoadRunner": (11.5, 7845.0),
    "Seaquest": (68.4, 42054.7),
    "UpNDown": (533.4, 11693.2),
    # Atari-57 games used by XTRA's pretraining sets
    "Centipede": (2090.9, 12017.0),
    "Phoenix": (761.4, 7242.6),
    "Riverraid": (1338.5, 17118.0),
    "VideoPinball": (16256.9, 17667.9),
    "WizardOfWor": (563.5, 4756.5),
    "YarsRevenge": (3092.9, 54576.9),
}


def human_normalized(task_id: str, score: float) -> float | None:
    """(score − random) / (human − random) for ``atari/<Game>`` with a reference, else None."""
    family, _, game = task_id.partition("/")
    if family != "atari" or game not in REFERENCE_SCORES:
        return None
    random, human = REFERENCE_SCORES[game]
    return (score - random) / (human - random)


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean over all runs × tasks (the middle 50 %, trimmed as scipy's trim_mean(·, 0.25))."""
    flat = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    cut = int(len(flat) * 0.25)
    return float(flat[cut : len(flat) - cut].mean())


def bootstrap_ci(
    scores: np.ndarray, statistic=iqm, reps: int = 2_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Stratified percentile bootstrap over runs: ``scores`` is ``[runs, tasks]``; runs are resampled per task."""
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    runs, tasks = scores.shape
    stats = np.empty(reps)
    for i in range(reps):
        idx = rng.integers(0, runs, size=(runs, tasks))
        stats[i] = statistic(np.take_along_axis(scores, idx, axis=0))
    lo, hi = np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def hierarchical_bootstrap_ci(
    groups: list[np.ndarray], reps: int = 5_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of the mean of per-seed means, resampling seeds and then episodes within each seed.

    ``groups`` holds one array of evaluation-episode returns per seed. Resampling only the seeds ignores how
    noisy each seed's own score is; with 3 seeds it would also allow just 10 distinct resamples.
    """
    stats = hierarchical_resamples(groups, reps, np.random.default_rng(seed))
    lo, hi = np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def hierarchical_resamples(groups: list[np.ndarray], reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` bootstrap means of per-seed means: seeds resampled, then episodes within each chosen seed."""
    arrays = [np.asarray(g, dtype=np.float64) for g in groups]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("a hierarchical bootstrap needs at least one seed, each with at least one episode")
    stats = np.empty(reps)
    for i in range(reps):
        chosen = rng.integers(0, len(arrays), size=len(arrays))
        stats[i] = np.mean([rng.choice(arrays[j], size=len(arrays[j])).mean() for j in chosen])
    return stats


def difference_ci(
    groups: list[np.ndarray], baseline: list[np.ndarray], reps: int = 5_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of (mean of per-seed means) − (the baseline's), each side resampled as in
    :func:`hierarchical_bootstrap_ci`, independently: "does the method lead at this point" needs the interval of
    the difference, not two overlapping intervals."""
    rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    stats = hierarchical_resamples(groups, reps, rng_a) - hierarchical_resamples(baseline, reps, rng_b)
    lo, hi = np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def mean(scores: np.ndarray) -> float:
    return float(np.mean(scores))


def median(scores: np.ndarray) -> float:
    """Median over tasks of the per-task mean over runs (``scores`` is ``[runs, tasks]``), as the papers' tables."""
    return float(np.median(np.mean(np.atleast_2d(scores), axis=0)))


def optimality_gap(scores: np.ndarray, threshold: float = 1.0) -> float:
    """How far the runs stay below ``threshold`` on average (scores above it count as the threshold): lower is
    better, and unlike the mean it cannot be carried by one game's huge score."""
    return float(threshold - np.minimum(np.asarray(scores, dtype=np.float64), threshold).mean())


def performance_profile(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of all runs × tasks whose score exceeds each τ (the run-score distribution)."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    return (flat[None, :] > np.asarray(taus, dtype=np.float64)[:, None]).mean(1)


def profile_ci(
    scores: np.ndarray, taus: np.ndarray, reps: int = 2_000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise stratified-bootstrap band of :func:`performance_profile` (runs resampled within each task)."""
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    runs, tasks = scores.shape
    curves = np.empty((reps, len(taus)))
    for i in range(reps):
        idx = rng.integers(0, runs, size=(runs, tasks))
        curves[i] = performance_profile(np.take_along_axis(scores, idx, axis=0), taus)
    lo, hi = np.quantile(curves, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return lo, hi


def ratio_ci(
    numerator: np.ndarray, denominator: np.ndarray, reps: int = 5_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(numerator) / mean(denominator)`` and its percentile bootstrap CI, resampling the episodes of the two
    (independent) evaluations separately.

    The pretraining bars compare one evaluation with another (a teacher with its data's producer); both are means
    of a few dozen episodes, so a ratio near the bar says little unless its interval is shown. A denominator whose
    resampled mean is 0 makes that resample's ratio infinite (returns here are never negative).
    """
    num, den = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    if num.size == 0 or den.size == 0:
        raise ValueError("ratio_ci needs at least one episode on each side")
    rng = np.random.default_rng(seed)
    num_means = rng.choice(num, size=(reps, num.size)).mean(1)
    den_means = rng.choice(den, size=(reps, den.size)).mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(den_means != 0, num_means / den_means, np.inf)
        point = num.mean() / den.mean() if den.mean() != 0 else np.inf
    # no interpolation between order statistics: an infinite ratio must not turn the bound into inf − inf
    lo, hi = np.quantile(ratios, [(1 - confidence) / 2, (1 + confidence) / 2], method="inverted_cdf")
    return float(point), float(lo), float(hi)
