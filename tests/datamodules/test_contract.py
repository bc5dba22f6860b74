"""Every datamodule offers the TaskData contract, and what it says matches the games it holds."""

from test_offline import write

from xtra.datamodules.contract import TaskData
from xtra.datamodules.cross_task import CrossTaskDataModule
from xtra.datamodules.offline import OfflineReplayDataModule
from xtra.datamodules.online import OnlineReplayDataModule
from xtra.envs import env_spec


def test_every_datamodule_names_its_games_its_target_and_their_actions(tmp_path):
    breakout = write(tmp_path / "breakout", "minatar/breakout", action_ids=env_spec("minatar/breakout").action_ids)
    online = OnlineReplayDataModule("minatar/asterix", num_envs=1, env_steps=10, warmup_steps=0)
    offline = OfflineReplayDataModule([breakout])
    assert isinstance(online, TaskData) and isinstance(offline, TaskData)
    assert online.task_ids == ["minatar/asterix"] and online.target_task_id == "minatar/asterix"
    assert online.game_action_ids("minatar/asterix") == tuple(range(online.num_actions))  # its own space
    assert offline.target_task_id is None and offline.task_ids == ["minatar/breakout"]
    assert offline.game_action_ids("minatar/breakout") == env_spec("minatar/breakout").action_ids  # shared space

    cross = CrossTaskDataModule(online, offline, batch_size=8)
    assert isinstance(cross, TaskData)
    assert cross.target_task_id == "minatar/asterix" and cross.task_ids == ["minatar/asterix", "minatar/breakout"]
    assert cross.num_actions == 6  # the family's full action space
    assert cross.game_action_ids("minatar/asterix") == env_spec("minatar/asterix").action_ids
    assert cross.game_action_ids("minatar/breakout") == env_spec("minatar/breakout").action_ids
