import json
from pathlib import Path

import numpy as np
import pytest

from xtra.report import build_report, load_runs, write_report
from xtra.scores import bootstrap_ci, iqm, median, optimality_gap, performance_profile

# Atari games with reference scores (random, human): Alien (227.8, 7127.7), Pong (-20.7, 14.6)
SCORES = {  # method -> game -> final returns of seeds 0, 1, 2
    "efficientzero": {"atari/Alien": [600.0, 700.0, 800.0], "atari/Pong": [10.0, 12.0, 14.0]},
    "xtra": {"atari/Alien": [900.0, 1000.0, 1100.0], "atari/Pong": [9.0, 12.0, 6.0]},
}
COLLAPSED = {("xtra", "atari/Pong", 2)}


def write_run(
    root: Path, method: str, game: str, seed: int, score: float, collapsed: bool, starts: bool = True
) -> None:
    counts = [100, 0, 0] if collapsed else [40, 30, 30]
    final = {"global_step": 100, "env_steps": 400, "games": {game: {
        "mean": score, "returns": [score] * 4, "action_counts": counts,
        "top_action_share": max(counts) / sum(counts), "collapsed": collapsed}}}  # fmt: skip
    curve = [
        {"global_step": 0, "env_steps": 0, "returns": {game: score / 4}, "collapsed": {game: True}},
        {"global_step": 100, "env_steps": 400, "returns": {game: score}, "collapsed": {game: collapsed}},
    ]
    record = {"seed": seed, "target": game, "final": final, "curve": curve, "commit": "abc", "config_sha256": "h",
              "wall_s": 1.0, "starts_as_pretrained": starts}  # fmt: skip
    path = root / game.split("/")[1] / method / f"seed{seed}" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def runs_dir(tmp_path):
    for method, games in SCORES.items():
        for game, scores in games.items():
            for seed, score in enumerate(scores):
                write_run(tmp_path / "runs", method, game, seed, score, (method, game, seed) in COLLAPSED)
    return tmp_path / "runs"


def hns(game: str, score: float) -> float:
    random, human = {"atari/Alien": (227.8, 7127.7), "atari/Pong": (-20.7, 14.6)}[game]
    return (score - random) / (human - random)


def test_report_tables_equal_the_figures_computed_by_hand(runs_dir):
    runs = load_runs([runs_dir], zero_shot_of="xtra")
    report = build_report(runs, "efficientzero", reps=200)
    assert report["methods"] == ["efficientzero", "xtra", "zero-shot"]
    alien = next(r for r in report["per_game"] if r["game"] == "atari/Alien")
    assert alien["xtra"]["mean"] == 1000.0 and alien["efficientzero"]["mean"] == 700.0
    assert alien["zero-shot"]["mean"] == 250.0 and alien["zero-shot"]["collapsed"] == 3
    # improvement: the per-game ratio of means to the baseline's, then mean / median over games (paper Table 1)
    ratios = [1000 / 700, 9 / 12]
    assert report["improvement"]["xtra"]["mean"] == pytest.approx(np.mean(ratios))
    assert report["improvement"]["xtra"]["median"] == pytest.approx(np.median(ratios))
    assert report["improvement"]["efficientzero"]["mean"] == pytest.approx(1.0)
    # human-normalised mean / median of the per-game means (paper Table 2)
    h = [hns("atari/Alien", 1000.0), hns("atari/Pong", 9.0)]
    assert report["hns"]["xtra"]["mean"] == pytest.approx(np.mean(h))
    # aggregates over runs × games of human-normalised scores
    flat = np.sort([hns(g, s) for g, scores in SCORES["xtra"].items() for s in scores])
    assert report["normalisation"] == "human-normalised"
    assert report["aggregates"]["xtra"]["IQM"][0] == pytest.approx(flat[1:5].mean())  # 6 runs: drop 1 each end
    assert report["aggregates"]["xtra"]["mean"][0] == pytest.approx(flat.mean())
    assert report["aggregates"]["xtra"]["optimality gap"][0] == pytest.approx(1 - np.minimum(flat, 1).mean())
    assert report["aggregates"]["xtra"]["collapsed"] == 1
    lo, point, hi = (report["aggregates"]["xtra"]["IQM"][i] for i in (1, 0, 2))
    assert lo <= point <= hi


