"""``xtra-report RUNS… --out DIR``: the paper's tables, and robust aggregates with confidence intervals, from runs.

Every ``results.json`` under the given folders is one run (``xtra fit`` writes it when a fit ends). A run's method
is the folder above its ``seed<N>`` folder (the layout ``xtra-sweep`` writes: ``<out>/<game>/<method>/seed<N>``),
or its own folder's name otherwise. The report holds:

* **Table 1 layout** — per target game, each method's mean final return over its seeds, and the mean and median
  over games of each method's return divided by the baseline's (the paper's "improvement", baseline = 1.00);
* **Table 2 layout** — human-normalised mean and median (Atari games with a reference score only);
* **aggregates** — IQM, mean, median and optimality gap of normalised scores (human-normalised when every game has
  a reference, else divided by the baseline's mean on that game), each with a 95 % stratified bootstrap CI (runs
  resampled within each game: the method of Agarwal et al., 2021);
* learning curves: every evaluation's mean over seeds with a 95 % CI over seeds and their episodes, and each
  method's difference from the baseline with its own CI (a table, ``curves.csv`` and a PNG with those bands) —
  an early lead is a finding only when the interval of the difference excludes 0;
* a performance profile (PNG);
* collapsed runs (the final greedy policy put ≥ 95 % of its moves on one action) marked in every table.

The statistics are ``xtra/scores.py``'s (numpy only), checked against rliable's in the tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtra.callbacks.run_record import RESULTS
from xtra.envs import game_name
from xtra.scores import (
    bootstrap_ci,
    difference_ci,
    hierarchical_bootstrap_ci,
    human_normalized,
    iqm,
    mean,
    median,
    optimality_gap,
    performance_profile,
    profile_ci,
)

SEED_DIR = re.compile(r"seed(\d+)")
METRICS = {"IQM": iqm, "mean": mean, "median": median, "optimality gap": optimality_gap}


@dataclass(frozen=True)
class RunResult:
    path: Path
    method: str
    target: str
    seed: int | None
    score: float  # mean return of the final evaluation on the target
    collapsed: bool
    top_action_share: float
    env_steps: int | None
    commit: str | None
    config_sha256: str | None
    wall_s: float | None
    curve: tuple[tuple[int, float], ...]  # (env steps, mean return) of every evaluation
    run_dir: str = ""  # the run's trainer.default_root_dir
    # per curve point: (global step, its episodes' returns, or None where the record kept the mean only)
    curve_episodes: tuple[tuple[int, tuple[float, ...] | None], ...] = ()


def load_runs(
    folders: list[str | Path], zero_shot_of: str | None = None, episodes_from_checkpoints: bool = False
) -> list[RunResult]:
    """Every finished run under ``folders`` (a ``results.json`` with a final evaluation of its target); with
    ``zero_shot_of``, that method's evaluations before its first update also form a method ``zero-shot`` when they
    score the pretrained model as it is (``starts_as_pretrained``; not after its output layers were reset).
    ``episodes_from_checkpoints``: for records whose curve kept means only, the episodes of each point from the
    evaluation history saved in the run's newest checkpoint (read-only; a point is taken only where its mean
    agrees with the record's)."""
    runs, seen, unscored = [], set(), []
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: no such folder of runs")
        files = [folder] if folder.name == RESULTS else sorted(folder.rglob(RESULTS), key=lambda p: p.stat().st_mtime)
        for path in files:
            record = json.loads(path.read_text())
            if not record.get("complete", True):
                print(f"xtra-report: skipping {path}: the fit stopped before its last step", file=sys.stderr)
                continue
            final = record.get("final") or {"games": {}}
            # offline stages (BC, a student) have no online target: their one evaluated game is the target
            target = record.get("target") or (next(iter(final["games"])) if len(final["games"]) == 1 else None)
            if not target or target not in final["games"]:
                print(f"xtra-report: skipping {path}: no final evaluation of a target game", file=sys.stderr)
                continue
            game = final["games"][target]
            here = Path(record["run_dir"]) if record.get("run_dir") else path.parent
            seed_dir = SEED_DIR.fullmatch(here.name)
            method = here.parent.name if seed_dir else here.name
            if str(here) in seen:  # an earlier fit in the same run folder: the newest record stands
                print(f"xtra-report: {here} has several records; using the newest", file=sys.stderr)
                runs = [r for r in runs if r.run_dir != str(here)]
            seen.add(str(here))
            points = [p for p in record.get("curve", []) if target in p["returns"]]
            if episodes_from_checkpoints and any("episode_returns" not in p for p in points):
                points = with_checkpoint_episodes(points, target, path.parent / "checkpoints")
            curve = tuple((int(p.get("env_steps") or 0), float(p["returns"][target])) for p in points)
            common = (record.get("seed"), record.get("commit"), record.get("config_sha256"))
            runs.append(RunResult(path, method, target, common[0], float(game["mean"]), bool(game["collapsed"]),
                                  float(game["top_action_share"]), final.get("env_steps"), *common[1:],
                                  record.get("wall_s"), curve, str(here),
                                  curve_episodes(points, target, final)))  # fmt: skip
            first = (record.get("curve") or [{}])[0]
            derived = zero_shot_of is not None and method == zero_shot_of != "zero-shot"  # not an xtra-eval run's twin
            if derived and first.get("global_step") == 0:
                if not record.get("starts_as_pretrained"):
                    unscored.append((path, target, common[0]))
                    continue
                runs.append(RunResult(path, "zero-shot", target, common[0], float(first["returns"][target]),
                                      bool(first.get("collapsed", {}).get(target, False)), float("nan"), 0,
                                      *common[1:], None, (), str(here)))  # fmt: skip
    scored = {(r.target, r.seed) for r in runs if r.method == "zero-shot"}  # xtra-eval --run-dir of the student
    for path, target, seed in unscored:
        if (target, seed) not in scored:
            print(f"xtra-report: no zero-shot row from {path}: its first evaluation is not of the pretrained model "
                  "as it is (output layers reset); score that model with xtra-eval --run-dir",
                  file=sys.stderr)  # fmt: skip
    if not runs:
        raise FileNotFoundError(f"no results.json with a final evaluation under {', '.join(map(str, folders))}")
    return runs


