"""rlcore algos [NAME], rlcore presets, and docs/algorithms.md generated from the same source (checked current)."""

import dataclasses
from pathlib import Path

from rlcore import catalog, cli
from rlcore.algos.dqn import DQNConfig
from rlcore.fields import field_docs
from rlcore.trainer import TrainConfig

DOC = Path(__file__).resolve().parent.parent / "docs" / "algorithms.md"


def test_docs_algorithms_md_is_what_rlcore_algos_prints(capsys) -> None:
    assert cli.main(["algos", "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert printed == catalog.algorithms_markdown()
    assert DOC.read_text() == printed, (
        "docs/algorithms.md is out of date: regenerate it with `rlcore algos --markdown > docs/algorithms.md`")


def test_algos_name_shows_each_setting_with_type_default_and_doc(capsys) -> None:
    assert cli.main(["algos", "DQN"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "dqn: Deep Q-learning from replay with a target network and epsilon-greedy exploration."
    assert "observations: Box (vectors or images), Discrete, Dict, Tuple" in lines and "actions:      Discrete" in lines
    assert "presets:      CartPole-v1, rlcore/Memory-v0" in lines
    rows = {line.split()[0]: line.split(None, 3) for line in lines if line.startswith("  ") and len(line.split()) > 3}
    assert len([name for name in rows if name in DQNConfig.__dataclass_fields__]) == len(dataclasses.fields(DQNConfig))
    assert rows["learning_rate"][1:3] == ["float", "0.0001"] and rows["learning_rate"][3] == "Adam step size"
    assert rows["net_arch"][1:3] == ["tuple[int,", "...]"]
    assert "[64, 64]" in next(line for line in lines if line.startswith("  net_arch "))
    assert rows["double"][1:3] == ["bool", "False"]


def test_loop_settings_and_presets(capsys) -> None:
    assert cli.main(["algos", "--loop"]) == 0
    loop = capsys.readouterr().out
    assert all(f"  {field.name} " in loop for field in dataclasses.fields(TrainConfig))
    assert cli.main(["presets"]) == 0
    presets = [line.split()[:3] for line in capsys.readouterr().out.splitlines()]
    assert ["dqn", "CartPole-v1", "50,000"] in presets and ["ppo", "rlcore/MinAtar-Breakout-v0", "1,000,000"] in presets
    assert cli.main(["algos"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["name", "learns", "observations", "actions", "presets"]
    assert len([line for line in table.splitlines() if line.split()[:1] in (["dqn"], ["ppo"], ["sarsa"])]) == 3


def test_every_setting_has_a_doc() -> None:
    for name in catalog.algorithm_names():
        info = catalog.algorithm_info(name)
        assert all(setting.doc for setting in info.settings), (name, [s.name for s in info.settings if not s.doc])
    assert set(field_docs(TrainConfig)) == {field.name for field in dataclasses.fields(TrainConfig)}