def test_written_report_marks_collapsed_runs_in_every_table_and_refuses_to_overwrite(runs_dir, tmp_path):
    out = tmp_path / "report"
    write_report([str(runs_dir)], out, None, "xtra-report runs --out report", reps=200)
    text = (out / "report.md").read_text()
    pong = next(line for line in text.splitlines() if line.startswith("| Pong |"))
    assert "**collapsed 1/3**" in pong.split("|")[3]  # xtra's column
    xtra_row = next(line for line in text.splitlines() if line.startswith("| xtra |"))
    assert xtra_row.split("|")[3].strip() == "**1**"
    assert "mean improvement (÷ efficientzero)" in text and "normed median" in text
    rows = (out / "runs.csv").read_text().splitlines()
    assert len(rows) == 1 + 12 + 6  # header, 12 runs, 6 zero-shot evaluations
    assert (out / "performance_profile.png").stat().st_size > 0 and (out / "learning_curves.png").stat().st_size > 0
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_report([str(runs_dir)], out, None, "again", reps=200)


def test_games_without_a_reference_are_normalised_by_the_baseline_and_a_zero_baseline_is_refused(tmp_path):
    for seed, (a, b) in enumerate([(2.0, 3.0), (4.0, 5.0)]):
        write_run(tmp_path, "efficientzero-l", "minatar/breakout", seed, a, False)
        write_run(tmp_path, "xtra", "minatar/breakout", seed, b, False)
    report = build_report(load_runs([tmp_path]), "efficientzero-l", reps=200)
    assert report["normalisation"] == "÷ baseline"
    assert report["aggregates"]["xtra"]["mean"][0] == pytest.approx(np.mean([3 / 3, 5 / 3]))
    # a fit stopped before its last step leaves a record marked incomplete: not a run of the report
    write_run(tmp_path, "stopped", "minatar/breakout", 0, 9.0, False)
    stopped = tmp_path / "breakout" / "stopped" / "seed0" / "results.json"
    stopped.write_text(json.dumps({**json.loads(stopped.read_text()), "complete": False}))
    assert "stopped" not in {r.method for r in load_runs([tmp_path])}
    write_run(tmp_path, "zero", "minatar/breakout", 0, 0.0, True)
    write_run(tmp_path, "zero", "minatar/breakout", 1, 0.0, True)
    with pytest.raises(ValueError, match="≤ 0"):
        build_report(load_runs([tmp_path]), "zero", reps=200)


def test_stratified_bootstrap_ci_covers_the_true_value_of_a_known_distribution():
    """95 % intervals of the mean and IQM of N(1, 0.5²) scores cover 1 in about 95 % of 200 experiments."""
    rng = np.random.default_rng(0)
    cover = {"mean": 0, "iqm": 0}
    for i in range(200):
        scores = rng.normal(1.0, 0.5, size=(10, 5))
        for name, f in (("mean", np.mean), ("iqm", iqm)):
            lo, hi = bootstrap_ci(scores, f, reps=300, seed=i)
            cover[name] += lo <= 1.0 <= hi
    assert 0.88 <= cover["mean"] / 200 <= 0.99 and 0.88 <= cover["iqm"] / 200 <= 0.99, cover


def test_scores_agree_with_rliable():
    """Point estimates equal rliable's aggregates exactly; the stratified bootstrap intervals agree within the
    Monte-Carlo error of 2 000 resamples."""
    from rliable import library as rly
    from rliable import metrics

    scores = np.random.default_rng(1).gamma(2.0, 0.6, size=(5, 8))
    ours = [iqm(scores), float(np.mean(scores)), median(scores), optimality_gap(scores)]
    theirs = [metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores), metrics.aggregate_median(scores),
              metrics.aggregate_optimality_gap(scores)]  # fmt: skip
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    point, ci = rly.get_interval_estimates({"m": scores}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=2000)
    lo, hi = bootstrap_ci(scores, iqm, reps=2000)
    assert abs(lo - ci["m"][0, 0]) < 0.05 and abs(hi - ci["m"][1, 0]) < 0.05, ((lo, hi), ci["m"][:, 0])
    taus = np.linspace(0, 3, 13)
    profile = rly.create_performance_profile({"m": scores}, taus, reps=2)[0]["m"]
    np.testing.assert_allclose(performance_profile(scores, taus), profile)