def with_checkpoint_episodes(points: list[dict], target: str, folder: Path) -> list[dict]:
    """``points`` with ``episode_returns`` from the ``Evaluation`` history of the newest checkpoint in ``folder``
    (records written before the curve kept episodes). Weights-only loading: no pickled code runs."""
    import torch

    ckpts = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        return points
    try:
        state = torch.load(ckpts[-1], map_location="cpu", weights_only=True).get("callbacks", {})
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        print(f"xtra-report: no episodes from {ckpts[-1]} ({type(err).__name__}); its curve keeps the means only",
              file=sys.stderr)  # fmt: skip
        return points
    history = next((v.get("history", []) for k, v in state.items() if k.split("{")[0] == "Evaluation"), [])
    saved = {h["global_step"]: h["returns"].get(target) for h in history if h.get("returns", {}).get(target)}
    out = []
    for p in points:
        episodes = saved.get(p.get("global_step"))
        if "episode_returns" not in p and episodes and abs(float(np.mean(episodes)) - p["returns"][target]) < 1e-6:
            p = {**p, "episode_returns": {target: list(episodes)}}
        out.append(p)
    return out


def curve_episodes(points: list[dict], target: str, final: dict) -> tuple:
    """Each curve point's global step and episode returns; records written before the curve kept them have
    them for the last point only (it is the final evaluation, whose returns ``final`` holds)."""
    out = []
    for p in points:
        episodes = (p.get("episode_returns") or {}).get(target)
        if episodes is None and p.get("global_step") == final.get("global_step"):
            episodes = final["games"][target].get("returns")
        out.append((int(p.get("global_step") or 0), tuple(map(float, episodes)) if episodes else None))
    return tuple(out)


