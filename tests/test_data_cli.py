import json

import numpy as np

from xtra.data_cli import main
from xtra.replay import Replay


def make_dataset(path):
    replay = Replay(50, (1, 2, 2), num_actions=2, frame_stack=1)
    replay.add_segment(
        np.zeros((4, 1, 2, 2), np.uint8), np.array([0, 1, 0]), np.array([1.0, 0.0, 1.0], np.float32),
        np.zeros(3, np.float32), np.full((3, 2), 0.5, np.float32), np.arange(3), terminal=True,
    )  # fmt: skip
    return replay.save(path, "minatar/breakout", source={"kind": "test"})


def test_info_and_validate(tmp_path, capsys):
    path = make_dataset(tmp_path / "ds")
    assert main(["info", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task_id"] == "minatar/breakout" and out["counts"]["steps"] == 3 and out["reward_sum"] == 2.0
    assert main(["validate", str(path)]) == 0
    (path / "actions.npy").write_bytes((path / "actions.npy").read_bytes()[:-1])
    assert main(["validate", str(path)]) == 1
    assert "actions.npy" in capsys.readouterr().err
