"""Presets' GPU-sized variants: which one a run takes (TrainConfig.preset, the device), what it sets, and the errors."""

import logging

import pytest
import torch

from rlcore import cli
from rlcore.api import run_preset, split_settings
from rlcore.presets import gpu_preset_envs, load_preset, preset_variant
from rlcore.report import announce_preset
from rlcore.train_config import TrainConfig

BREAKOUT = "rlcore/MinAtar-Breakout-v0"


def test_the_gpu_variant_replaces_the_entrys_sizes_and_keeps_the_rest() -> None:
    cpu, gpu = load_preset("ppo", BREAKOUT), load_preset("ppo", BREAKOUT, "gpu")
    assert cpu["train"]["num_envs"] == 8 and (cpu["algo"]["n_steps"], cpu["algo"]["batch_size"]) == (128, 256)
    assert gpu["train"]["num_envs"] == 64
    assert (gpu["algo"]["n_steps"], gpu["algo"]["batch_size"], gpu["algo"]["n_epochs"]) == (64, 1024, 8)
    changed = {"num_envs", "n_steps", "batch_size", "n_epochs"}
    for section in ("train", "algo"):
        assert set(gpu[section]) == set(cpu[section])
        assert {key: value for key, value in gpu[section].items() if key not in changed} == \
            {key: value for key, value in cpu[section].items() if key not in changed}
    assert BREAKOUT in gpu_preset_envs("ppo") and "CartPole-v1" not in gpu_preset_envs("ppo")


def test_auto_takes_the_gpu_variant_only_when_the_run_trains_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert preset_variant("ppo", BREAKOUT, "auto", "cpu") == "cpu"
    assert preset_variant("ppo", BREAKOUT, "gpu", "cpu") == "gpu"  # named: on any device
    assert preset_variant("ppo", BREAKOUT, "cpu", "cuda") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine; nothing is moved to CUDA
    assert preset_variant("ppo", BREAKOUT, "auto", "auto") == "gpu"
    assert preset_variant("ppo", BREAKOUT, "auto", "cuda:0") == "gpu"
    assert preset_variant("ppo", BREAKOUT, "auto", "cpu") == "cpu"
    assert preset_variant("ppo", "CartPole-v1", "auto", "auto") == "cpu"  # no GPU variant there
    train, algo = split_settings("ppo", BREAKOUT, {"seed": 3})
    assert (train["num_envs"], algo["batch_size"]) == (64, 1024)
    assert run_preset("ppo", BREAKOUT, {"device": "cpu"})[0] == "cpu"


def test_the_users_settings_override_the_gpu_variant() -> None:
    train, algo = split_settings("ppo", BREAKOUT, {"preset": "gpu", "num_envs": 32, "batch_size": 512})
    assert (train["num_envs"], algo["n_steps"], algo["batch_size"], train["preset"]) == (32, 64, 512, "gpu")
    TrainConfig(**train)  # the chosen preset is recorded with the run's settings


def test_bad_preset_choices_name_the_value_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"preset must be one of auto, cpu, gpu, got 'fast'"):
        TrainConfig(preset="fast")
    with pytest.raises(ValueError, match=r"preset must be one of auto, cpu, gpu, got 'fast'"):
        split_settings("ppo", BREAKOUT, {"preset": "fast"})
    with pytest.raises(ValueError, match=r"no GPU preset for CartPole-v1 \(it has one for rlcore/MinAtar-Breakout-v0\)"
                                         r".*preset='auto' or 'cpu'"):
        split_settings("ppo", "CartPole-v1", {"preset": "gpu"})
    with pytest.raises(ValueError, match=r"dqn has no GPU preset for CartPole-v1 \(it has none\)"):
        load_preset("dqn", "CartPole-v1", "gpu")
    with pytest.raises(ValueError, match=r"the env is not an id"):
        run_preset("ppo", lambda: None, {"preset": "gpu"})


def test_the_preset_line_says_when_the_gpu_variant_runs(caplog: pytest.LogCaptureFixture) -> None:
    variant, preset = run_preset("ppo", BREAKOUT, {"preset": "gpu", "batch_size": 512})
    with caplog.at_level(logging.INFO, logger="rlcore.report"):
        line = announce_preset("ppo", BREAKOUT, preset, {"preset": "gpu", "batch_size": 512}, variant)
    assert line == (f"preset: ppo on {BREAKOUT} from rlcore/presets/ppo.yaml, its GPU variant (19 settings; yours "
                    "override batch_size)")


def test_the_cli_passes_preset_and_lists_the_gpu_variants(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    seen: dict = {}

    def fake_train(algo: str, env: str, run_dir: object = None, **settings: object) -> object:
        seen.update(settings, algo=algo, env=env)
        raise SystemExit(0)

    monkeypatch.setattr("rlcore.api.train", fake_train)
    with pytest.raises(SystemExit):
        cli.main(["train", "ppo", BREAKOUT, "--preset", "gpu", "--steps", "1000"])
    assert seen == {"algo": "ppo", "env": BREAKOUT, "preset": "gpu", "total_env_steps": 1000}
    assert cli.main(["train", "--resume", "some-run", "--preset", "gpu"]) == 2
    assert "--preset gpu chooses the settings a run starts from" in capsys.readouterr().err
    assert cli.main(["presets"]) == 0
    rows = [line.split(None, 3) for line in capsys.readouterr().out.splitlines()]
    assert ["ppo", BREAKOUT, "1,000,000", "64 envs, n_steps 64, batch_size 1024, n_epochs 8"] in rows
    assert ["ppo", "CartPole-v1", "100,000", "-"] in rows
