"""A checkpoint or run folder from someone else can never run code, reach the network or damage other runs.

Each test plays an attacker (or a careless user) against a real checkpoint: a crafted env id, Ray address or run
folder, an interrupted save, oversized or mistyped metadata, a reinterpreted dtype, symlinks, rewards beyond
float32, and a fuzz of bytes and JSON fields. See docs/security.md for the threat model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from save_kill import each_kill, posix_only

import rlcore
import rlcore.board as board
from rlcore import cli
from rlcore.agent import Agent, build_algorithm
from rlcore.checkpoint import CheckpointError, load_checkpoint
from rlcore.checkpoint_reader import MAX_HEADER_BYTES, MAX_TENSORS
from rlcore.collector import NonFiniteError
from rlcore.resume import RunFinishedError
from rlcore.trainer import TrainConfig, Trainer

SMALL_DQN = {"net_arch": [32, 32], "learning_starts": 64, "train_freq": 4, "gradient_steps": 1, "buffer_size": 2000,
             "batch_size": 16}


def train_config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    settings = {"total_env_steps": 200, "seed": 1, "eval_freq": 0, "checkpoint_freq": 100, "log_dir": str(tmp_path),
                "progress_bar": False, "log_interval": 100, "device": "cpu"}
    return TrainConfig(**{**settings, **overrides})


def train_run(run_dir: Path, **overrides: Any) -> Trainer:
    trainer = Trainer("dqn", "CartPole-v1", train_config(run_dir.parent, **overrides), SMALL_DQN, run_dir=run_dir)
    trainer.run()
    return trainer


def edit_meta(folder: Path, change: Any) -> None:
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text())
    change(meta)
    meta_path.write_text(json.dumps(meta))


def rewrite_state(folder: Path, change_header: Any, *, fix_dtypes: bool = True) -> None:
    """Edits the state file's safetensors header and fixes size and sha256 in meta.json, as an attacker would."""
    state_path = folder / "state.safetensors"
    data = state_path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    change_header(header)
    text = json.dumps(header).encode()
    new = len(text).to_bytes(8, "little") + text + data[8 + length :]
    state_path.write_bytes(new)

    def fix(meta: dict) -> None:
        meta["state_file"].update(bytes=len(new), sha256=hashlib.sha256(new).hexdigest())
        if fix_dtypes:
            meta["dtypes"] = {key: value.get("dtype") if isinstance(value, dict) else None
                              for key, value in header.items() if key != "__metadata__"}

    edit_meta(folder, fix)


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file (and symlink) below ``folder`` with its sha256: what a resume elsewhere must leave alone."""
    result = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            result[str(path.relative_to(folder))] = "-> " + os.readlink(path)
        elif path.is_file():
            result[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


OBSERVATIONS = np.random.default_rng(0).uniform(-1.0, 1.0, size=(64, 4)).astype(np.float32)
PENDULUM_OBSERVATIONS = np.random.default_rng(1).uniform(-1.0, 1.0, size=(64, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray, np.ndarray]]:
    """Real DQN (CartPole) and PPO (Pendulum, with observation normalization) agents: folder, observations,
    greedy actions."""
    root = tmp_path_factory.mktemp("agents")
    result = {}
    for name, env_id, config, observations in (
            ("dqn", "CartPole-v1", SMALL_DQN, OBSERVATIONS),
            ("ppo", "Pendulum-v1", {"net_arch": [16, 16], "normalize_obs": True}, PENDULUM_OBSERVATIONS)):
        env = gym.make(env_id)
        algo = build_algorithm(name, env.observation_space, env.action_space, config, seed=3)
        env.close()
        agent = Agent(algo, env=env_id)
        agent.save(root / name)
        result[name] = (root / name, observations, agent.predict(observations))
    return result


def copy_agent(agents: dict, name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(agents[name][0], target)
    return target


# ------------------------------------------------------------------------------------------- env ids


def write_marker_module(folder: Path, name: str = "evilmod") -> Path:
    """A module that, when imported, creates a marker file (a stand-in for any code an import would run)."""
    marker = folder / f"{name}-was-imported"
    (folder / f"{name}.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    return marker


def test_an_env_id_naming_a_module_is_never_imported(agents, tmp_path, monkeypatch, capsys) -> None:
    folder = copy_agent(agents, "dqn", tmp_path)
    marker = write_marker_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    edit_meta(folder, lambda meta: meta.update(env_id="evilmod:CartPole-v1"))
    with pytest.raises(CheckpointError, match=r"env_id 'evilmod:CartPole-v1' asks gymnasium to import the module "
                                              r"'evilmod'.*env=\.\.\..*trust_env_module=True"):
        rlcore.load(folder)
    assert cli.main(["eval", str(folder), "--episodes", "1"]) == 2
    assert "never imports a module a checkpoint names" in capsys.readouterr().err
    assert "evilmod" not in sys.modules and not marker.exists()

    agent = rlcore.load(folder, env="CartPole-v1")  # the caller names the env: the checkpoint's id is never used
    assert agent.env == "CartPole-v1" and agent.evaluate(1)["mean_ep_length"] > 0
    assert not marker.exists()
    rlcore.load(folder, trust_env_module=True).evaluate(1)  # only an explicit trust imports it
    assert marker.exists()
    sys.modules.pop("evilmod", None)


def test_an_unregistered_env_id_imports_nothing_and_names_the_fix(agents, tmp_path, caplog) -> None:
    folder = copy_agent(agents, "dqn", tmp_path)
    edit_meta(folder, lambda meta: meta.update(env_id="SomePackage/Unregistered-v3"))
    with caplog.at_level("WARNING", logger="rlcore.checkpoint_schema"):
        agent = rlcore.load(folder)  # predicting needs no env
    assert "'SomePackage/Unregistered-v3' is not a registered gymnasium id" in caplog.text
    assert "Import the package that registers it" in caplog.text
    np.testing.assert_array_equal(agent.predict(OBSERVATIONS), agents["dqn"][2])
    with pytest.raises(gym.error.Error, match="SomePackage not found"):  # gymnasium says what to install
        agent.evaluate(1)
    edit_meta(folder, lambda meta: meta.update(env_id="rlcore/Corridor-v0"))  # rlcore's own ids are registered
    assert rlcore.load(folder).env == "rlcore/Corridor-v0"


def test_resume_never_imports_the_checkpoints_env_module(tmp_path, monkeypatch) -> None:
    run = tmp_path / "run"
    train_run(run)
    marker = write_marker_module(tmp_path, "evilenvs")
    monkeypatch.syspath_prepend(str(tmp_path))
    edit_meta(run / "checkpoint", lambda meta: meta.update(env_id="evilenvs:CartPole-v1"))
    with pytest.raises(CheckpointError, match="'evilenvs'"):
        Trainer.resume(run, total_env_steps=300)
    edit_meta(run / "checkpoint", lambda meta: meta.update(env_id="Unregistered/CartPole-v1"))
    with pytest.raises(CheckpointError, match="is not a registered gymnasium id"):  # resuming needs the env now
        Trainer.resume(run, total_env_steps=300)
    edit_meta(run / "checkpoint", lambda meta: meta.update(env_id="evilenvs:CartPole-v1"))
    assert not marker.exists()
    resumed = Trainer.resume(run, env="CartPole-v1", total_env_steps=300)
    assert resumed.env_steps == 200 and not marker.exists()
    resumed.envs.close()
    resumed.logger.close()


# ------------------------------------------------------------------------- network and run folders


def crafted_ray_run(tmp_path: Path, port: int, num_workers: int) -> Path:
    run = tmp_path / "run"
    train_run(run)
    address = f"ray://127.0.0.1:{port}"
    edit_meta(run / "checkpoint", lambda meta: meta["train_config"].update(backend="ray", ray_address=address,
                                                                           num_workers=num_workers))
    return run


class Listener:
    """A TCP listener on 127.0.0.1 that says whether anything connected to it."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.setblocking(False)
        self.port = self.server.getsockname()[1]

    def connected(self) -> bool:
        try:
            connection, _ = self.server.accept()
        except BlockingIOError:
            return False
        connection.close()
        return True