def test_improvement_reproduces_the_papers_table1_shooter_row(tmp_path):
    """The paper's shooter rows (EfficientZero vs XTRA) give its printed mean / median improvement, 1.36 / 1.28."""
    paper = {"Assault": (1027.1, 1294.6), "Carnival": (3022.1, 3860.9), "Centipede": (3322.7, 5681.4),
             "DemonAttack": (11523.0, 14140.9), "Phoenix": (10954.9, 14579.8)}  # fmt: skip
    for game, (ez, xtra) in paper.items():
        write_run(tmp_path, "efficientzero", f"atari/{game}", 0, ez, False)
        write_run(tmp_path, "xtra", f"atari/{game}", 0, xtra, False)
    report = build_report(load_runs([tmp_path]), "efficientzero", reps=50)
    assert round(report["improvement"]["xtra"]["mean"], 2) == 1.36
    assert round(report["improvement"]["xtra"]["median"], 2) == 1.28


def test_no_zero_shot_row_from_a_first_evaluation_after_output_layers_were_reset(tmp_path, capsys):
    """The MinAtar finetunes zero their output layers before the first update: that evaluation is not the student's
    zero-shot score, so it forms no row (the pipeline scores the student itself, xtra-eval --run-dir)."""
    write_run(tmp_path, "xtra", "minatar/breakout", 0, 2.0, False, starts=False)
    assert [r.method for r in load_runs([tmp_path], zero_shot_of="xtra")] == ["xtra"]
    assert "no zero-shot row" in capsys.readouterr().err
    # once the student itself is scored (the pipeline's zero-shot run of that seed) there is nothing to warn about
    write_run(tmp_path, "zero-shot", "minatar/breakout", 0, 0.5, False)
    assert sorted(r.method for r in load_runs([tmp_path], zero_shot_of="xtra")) == ["xtra", "zero-shot"]
    assert "no zero-shot row" not in capsys.readouterr().err


def test_methods_filter_leaves_out_a_pipelines_other_runs_and_names_a_missing_one(runs_dir, tmp_path):
    """xtra-pipeline folders also hold the datasets', teachers' and student's runs: --methods keeps the rows asked."""
    from xtra.report import main

    write_run(runs_dir, "teacher-space_invaders", "atari/Pong", 0, 1.0, False)  # an offline stage's own game
    out = tmp_path / "report"
    assert main([str(runs_dir), "--out", str(out), "--methods", "efficientzero", "xtra", "--reps", "50"]) == 0
    methods = {row.split(",")[0] for row in (out / "runs.csv").read_text().splitlines()[1:]}
    assert methods == {"efficientzero", "xtra"}  # nor the zero-shot twin of xtra
    # the columns follow --methods after the baseline, as the paper orders its rows
    assert main([str(runs_dir), "--out", str(out), "--overwrite", "--methods", "zero-shot", "xtra", "efficientzero",
                 "--reps", "50"]) == 0  # fmt: skip
    assert "| game | efficientzero | zero-shot | xtra |" in (out / "report.md").read_text()
    with pytest.raises(SystemExit):
        main([str(runs_dir), "--out", str(tmp_path / "other"), "--methods", "xtra", "bc"])


