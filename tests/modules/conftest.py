"""Fixtures of the stage tests: two recorded MinAtar datasets and a teacher per game, built once per session."""

import pytest
from tiny import GAMES, SMALL, record, trainer

from xtra.callbacks.evaluation import Evaluation
from xtra.datamodules.offline import OfflineReplayDataModule
from xtra.modules.teacher import TeacherModule


@pytest.fixture(scope="session")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    return [str(record(task, root / task.split("/")[1], root / "runs")) for task in GAMES]


@pytest.fixture(scope="session")
def teachers(datasets, tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    paths = []
    for ds in datasets:
        dm = OfflineReplayDataModule([ds], batch_size=8, seed=2)
        module = TeacherModule(obs_shape=dm.obs_shape, num_actions=dm.num_actions, **SMALL)
        t = trainer(root / dm.task_ids[0].split("/")[1], 6, callbacks=[Evaluation(every_n_steps=0, episodes=2)])
        t.fit(module, dm)
        path = root / f"{dm.task_ids[0].split('/')[1]}.ckpt"
        t.save_checkpoint(path)
        paths.append(str(path))
    return paths