@pytest.fixture
def listener():
    opened = Listener()
    yield opened
    opened.server.close()


def test_a_crafted_ray_address_is_never_contacted(tmp_path, listener, monkeypatch, capsys, caplog) -> None:
    run = crafted_ray_run(tmp_path, listener.port, num_workers=1)
    # The run claims one Ray worker: resuming it without naming the workers is refused, before any process starts.
    assert cli.main(["train", "--resume", str(run), "--steps", "300", "--no-progress"]) == 2
    assert "num_workers=1" in capsys.readouterr().err and not listener.connected()

    # Naming the workers and the backend: the address is the caller's (none: a local Ray), never the checkpoint's.
    import rlcore.distributed.ray_backend as ray_backend

    addresses = []

    def init_ray(address):
        addresses.append(address)
        raise RuntimeError("stop here: no Ray in this test")

    monkeypatch.setattr(ray_backend, "init_ray", init_ray)
    # (this run's state is a single-process one, which workers cannot continue: skip restoring it, so that the
    # resumed trainer gets as far as starting Ray with the settings resume chose)
    monkeypatch.setattr(Trainer, "load_training_state", lambda self, state: None)
    assert cli.main(["train", "--resume", str(run), "--steps", "300", "--no-progress", "--num-workers", "1",
                     "--backend", "ray"]) == 1  # the CLI reports the stub's RuntimeError in one line
    assert "stop here" in capsys.readouterr().err
    assert addresses == [None] and not listener.connected()
    monkeypatch.undo()

    # A run without workers whose checkpoint names Ray: resumes in this process, logs what it reused and what not.
    edit_meta(run / "checkpoint", lambda meta: meta["train_config"].update(num_workers=0))
    with caplog.at_level("INFO", logger="rlcore.trainer"):
        assert cli.main(["train", "--resume", str(run), "--steps", "300", "--no-progress"]) == 0
    assert not listener.connected()
    line = next(record.message for record in caplog.records if record.message.startswith("resumed dqn"))
    assert "reused from its checkpoint: algo_config" in line and "total_env_steps" not in line.split("given:")[0]
    assert line.count("env_kwargs=") == 1
    assert "given: total_env_steps=300" in line and "ray_address=None" in line and "backend='local'" in line
    assert load_checkpoint(run / "checkpoint")[1]["env_steps"] == 300