def test_every_curve_point_gets_an_interval_over_seeds_and_episodes_and_a_difference_from_the_baseline(
    tmp_path, capsys
):
    """An early lead is a finding only with an interval: each evaluation's per-episode returns are kept in the
    record's curve, and the report puts the hierarchical CI on every point and on the difference from the
    baseline; a record written before the curve kept episodes falls back to seeds alone, except at its last point,
    which is the final evaluation."""
    from xtra.callbacks.run_record import curve_point
    from xtra.scores import difference_ci, hierarchical_bootstrap_ci

    rng = np.random.default_rng(0)
    episodes = {}  # (method, seed) -> [early returns, final returns]
    for method, lead in (("efficientzero-l", 0.0), ("xtra", 3.0)):
        for seed in range(3):
            early, last = rng.normal(1.0 + lead, 0.5, 8), rng.normal(4.0, 0.5, 8)
            episodes[method, seed] = (early, last)
            history = [{"global_step": g, "env_steps": 100 * (g + 1) + seed, "returns": {"minatar/breakout": e}}
                       for g, e in ((10, early.tolist()), (20, last.tolist()))]  # fmt: skip
            write_run(tmp_path, method, "minatar/breakout", seed, float(last.mean()), False)
            path = tmp_path / "breakout" / method / f"seed{seed}" / "results.json"
            record = json.loads(path.read_text())
            record["curve"] = [curve_point(h) for h in history]
            record["final"]["global_step"], record["final"]["games"]["minatar/breakout"]["returns"] = 20, last.tolist()
            path.write_text(json.dumps(record))
    report = write_report([str(tmp_path)], tmp_path / "report", "efficientzero-l", "xtra-report", reps=300)
    rows = {(r["method"], r["global_step"]): r for r in report["curves"]}
    early = rows["xtra", 10]
    groups = [episodes["xtra", s][0] for s in range(3)]
    assert early["mean"] == pytest.approx(np.mean([g.mean() for g in groups]))
    assert early["ci_over"] == "seeds and episodes"
    assert (early["ci_low"], early["ci_high"]) == pytest.approx(hierarchical_bootstrap_ci(groups, reps=300))
    assert early["env_steps"] == 1101  # the seeds' mean
    baseline = [episodes["efficientzero-l", s][0] for s in range(3)]
    assert early["vs_baseline"] == pytest.approx(early["mean"] - np.mean([g.mean() for g in baseline]))
    assert (early["vs_ci_low"], early["vs_ci_high"]) == pytest.approx(difference_ci(groups, baseline, reps=300))
    assert early["vs_ci_low"] > 0  # a 3-point lead over 0.5-wide episodes is outside the noise
    assert rows["efficientzero-l", 10]["vs_baseline"] is None  # the baseline is not compared with itself
    text = (tmp_path / "report" / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 10 | 1101 |"))
    assert row.split("|")[-2].strip().startswith("**+")  # bold: the interval of the difference excludes 0
    assert "curves.csv" in text and len((tmp_path / "report" / "curves.csv").read_text().splitlines()) == 1 + 4

    # an older record (curve points with means only): the point gets the seeds-only interval, marked; the last
    # point is the final evaluation and keeps its episodes
    for seed in range(3):
        path = tmp_path / "breakout" / "xtra" / f"seed{seed}" / "results.json"
        record = json.loads(path.read_text())
        for point in record["curve"]:
            del point["episode_returns"]
        path.write_text(json.dumps(record))
    report = build_report(load_runs([tmp_path]), "efficientzero-l", reps=300)
    rows = {(r["method"], r["global_step"]): r for r in report["curves"]}
    assert rows["xtra", 10]["ci_over"] == "seeds" and rows["xtra", 10]["vs_baseline"] is None
    assert rows["xtra", 20]["ci_over"] == "seeds and episodes" and rows["xtra", 20]["vs_baseline"] is not None
    # such records' episodes can come from the evaluation history each run's checkpoint holds (as Lightning saves
    # the Evaluation callback's state), taken only where the means agree
    import torch

    for seed in range(3):
        early = episodes["xtra", seed][0].tolist()
        history = [{"global_step": 10, "env_steps": 0, "returns": {"minatar/breakout": early}}]
        if seed == 2:  # another run's checkpoint: its mean differs from the record's, so it is not used
            history[0]["returns"]["minatar/breakout"] = [e + 1 for e in early]
        folder = tmp_path / "breakout" / "xtra" / f"seed{seed}" / "checkpoints"
        folder.mkdir()
        torch.save({"callbacks": {"Evaluation": {"last_return": 0.0, "history": history}}}, folder / "last.ckpt")
    runs = load_runs([tmp_path], episodes_from_checkpoints=True)
    points = {r.seed: r.curve_episodes[0] for r in runs if r.method == "xtra"}
    assert points[0] == (10, tuple(episodes["xtra", 0][0])) and points[2] == (10, None)
    rows = {(r["method"], r["global_step"]): r for r in build_report(runs, "efficientzero-l", reps=100)["curves"]}
    assert rows["xtra", 10]["ci_over"] == "seeds"  # one seed still lacks them
    # a checkpoint that cannot be read leaves that run's means alone and says so
    (tmp_path / "breakout" / "xtra" / "seed0" / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    runs = load_runs([tmp_path], episodes_from_checkpoints=True)
    assert next(r for r in runs if r.method == "xtra" and r.seed == 0).curve_episodes[0] == (10, None)
    assert "no episodes from" in capsys.readouterr().err