def curve_rows(runs: list[RunResult], methods: list[str], targets: list[str], baseline: str | None,
               reps: int) -> list[dict]:  # fmt: skip
    """Every method's learning curve point by point: mean over seeds and its 95 % CI — over seeds and episodes
    when every seed kept the point's episodes, over seeds alone otherwise (``ci_over``) — and, beside the
    baseline's point at the same global step, the difference from it with its CI (seeds and episodes only)."""
    rows = []
    for t in targets:
        series = {}
        for m in methods:
            mine = [r for r in runs if r.method == m and r.target == t and r.curve]
            if not mine:
                continue
            n = min(len(r.curve) for r in mine)
            steps = [{r.curve_episodes[i][0] for r in mine if len(r.curve_episodes) > i} for i in range(n)]
            series[m] = (mine, n, steps)
        for m, (mine, n, steps) in series.items():
            for i in range(n):
                means = np.array([r.curve[i][1] for r in mine])
                episodes = [r.curve_episodes[i][1] if len(r.curve_episodes) > i else None for r in mine]
                full = all(e is not None for e in episodes)
                groups = [np.array(e) for e in episodes] if full else []
                if full:
                    lo, hi = hierarchical_bootstrap_ci(groups, reps=reps)
                else:
                    lo, hi = bootstrap_ci(means[:, None], mean, reps=reps)
                row = {"target": t, "method": m, "point": i,
                       "global_step": next(iter(steps[i])) if len(steps[i]) == 1 else None,
                       "env_steps": round(float(np.mean([r.curve[i][0] for r in mine]))), "seeds": len(mine),
                       "mean": float(means.mean()), "ci_low": lo, "ci_high": hi,
                       "ci_over": "seeds and episodes" if full else "seeds",
                       "vs_baseline": None, "vs_ci_low": None, "vs_ci_high": None}  # fmt: skip
                base = series.get(baseline) if baseline != m else None
                if full and base is not None and row["global_step"] is not None:
                    b_mine, b_n, b_steps = base
                    j = next((j for j in range(b_n) if b_steps[j] == {row["global_step"]}), None)
                    b_eps = [r.curve_episodes[j][1] for r in b_mine] if j is not None else [None]
                    if all(e is not None for e in b_eps):
                        baseline_groups = [np.array(e) for e in b_eps]
                        row["vs_baseline"] = row["mean"] - float(np.mean([r.curve[j][1] for r in b_mine]))
                        row["vs_ci_low"], row["vs_ci_high"] = difference_ci(groups, baseline_groups, reps=reps)
                rows.append(row)
    return rows


def score_matrix(runs: list[RunResult], method: str, targets: list[str]) -> np.ndarray:
    """``[seeds, games]`` final returns of one method (every game needs the same number of runs)."""
    columns = [[r.score for r in sorted(runs, key=lambda r: (r.seed is None, r.seed)) if r.method == method
                and r.target == t] for t in targets]  # fmt: skip
    counts = {len(c) for c in columns}
    if 0 in counts:
        missing = [t for t, c in zip(targets, columns, strict=True) if not c]
        raise ValueError(f"method {method} has no run on {', '.join(missing)}: report games every method ran")
    if len(counts) > 1:
        n = min(counts)
        print(
            f"xtra-report: {method} has {sorted(counts)} runs per game; using the first {n} seeds of each",
            file=sys.stderr,
        )
        columns = [c[:n] for c in columns]
    return np.array(columns, dtype=np.float64).T


def normaliser(targets: list[str], baseline: np.ndarray | None) -> tuple[str, callable]:
    """Human-normalised scores when every game has a reference, else scores divided by the baseline's mean."""
    if all(human_normalized(t, 0.0) is not None for t in targets):
        return "human-normalised", lambda m: np.array([[human_normalized(t, s) for t, s in zip(targets, row,
                                                                                              strict=True)]
                                                       for row in m])  # fmt: skip
    if baseline is None:
        raise ValueError("these games have no human reference score: name a --baseline method to normalise by")
    means = baseline.mean(0)
    if np.any(means <= 0):
        bad = [t for t, m in zip(targets, means, strict=True) if m <= 0]
        raise ValueError(f"the baseline's mean return is ≤ 0 on {', '.join(bad)}: a ratio to it means nothing; "
                         "choose another --baseline or leave those games out")  # fmt: skip
    return "÷ baseline", lambda m: m / means[None, :]


def fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def build_report(
    runs: list[RunResult], baseline: str | None, reps: int = 2_000, order: list[str] | None = None
) -> dict:
    """``order``: the methods' column order after the baseline (``--methods`` as given); else alphabetical."""
    targets = sorted({r.target for r in runs})
    rank = {m: i for i, m in enumerate(order or [])}
    methods = sorted({r.method for r in runs}, key=lambda m: (m != baseline, rank.get(m, len(rank)), m))
    if baseline is not None and baseline not in methods:
        raise ValueError(f"--baseline {baseline}: no such method among the runs ({', '.join(methods)})")
    matrices = {m: score_matrix(runs, m, targets) for m in methods}
    kind, norm = normaliser(targets, matrices[baseline] if baseline else None)
    per_game = []
    for t in targets:
        row = {"game": t}
        for m in methods:
            mine = [r for r in runs if r.method == m and r.target == t]
            row[m] = {"mean": float(np.mean([r.score for r in mine])), "seeds": len(mine),
                      "collapsed": sum(r.collapsed for r in mine)}  # fmt: skip
        per_game.append(row)
    improvement = {}
    if baseline is not None:
        base = matrices[baseline].mean(0)
        for m in methods:
            ratios = matrices[m].mean(0) / np.where(base > 0, base, np.nan)
            improvement[m] = {"mean": float(np.nanmean(ratios)), "median": float(np.nanmedian(ratios))}
    hns = {}
    if all(human_normalized(t, 0.0) is not None for t in targets):
        for m in methods:
            h = np.array([human_normalized(t, s) for t, s in zip(targets, matrices[m].mean(0), strict=True)])
            hns[m] = {"mean": float(h.mean()), "median": float(np.median(h))}
    aggregates = {}
    for m in methods:
        scores = norm(matrices[m])
        aggregates[m] = {name: (f(scores), *bootstrap_ci(scores, f, reps=reps)) for name, f in METRICS.items()}
        aggregates[m]["runs"] = scores.size
        aggregates[m]["collapsed"] = sum(r.collapsed for r in runs if r.method == m)
    return {"targets": targets, "methods": methods, "baseline": baseline, "normalisation": kind,
            "per_game": per_game, "improvement": improvement, "hns": hns, "aggregates": aggregates,
            "normalised": {m: norm(matrices[m]) for m in methods},
            "curves": curve_rows(runs, methods, targets, baseline, reps)}  # fmt: skip