def test_a_copied_run_resumed_writes_only_into_the_copy(tmp_path) -> None:
    original, copy, victim = tmp_path / "r1", tmp_path / "r1copy", tmp_path / "victim"
    train_run(original)
    shutil.copytree(original, copy, symlinks=True)
    victim.mkdir()
    (victim / "keep.txt").write_text("another run's file")
    before, victim_before = tree_digest(original), tree_digest(victim)
    # a crafted run_dir (as earlier versions wrote it) is ignored, and so is a planted hparams.json link
    edit_meta(copy / "checkpoint", lambda meta: meta.update(run_dir=str(victim)))
    (copy / "hparams.json").unlink()
    (copy / "hparams.json").symlink_to(victim / "keep.txt")
    resumed = Trainer.resume(copy, total_env_steps=300)
    assert resumed.run_dir == copy
    resumed.run()
    assert tree_digest(original) == before and tree_digest(victim) == victim_before
    assert load_checkpoint(copy / "checkpoint")[1]["env_steps"] == 300
    assert not (copy / "hparams.json").is_symlink() and json.loads((copy / "hparams.json").read_text())["algo"] == "dqn"


def test_resuming_a_finished_run_says_so_and_how_to_train_longer(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    train_run(run)
    with pytest.raises(RunFinishedError, match=r"already finished: it trained 200 env steps of "
                                               r"total_env_steps=200.*--steps N.*with N > 200"):
        Trainer.resume(run)
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "already finished" in capsys.readouterr().err
    Trainer.resume(run, total_env_steps=300).logger.close()  # a larger total resumes it


def test_a_run_that_reached_its_target_reward_says_so(tmp_path) -> None:
    run = tmp_path / "run"
    train_run(run, eval_freq=100, eval_episodes=1, stop_at_reward=1.0, total_env_steps=400)
    with pytest.raises(RunFinishedError, match=r"reached stop_at_reward=1.*stop_at_reward=null"):
        Trainer.resume(run)
    Trainer.resume(run, stop_at_reward=None).logger.close()


def test_no_checkpoint_yet_is_said_clearly(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    train_run(run)
    for name in ("checkpoint", "best", "final"):
        shutil.rmtree(run / name, ignore_errors=True)
    with pytest.raises(CheckpointError, match="has no checkpoint yet"):
        Trainer.resume(run, total_env_steps=300)
    assert cli.main(["eval", str(run)]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="does not exist"):
        rlcore.load(tmp_path / "nowhere")


# -------------------------------------------------------------------------------- interrupted saves


@posix_only
def test_each_interrupted_save_state_resumes_and_evaluates(tmp_path) -> None:
    """A run's checkpoint (and its final agent) killed at each step of a save: ``--resume RUN`` and ``rlcore eval
    RUN`` use the newest complete version (by meta.json's env_steps, the oracle) every time."""
    run, ahead = tmp_path / "run", tmp_path / "ahead"
    train_run(run, total_env_steps=100)  # checkpoint and final at 100 env steps
    later = train_run(ahead, total_env_steps=200)  # the same run trained further, saved into run/ when killed
    later.run_dir = run
    pristine = tmp_path / "pristine"
    shutil.copytree(run, pristine, symlinks=True)

    def newest_on_disk(folder: Path) -> int:
        steps = []
        for entry in folder.parent.iterdir():
            if entry.name.startswith(folder.name):
                with contextlib.suppress(OSError, ValueError):
                    steps.append(json.loads((entry / "meta.json").read_text())["env_steps"])
        return max(steps)

    def restore() -> None:
        shutil.rmtree(run)
        shutil.copytree(pristine, run, symlinks=True)

    seen: set[int] = set()

    def resumes(step: int) -> None:
        expected = newest_on_disk(run / "checkpoint")
        resumed = Trainer.resume(run, total_env_steps=300)
        assert resumed.env_steps == expected, (step, sorted(p.name for p in run.iterdir()))
        resumed.envs.close()
        resumed.logger.close()
        seen.add(expected)

    steps = each_kill(later._save_checkpoint, restore, resumes)
    assert steps >= 8 and seen == {100, 200}

    seen.clear()

    def evaluates(step: int) -> None:
        expected = newest_on_disk(run / "final")
        assert rlcore.load(run).algo.env_steps == expected
        assert cli.main(["eval", str(run), "--episodes", "1"]) == 0
        seen.add(expected)

    steps = each_kill(lambda: later.agent().save(run / "final"), restore, evaluates)
    assert steps >= 8 and seen == {100, 200}


# --------------------------------------------------------------------------------------- sizes


MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    import rlcore
    from rlcore.checkpoint import CheckpointError
    rlcore.load(sys.argv[1])  # warm-up: imports, registries, one valid agent
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    for crafted in sys.argv[2:]:
        tracemalloc.reset_peak()
        try:
            rlcore.load(crafted)
            outcome = "loaded"
        except CheckpointError as error:
            outcome = str(error)
        traced = tracemalloc.get_traced_memory()[1]
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline  # the peak so far, over baseline
        print(json.dumps({"outcome": outcome, "rss_growth_kib": grown, "traced_peak_bytes": traced}))
""")


def load_in_subprocess(good: Path, crafted: list[Path]) -> list[dict[str, Any]]:
    """Loads each crafted checkpoint in a fresh process after a warm-up load of ``good``; per load: the outcome,
    the growth of the process's peak RSS over its baseline, and tracemalloc's peak."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(good), *map(str, crafted)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.strip().splitlines()[-len(crafted):]]


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB")
def test_oversized_metadata_and_headers_are_refused_before_allocation(agents, tmp_path) -> None:
    """The issue's cases, each refused with the process's peak memory less than 50 MB above its baseline:
    a 2.5 KB edit (net_arch [20000, 20000], a Discrete(600000) observation space) that used to make loading take
    3.8 GB; 1e6 zero-size tensors in an 80 MB header (1.7 GB), refused unread (MAX_HEADER_BYTES); 85k of them
    in a header under that limit, refused while parsing (MAX_TENSORS)."""
    enlarged = copy_agent(agents, "dqn", tmp_path / "enlarged")

    def enlarge(meta: dict) -> None:
        meta["algo_config"]["net_arch"] = [20000, 20000]
        meta["observation_space"] = {"type": "Discrete", "n": 600000, "start": 0}

    edit_meta(enlarged, enlarge)
    crafted, expected = [enlarged], ["describe a dqn with"]
    for count, limit in ((1_000_000, "MAX_HEADER_BYTES"), (MAX_TENSORS + 20_000, "MAX_TENSORS")):
        folder = copy_agent(agents, "dqn", tmp_path / str(count))
        add_empty_tensors(folder, count)
        assert ((folder / "state.safetensors").stat().st_size > MAX_HEADER_BYTES) == (limit == "MAX_HEADER_BYTES")
        crafted.append(folder)
        expected.append(limit)
    for probe, limit in zip(load_in_subprocess(agents["dqn"][0], crafted), expected, strict=True):
        assert limit in probe["outcome"], probe
        assert probe["rss_growth_kib"] < 50 * 1024 and probe["traced_peak_bytes"] < 50 * 2**20, probe

    edit_meta(enlarged, lambda meta: meta.update(observation_space={"type": "Discrete", "n": 10**9, "start": 0}))
    with pytest.raises(CheckpointError, match=r"observation_space.n must be in \[1, 16777216\]"):
        rlcore.load(enlarged)


def add_empty_tensors(folder: Path, count: int) -> None:
    """Appends ``count`` zero-size tensors to the state file's header; fixes size and sha256 in meta.json and
    drops its dtypes table (as in checkpoints written before it existed)."""
    state_path = folder / "state.safetensors"
    data = state_path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    entries = "".join(f',"z{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(count))
    header = data[8 : 8 + length].rstrip()[:-1] + entries.encode() + b"}"
    new = len(header).to_bytes(8, "little") + header + data[8 + length :]
    state_path.write_bytes(new)
    edit_meta(folder, lambda meta: [meta["state_file"].update(bytes=len(new), sha256=hashlib.sha256(new).hexdigest()),
                                    meta.pop("dtypes")])


def test_a_tensor_of_another_dtype_is_refused(agents, tmp_path) -> None:
    """A header that says I32 where the network holds F32 (hash fixed) used to load garbage weights silently."""
    folder = copy_agent(agents, "dqn", tmp_path)
    key = "algo/q_net/body.0.weight"

    def reinterpret(header: dict) -> None:
        assert header[key]["dtype"] == "F32"
        header[key]["dtype"] = "I32"

    rewrite_state(folder, reinterpret, fix_dtypes=False)  # meta.json's dtypes still say F32
    with pytest.raises(CheckpointError, match=rf"does not match meta.json's dtypes \(tensor '{key}' is F32"):
        rlcore.load(folder)
    edit_meta(folder, lambda meta: meta["dtypes"].update({key: "I32"}))  # the attacker fixes that too
    with pytest.raises(CheckpointError, match=rf"tensor '{key}' is torch.int32 in the state file, but the dqn that "
                                              r"meta.json describes holds torch.float32"):
        rlcore.load(folder)


def test_checkpoints_without_the_new_fields_still_load(agents, tmp_path) -> None:
    """Checkpoints written before dtypes/saved_at_ns existed (dtypes are then taken from the header)."""
    folder = copy_agent(agents, "dqn", tmp_path)
    edit_meta(folder, lambda meta: [meta.pop("dtypes"), meta.pop("saved_at_ns")])
    np.testing.assert_array_equal(rlcore.load(folder).predict(OBSERVATIONS), agents["dqn"][2])


@pytest.mark.parametrize(("field", "value", "match"), [
    ("env_kwargs", "abc", "env_kwargs must be an object"),
    ("env_kwargs", [1, 2], "env_kwargs must be an object"),
    ("observation_space", [], "observation_space must be a JSON object"),
    ("observation_space", {"type": "Box", "shape": [4]}, "observation_space.dtype must be one of"),
    ("observation_space", {"type": "Graph"}, "observation_space.type must be one of"),
    ("observation_space", {"type": "Tuple"}, "observation_space.spaces must be a non-empty list"),
    ("observation_space", {"type": "Dict", "spaces": [["a/b", {"type": "Discrete", "n": 2}]]},
     r"observation_space.spaces\[0\] must be a \[key, space\] pair"),
    ("action_space", {"type": "Discrete", "n": True}, "action_space.n must be an int"),
    ("action_space", {"type": "Discrete", "n": 2, "start": 0, "extra": 1}, r"action_space has unknown key"),
    ("action_space", {"type": "MultiDiscrete", "nvec": [2, 3], "start": [0]},
     r"action_space.start must have nvec's shape \(2,\)"),
    ("action_space", {"type": "MultiDiscrete", "nvec": [2, 3], "start": [0, 2.5]}, "action_space.start must be an int"),
    ("algo", 7, "algo must be a string"),
    ("algo", "evil", "meta.json's algo: unknown algorithm 'evil'"),
    ("algo_config", {"net_arch": "32"}, r"algo_config.net_arch must be tuple\[int, ...\]"),
    ("algo_config", {"gamma": 2.0}, "algo_config is invalid: gamma must be in"),
    ("algo_config", {"__class__": 1}, "algo_config has an unknown field '__class__'"),
    ("env_steps", -1, "env_steps must be a non-negative int"),
    ("kind", "training", "lacks train_config"),
    ("surprise", 1, r"unknown key\(s\) \['surprise'\]"),
])
def test_mistyped_metadata_is_a_checkpoint_error_naming_the_field(agents, tmp_path, field, value, match) -> None:
    folder = copy_agent(agents, "dqn", tmp_path)
    edit_meta(folder, lambda meta: meta.update({field: value}))
    with pytest.raises(CheckpointError, match=match):
        rlcore.load(folder)


# ---------------------------------------------------------------------------------------- symlinks


def test_symlinks_inside_a_checkpoint_are_never_followed(agents, tmp_path) -> None:
    for name in ("meta.json", "state.safetensors"):  # a link to the genuine file elsewhere used to load silently
        folder = copy_agent(agents, "dqn", tmp_path / name)
        (folder / name).unlink()
        (folder / name).symlink_to(agents["dqn"][0] / name)
        with pytest.raises(CheckpointError, match=rf"{name} is a symlink; rlcore never follows symlinks"):
            rlcore.load(folder)
    folder = copy_agent(agents, "dqn", tmp_path / "dev")
    (folder / "state.safetensors").unlink()
    (folder / "state.safetensors").symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="is a symlink"):
        rlcore.load(folder)
    fifo = copy_agent(agents, "dqn", tmp_path / "fifo")
    (fifo / "meta.json").unlink()
    os.mkfifo(fifo / "meta.json")  # would block an open() for reading forever
    with pytest.raises(CheckpointError, match="is not a regular file"):
        rlcore.load(fifo)
    run = tmp_path / "run"  # a run whose best/ links to another agent
    run.mkdir()
    (run / "best").symlink_to(agents["dqn"][0])
    with pytest.raises(CheckpointError, match="best is a symlink"):
        rlcore.load(run)
    with pytest.raises(CheckpointError, match="best is a symlink"):
        load_checkpoint(run / "best")
    named = tmp_path / "named-link"  # a path the caller names may be a link: their choice, resolved once
    named.symlink_to(agents["dqn"][0])
    np.testing.assert_array_equal(rlcore.load(named).predict(OBSERVATIONS), agents["dqn"][2])


def test_a_resumed_run_never_writes_through_symlinked_checkpoints(tmp_path) -> None:
    run, victim = tmp_path / "run", tmp_path / "victim"
    train_run(run)
    shutil.copytree(run / "final", victim)
    before = tree_digest(victim)
    shutil.rmtree(run / "final")
    (run / "final").symlink_to(victim)
    with pytest.raises(CheckpointError, match="final is a symlink; a resumed run writes there"):
        Trainer.resume(run, total_env_steps=300)
    assert tree_digest(victim) == before


def test_board_log_never_follows_a_planted_symlink(tmp_path, monkeypatch) -> None:
    """``rlcore board`` used to open /tmp/rlcore-tensorboard-<port>.log for writing, following a planted link."""
    monkeypatch.setattr(board.tempfile, "tempdir", str(tmp_path))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    port = board.free_port(None)
    planted = tmp_path / f"rlcore-tensorboard-{port}.log"
    planted.symlink_to(victim)

    class FakeTensorBoard:
        def __init__(self, command, stdout, **kwargs):
            stdout.write(b"TensorBoard output\n")
            self.pid, self.returncode = 12345, None

        def poll(self):
            return None

    monkeypatch.setattr(board.subprocess, "Popen", FakeTensorBoard)
    monkeypatch.setattr(board, "_wait_until_answers", lambda started, timeout: None)
    started = board.start_board(tmp_path / "runs", port=port)
    assert victim.read_text() == "precious" and planted.is_symlink()
    assert started.log_path.parent == tmp_path and not started.log_path.is_symlink()
    assert started.log_path.read_bytes() == b"TensorBoard output\n"
    assert oct(started.log_path.stat().st_mode & 0o777) == oct(0o600)


# ------------------------------------------------------------------------------------- finite checks


class HugeRewardEnv(gym.Env):
    """Rewards of 1e300: finite in float64, inf in float32 (where buffers store them)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float64)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, huge_observation: bool = False) -> None:
        self.huge_observation = huge_observation
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(2), {}

    def step(self, action):
        self.t += 1
        observation = np.full(2, 1e300 if self.huge_observation and self.t == 2 else 0.0)
        return observation, 1e300 if not self.huge_observation and self.t == 2 else 0.0, False, False, {}


@pytest.mark.parametrize(("huge_observation", "what"), [(False, "reward"), (True, "observation")])
def test_values_beyond_float32_raise_the_non_finite_error(huge_observation, what) -> None:
    with pytest.raises(NonFiniteError, match=f"non-finite {what} at env step 2"):
        rlcore.train("ppo", lambda: HugeRewardEnv(huge_observation), total_env_steps=64, log_dir=None,
                     progress_bar=False, eval_freq=0, n_steps=32, batch_size=32)


# ----------------------------------------------------------------------------------------------- fuzz


BEHAVIOUR_FIELDS = ("algo_config", "observation_space", "action_space")
"""meta.json fields whose valid values change what the agent does with the same weights (a checkpoint's author
chooses them; e.g. the activation or a Box's bounds): a load that succeeds after such an edit may act differently,
but must still hold exactly the saved weights."""


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    choices = [lambda: None, lambda: rng.random() < 0.5, lambda: rng.randint(-3, 70000),
               lambda: rng.choice([0.5, -1e308, 1e-300, 3.0]), lambda: 2**63 + rng.randrange(10),
               lambda: rng.choice(["", "x", "F32", "Box", "Discrete", "../../etc/passwd", "evilmod:X-v0", "tanh"]),
               lambda: [rng.randint(0, 5) for _ in range(rng.randrange(4))]]
    if depth < 2:
        choices += [lambda: [_random_json(rng, depth + 1) for _ in range(rng.randrange(3))],
                    lambda: {rng.choice(["n", "shape", "type", "dtype", "low", "a"]): _random_json(rng, depth + 1)
                             for _ in range(rng.randrange(3))}]
    return rng.choice(choices)()


def _mutate_json(document: Any, rng: random.Random) -> tuple[Any, str]:
    """One random edit of a random node: replace, delete, add a key, or swap in another node's value."""
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node[:20]):
                walk(value, (*path, index))

    walk(document, ())
    path = rng.choice(paths[1:])
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    action = rng.randrange(4)
    if action == 0:
        parent[path[-1]] = _random_json(rng)
    elif action == 1:
        del parent[path[-1]]
    elif action == 2 and isinstance(parent[path[-1]], dict):
        parent[path[-1]][rng.choice(["x", "n", "dtype", "$t", "key"])] = _random_json(rng)
    else:
        other = rng.choice(paths[1:])
        value = document
        for part in other:
            value = value[part]
        parent[path[-1]] = json.loads(json.dumps(value))
    return document, str(path[0])


def _weights(agent: Agent) -> list[torch.Tensor]:
    return [tensor for tensor in agent.algo.state_dict().values() if isinstance(tensor, torch.Tensor)] + [
        tensor for module in agent.algo.__dict__.values() if isinstance(module, torch.nn.Module)
        for tensor in module.state_dict().values()]


def test_fuzzed_checkpoints_load_identically_or_raise_checkpoint_error(agents, tmp_path) -> None:
    """Random edits of real DQN and PPO checkpoints' bytes (meta.json, the state file's header with its hash
    fixed, and anywhere with it not fixed) and JSON fields: every load gives the saved weights (and the same
    actions, unless a behaviour field was edited) or raises CheckpointError; nothing else escapes."""
    rng = random.Random(1234)
    counts = {"loaded": 0, "refused": 0}
    originals = {name: rlcore.load(folder) for name, (folder, _, _) in agents.items()}
    for trial in range(1, 301):  # a fixed set of edits (not as many as a clock allows: the same on any machine)
        name = rng.choice(sorted(agents))
        source, observations, actions = agents[name]
        folder = tmp_path / f"t{trial}"
        shutil.copytree(source, folder)
        kind = rng.randrange(4)
        edited = "bytes"
        if kind == 0:  # JSON fields of meta.json
            meta = json.loads((folder / "meta.json").read_text())
            meta, edited = _mutate_json(meta, rng)
            (folder / "meta.json").write_text(json.dumps(meta))
        elif kind == 1:  # bytes of meta.json
            data = bytearray((folder / "meta.json").read_bytes())
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            (folder / "meta.json").write_bytes(bytes(data))
        elif kind == 2:  # the header's JSON fields, hash and size fixed: only the loader's checks stand
            rewrite_state(folder, lambda header: _mutate_json(header, rng), fix_dtypes=rng.random() < 0.5)
        else:  # bytes anywhere in the state file, hash not fixed
            data = bytearray((folder / "state.safetensors").read_bytes())
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            (folder / "state.safetensors").write_bytes(bytes(data))
        try:
            loaded = rlcore.load(folder)
        except CheckpointError:
            counts["refused"] += 1
            continue
        counts["loaded"] += 1
        for saved, got in zip(_weights(originals[name]), _weights(loaded), strict=True):
            assert saved.dtype == got.dtype and torch.equal(saved, got), (trial, kind, edited)
        if edited not in BEHAVIOUR_FIELDS:
            np.testing.assert_array_equal(loaded.predict(observations), actions, err_msg=f"{trial} {kind} {edited}")
        shutil.rmtree(folder)
    assert counts["refused"] >= 20 and counts["loaded"] >= 3, counts
