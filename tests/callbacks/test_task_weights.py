"""The task-weight rule on a toy model whose per-task gradients are built aligned, orthogonal and opposed."""

import lightning as L
import numpy as np
import torch

from xtra.callbacks.task_weights import GradientCosineTaskWeights, fraction_above_threshold
from xtra.gradients import cosine_to_first, flat_gradient

P = 16
TASKS = ["toy/target", "toy/aligned", "toy/orthogonal", "toy/opposed"]


def task_gradients(step: int) -> np.ndarray:
    """Per-task gradient vectors of the toy losses at ``step`` (deterministic in the step)."""
    rng = np.random.default_rng(step)
    target = rng.normal(size=P)
    noise = rng.normal(size=(3, P))
    ortho = noise[1] - noise[1] @ target / (target @ target) * target
    return np.stack([target, target + 0.6 * noise[0], ortho + 0.25 * target * rng.normal(), -target + 0.3 * noise[2]])


class Toy(L.LightningModule):
    """Loss of task i = g_i(step) · w, so its gradient is exactly g_i(step)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(P))
        self.task_weights: dict[str, float] = {}
        self.probe_gradients = False
        self.last_similarities: dict[str, float] = {}
        self.seen: dict[int, dict[str, float]] = {}

    def data_task_ids(self) -> list[str]:
        return TASKS

    def target_task_id(self) -> str:
        return TASKS[0]

    def training_step(self, batch, batch_idx):
        g = torch.as_tensor(task_gradients(self.global_step), dtype=torch.float32)
        losses = [g[i] @ self.w for i in range(len(TASKS))]
        self.seen[self.global_step] = dict(self.task_weights)
        if self.probe_gradients:
            grads = torch.stack([flat_gradient(loss, [self.w], retain_graph=True) for loss in losses])
            cos = cosine_to_first(grads, clamp=5.0)
            self.last_similarities = dict(zip(TASKS[1:], cos.tolist(), strict=True))
        offline = zip(TASKS[1:], losses[1:], strict=True)
        return losses[0] + sum(self.task_weights.get(t, 1.0) * loss for t, loss in offline)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(list(range(10_000)), batch_size=None)


def expected_eta(steps: list[int]) -> dict[str, float]:
    """The authors' formula, computed here from the constructed vectors."""
    hits = np.zeros(3)
    for s in steps:
        g = np.clip(task_gradients(s), -5, 5)
        cos = g[1:] @ g[0] / (np.linalg.norm(g[1:], axis=1) * np.linalg.norm(g[0]))
        hits += cos > 0.1
    return dict(zip(TASKS[1:], np.round((1 + hits) / (1 + len(steps)), 2), strict=True))


def fit(root, max_steps, ckpt=None, module=None):
    callback = GradientCosineTaskWeights(cycle=10, measure=4, start=10)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                        callbacks=[callback])  # fmt: skip
    module = module or Toy()
    trainer.fit(module, ckpt_path=ckpt)
    return trainer, module, callback


def test_weights_follow_the_rule_and_hold_between_measurements(tmp_path):
    _, module, callback = fit(tmp_path, 35)
    first, second, third = expected_eta([10, 11, 12, 13]), expected_eta([20, 21, 22, 23]), expected_eta(range(30, 34))
    assert first["toy/aligned"] == 1.0 and first["toy/opposed"] == 0.2  # all hits / none of 4 → 1/5
    for step in range(0, 14):
        assert module.seen[step] == {t: 1.0 for t in TASKS[1:]}, step
    for step in range(14, 24):
        assert module.seen[step] == first, step
    for step in range(24, 34):
        assert module.seen[step] == second, step
    assert callback.weights == third
    assert len({tuple(module.seen[s].values()) for s in range(14, 24)}) == 1


def test_resume_restores_the_weights_and_the_open_window(tmp_path):
    _, reference, _ = fit(tmp_path / "ref", 35)
    trainer, _, _ = fit(tmp_path / "a", 22)
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    _, resumed, callback = fit(tmp_path / "b", 35, ckpt=tmp_path / "mid.ckpt")
    assert resumed.seen[22] == reference.seen[22] == expected_eta([10, 11, 12, 13])
    assert callback.weights == expected_eta(range(30, 34))
    assert resumed.seen[30] == reference.seen[30]


def test_rule_is_replaceable_and_the_default_matches_the_formula():
    sims = np.array([[0.5, 0.05, -1.0], [0.2, 0.2, -0.5]])
    np.testing.assert_array_equal(fraction_above_threshold(sims, 0.1), [1.0, round(2 / 3, 2), round(1 / 3, 2)])
    callback = GradientCosineTaskWeights(rule=lambda s, thr: np.full(s.shape[1], 0.5))
    callback.window, callback.tasks = sims.tolist(), ["a/x", "a/y", "a/z"]

    class Holder:
        task_weights: dict = {}

    class NoLogger:
        logger = None
        global_step = 0

    callback.refresh(NoLogger(), Holder)
    assert Holder.task_weights == {"a/x": 0.5, "a/y": 0.5, "a/z": 0.5}