def markdown(report: dict, runs: list[RunResult], command: str) -> str:
    methods, baseline = report["methods"], report["baseline"]
    lines = [f"# Report over {len(runs)} runs", "", f"```bash\n{command}\n```", "",
             "Final return: mean over seeds of each run's last evaluation. **collapsed** (k/n): k of the n seeds' "
             "greedy policies put ≥ 95 % of their moves on one action.", "",
             "## Per game (the paper's Table 1 layout)", "",
             "| game | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]  # fmt: skip
    for row in report["per_game"]:
        cells = []
        for m in methods:
            c = row[m]
            mark = f" **collapsed {c['collapsed']}/{c['seeds']}**" if c["collapsed"] else ""
            cells.append(f"{fmt(c['mean'])} ({c['seeds']} seeds){mark}")
        lines.append(f"| {game_name(row['game'])} | " + " | ".join(cells) + " |")
    if report["improvement"]:
        for stat in ("mean", "median"):
            lines.append(f"| {stat} improvement (÷ {baseline}) | "
                         + " | ".join(fmt(report["improvement"][m][stat]) for m in methods) + " |")  # fmt: skip
    if report["hns"]:
        lines += ["", "## Human-normalised (the paper's Table 2 layout)", "",
                  "| | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]  # fmt: skip
        for stat in ("mean", "median"):
            lines.append(f"| normed {stat} | " + " | ".join(fmt(report["hns"][m][stat]) for m in methods) + " |")
    lines += [
        "",
        f"## Aggregates ({report['normalisation']} scores; 95 % stratified bootstrap CI)",
        "",
        "| method | runs | collapsed | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 3) + "|",
    ]
    for m in methods:
        a = report["aggregates"][m]
        cells = [f"{fmt(a[k][0])} [{fmt(a[k][1])}, {fmt(a[k][2])}]" for k in METRICS]
        collapsed = f"**{a['collapsed']}**" if a["collapsed"] else "0"
        lines.append(f"| {m} | {a['runs']} | {collapsed} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Lower optimality gap is better (threshold 1). Runs (commit, config hash, wall time) are in "
        "`runs.csv`; `performance_profile.png` and `learning_curves.png` beside this file.",
        "",
    ]
    return "\n".join(lines + curve_markdown(report))


def curve_markdown(report: dict) -> list[str]:
    """Per target, every evaluation's mean [95 % CI] per method, and the difference from the baseline."""
    rows = [r for r in report["curves"] if r["global_step"] is not None]
    if not rows:
        return []
    lines = ["## Learning curves (every evaluation)", "",
             "Mean over seeds [95 % CI]; the interval resamples seeds and then each seed's evaluation episodes "
             "(seeds alone, marked ˢ, where a record kept the point's mean only). \"vs\" columns: the method's "
             "mean minus the baseline's at the same step, with the CI of that difference; **bold** where it "
             "excludes 0 — each cell is one comparison at 95 %, so among many cells about 1 in 20 excludes 0 by chance "
             "when nothing differs. Every row is also in `curves.csv`.", ""]  # fmt: skip
    baseline = report["baseline"]
    for t in report["targets"]:
        here = [r for r in rows if r["target"] == t]
        methods = [m for m in report["methods"] if any(r["method"] == m for r in here)]
        versus = [m for m in methods if any(r["method"] == m and r["vs_baseline"] is not None for r in here)]
        head = ["step", "env steps", *methods, *(f"{m} vs {baseline}" for m in versus)]
        lines += [f"### {game_name(t)}", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for step in sorted({r["global_step"] for r in here}):
            at = {r["method"]: r for r in here if r["global_step"] == step}
            cells = [str(step), str(round(np.mean([r["env_steps"] for r in at.values()])))]
            for m in methods:
                r = at.get(m)
                mark = "ˢ" if r and r["ci_over"] == "seeds" else ""
                cells.append(f"{fmt(r['mean'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]{mark}" if r else "—")
            for m in versus:
                r = at.get(m)
                if r is None or r["vs_baseline"] is None:
                    cells.append("—")
                    continue
                text = f"{r['vs_baseline']:+.2f} [{r['vs_ci_low']:+.2f}, {r['vs_ci_high']:+.2f}]"
                cells.append(f"**{text}**" if r["vs_ci_low"] > 0 or r["vs_ci_high"] < 0 else text)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of equal keys as CSV, the header from the first row (every table xtra writes: reports, the pipeline)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(report: dict, runs: list[RunResult], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    normalised = report["normalised"]
    everything = np.concatenate([v.ravel() for v in normalised.values()])
    taus = np.linspace(min(everything.min(), 0.0), max(everything.max(), 1.0), 101)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m in report["methods"]:
        lo, hi = profile_ci(normalised[m], taus, reps=500)
        ax.plot(taus, performance_profile(normalised[m], taus), label=m)
        ax.fill_between(taus, lo, hi, alpha=0.2)
    ax.set_xlabel(f"normalised score τ ({report['normalisation']})")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "performance_profile.png", dpi=120)
    plt.close(fig)

    targets = report["targets"]
    fig, axes = plt.subplots(1, len(targets), figsize=(4.5 * len(targets), 3.5), squeeze=False)
    for ax, t in zip(axes[0], targets, strict=True):
        for m in report["methods"]:
            points = [r for r in report["curves"] if r["method"] == m and r["target"] == t]
            if not points:
                continue
            steps = [r["env_steps"] for r in points]
            ax.plot(steps, [r["mean"] for r in points], label=m)
            ax.fill_between(steps, [r["ci_low"] for r in points], [r["ci_high"] for r in points], alpha=0.2)
        ax.set_title(game_name(t))
        ax.set_xlabel("env steps")
        ax.set_ylabel("return (greedy evaluation)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=120)
    plt.close(fig)


def write_report(
    folders: list[str],
    out: Path,
    baseline: str | None,
    command: str,
    overwrite: bool = False,
    reps: int = 2_000,
    zero_shot_of: str | None = "xtra",
    methods: list[str] | None = None,
    episodes_from_checkpoints: bool = False,
) -> dict:
    runs = load_runs(folders, zero_shot_of, episodes_from_checkpoints)
    if methods is not None:  # a pipeline's folders also hold its datasets', teachers' and student's runs
        missing = sorted(set(methods) - {r.method for r in runs})
        if missing:
            raise ValueError(f"no runs of {', '.join(missing)} under {', '.join(map(str, folders))}")
        runs = [r for r in runs if r.method in methods]
    if baseline is None:
        present = {r.method for r in runs}
        baseline = next((m for m in ("efficientzero", "efficientzero-l") if m in present), None)
    report = build_report(runs, baseline, reps, order=methods)
    if (out / "report.md").exists() and not overwrite:
        raise FileExistsError(f"{out / 'report.md'} exists: pass --overwrite to replace it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(report, runs, command))
    write_csv(out / "runs.csv", [{"method": r.method, "target": r.target, "seed": r.seed, "final_return": r.score,
                                  "collapsed": r.collapsed, "top_action_share": round(r.top_action_share, 3),
                                  "env_steps": r.env_steps, "commit": r.commit, "config_sha256": r.config_sha256,
                                  "wall_s": r.wall_s, "path": str(r.path)} for r in runs])  # fmt: skip
    write_csv(out / "aggregates.csv", [{"method": m, "normalisation": report["normalisation"], "metric": k,
                                        "value": a[k][0], "ci_low": a[k][1], "ci_high": a[k][2]}
                                       for m, a in report["aggregates"].items() for k in METRICS])  # fmt: skip
    if report["curves"]:
        write_csv(out / "curves.csv", report["curves"])
    plot(report, runs, out)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xtra-report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", help="folders of runs (every results.json below them), or results.json files"
    )
    parser.add_argument("--out", required=True, help="folder for report.md, runs.csv, aggregates.csv and the PNGs")
    parser.add_argument("--baseline", default=None,
                        help="the method the improvement and the normalisation divide by (default: efficientzero, "
                             "else efficientzero-l, if present)")  # fmt: skip
    parser.add_argument("--reps", type=int, default=2_000, help="bootstrap resamples")
    parser.add_argument(
        "--zero-shot-of",
        default="xtra",
        help="the method whose evaluation before its first update is the zero-shot row",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="report only these methods (run folder names), e.g. the finetuning rows of xtra-pipeline "
                        "folders, whose datasets, teachers and student are runs too")  # fmt: skip
    parser.add_argument("--curve-episodes-from-checkpoints", action="store_true",
                        help="records written before results.json kept every evaluation's episodes: read them from "
                        "each run's newest checkpoint (weights-only), for intervals on every curve point")  # fmt: skip
    args = parser.parse_args(argv)
    command = "xtra-report " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        write_report(args.runs, Path(args.out), args.baseline, command, args.overwrite, args.reps, args.zero_shot_of,
                     args.methods, args.curve_episodes_from_checkpoints)  # fmt: skip
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        parser.error(str(err))
    print(f"xtra-report: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
