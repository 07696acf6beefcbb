"""The rlcore command's errors: one line naming the fix, exit code 2, no traceback unless --debug; and --version,
usage, flags; the same names and messages from the Python API."""

import argparse
import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import rlcore
from rlcore import cli
from rlcore.algos.base import ALGORITHMS, get_algo_class
from rlcore.api import split_settings

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def two_runs(root: Path) -> Path:
    """A folder holding two runs (one with an agent, one with a checkpoint)."""
    for run, sub in (("seed0-a", "best"), ("seed1-b", "checkpoint")):
        (root / "CartPole-v1" / "dqn" / run / sub).mkdir(parents=True)
        (root / "CartPole-v1" / "dqn" / run / sub / "meta.json").write_text("{}")
    (root / "notes.txt").write_text("a file, not a run")
    (root / "finished").mkdir()
    (root / "finished" / "hparams.json").write_text("{}")
    (root / "grid_list.yaml").write_text("algos: [dqn]\nenvs: [CartPole-v1]\ngrid: [1, 2]\n")
    (root / "bad.yaml").write_text("algos: [dqn\n")
    return root


get_algo_class("dqn")  # registers the built-in algorithms
REGISTERED = ", ".join(sorted(ALGORITHMS))
"""The registered algorithms as the errors list them."""


def cases(runs: Path) -> dict[str, tuple[list[str], int, str]]:
    """name -> (arguments, exit code, the exact last line of stderr, or of stdout when the code is 0)."""
    listed = ", ".join(str(runs / "CartPole-v1" / "dqn" / run) for run in ("seed0-a", "seed1-b"))
    return {
        "unknown_env": (["train", "dqn", "Cartpole-v1"], 2,
                        "rlcore: error: unknown env 'Cartpole-v1': Environment `Cartpole` doesn't exist. "
                        "Did you mean: `CartPole`?"),
        "algo_case_and_typo": (["train", "DQM", "CartPole-v1"], 2,
                               "rlcore: error: unknown algorithm 'DQM' (did you mean 'dqn'?); registered algorithms: "
                               f"{REGISTERED}"),
        "set_key_typo": (["train", "dqn", "CartPole-v1", "--set", "learning_rat=1e-3"], 2,
                         "rlcore: error: unknown setting 'learning_rat' for dqn (did you mean 'learning_rate'?); "
                         "`rlcore algos dqn` lists its settings"),
        "set_value_number": (["train", "dqn", "CartPole-v1", "--set", "gamma=0.99.9"], 2,
                             "rlcore: error: gamma must be a number (float), got '0.99.9'"),
        "set_value_list": (["train", "ppo", "CartPole-v1", "--set", "net_arch=64,x"], 2,
                           "rlcore: error: net_arch must be a list of numbers, e.g. [64, 64] (or 64,64 on the shell), "
                           "got '64,x'"),
        "set_value_range": (["train", "dqn", "CartPole-v1", "--set", "num_envs=0"], 2,
                            "rlcore: error: num_envs must be in [1, inf), got 0"),
        "set_and_flag_of_one_setting": (["train", "dqn", "CartPole-v1", "--seed", "3", "--set", "seed=4"], 2,
                                        "rlcore: error: --seed 3 and --set seed=4 both set seed; keep one"),
        "bench_set_and_flag_of_one_setting": (["bench", "dqn", "--env", "CartPole-v1", "--steps", "200", "--set",
                                               "total_env_steps=100"], 2,
                                              "rlcore: error: --steps 200 and --set total_env_steps=100 both set "
                                              "total_env_steps; keep one"),
        "no_progress_and_set_progress_bar": (["train", "dqn", "CartPole-v1", "--no-progress", "--set",
                                              "progress_bar=true"], 2,
                                             "rlcore: error: --no-progress and --set progress_bar=True both set "
                                             "progress_bar; keep one"),
        "bench_set_seed": (["bench", "dqn", "--env", "CartPole-v1", "--seeds", "2", "--set", "seed=3"], 2,
                           "rlcore: error: run_bench trains seeds 0..1 of each algorithm, so seed=3 would be "
                           "overridden; drop it (the number of seeds is seeds=K, on the command line --seeds K)"),
        "set_without_equals": (["train", "dqn", "CartPole-v1", "--set", "gamma"], 2,
                               "rlcore train: error: argument --set: settings are key=value, e.g. --set gamma=0.98, "
                               "got 'gamma'"),
        "train_without_arguments": (["train"], 2,
                                    "rlcore train: error: give ALGO and ENV, e.g. rlcore train dqn CartPole-v1 "
                                    "(rlcore algos lists the algorithms), or --resume RUN"),
        "eval_of_several_runs": (["eval", str(runs)], 2,
                                 f"rlcore: error: rlcore eval {runs} holds 2 runs; pass one of them: {listed}"),
        "resume_of_several_runs": (["train", "--resume", str(runs)], 2,
                                   f"rlcore: error: --resume {runs} holds 2 runs; pass one of them: {listed}"),
        "eval_missing_folder": (["eval", str(runs / "nope")], 2,
                                f"rlcore: error: rlcore eval {runs / 'nope'}: no such folder"),
        "eval_of_a_file": (["eval", str(runs / "notes.txt")], 2,
                           f"rlcore: error: rlcore eval {runs / 'notes.txt'} is a file; pass its run folder (it holds "
                           "best/, final/ or checkpoint/) or a checkpoint folder (it holds meta.json)"),
        "log_dir_a_file": (["train", "dqn", "CartPole-v1", "--log-dir", str(runs / "notes.txt")], 2,
                           f"rlcore: error: --log-dir {runs / 'notes.txt'} is a file; pass a folder (it is created if "
                           "missing)"),
        "run_dir_of_a_run": (["train", "dqn", "CartPole-v1", "--run-dir", str(runs / "finished")], 2,
                             f"rlcore: error: run_dir {runs / 'finished'} already holds a run (its hparams.json); a "
                             "new run there would overwrite its checkpoints: continue it with Trainer.resume / rlcore "
                             "train --resume, or pass another folder"),
        "ray_address_without_ray": (["train", "dqn", "CartPole-v1", "--ray-address", "auto"], 2,
                                    "rlcore: error: ray_address='auto' joins a Ray cluster for backend='ray' (with "
                                    "num_workers > 0): set backend='ray', or drop ray_address"),
        "seed_range": (["train", "dqn", "CartPole-v1", "--seed", "-1"], 2,
                       "rlcore train: error: argument --seed: must be >= 0, got -1"),
        "fps_range": (["eval", str(runs), "--fps", "0"], 2, "rlcore eval: error: argument --fps: must be >= 1, got 0"),
        "port_range": (["board", "--port", "70000"], 2,
                       "rlcore board: error: argument --port: must be in [1, 65535], got 70000"),
        "sweep_grid_not_a_mapping": (["sweep", str(runs / "grid_list.yaml")], 2,
                                     "rlcore: error: grid: [1, 2] must map settings to their values, e.g. grid: "
                                     "{learning_rate: [1.0e-3, 3.0e-4]}"),
        "sweep_folder": (["sweep", str(runs)], 2,
                         f"rlcore: error: sweep file {runs}: a folder; pass a YAML file (algos:, envs:, seeds:, grid:, "
                         "...)"),
        "subcommand_flag_typo": (["train", "dqn", "CartPole-v1", "--stpes", "5"], 2,
                                 "rlcore train: error: unrecognized arguments: --stpes 5 (did you mean '--steps'?)"),
        "command_typo": (["trian", "dqn", "CartPole-v1"], 2,
                         "rlcore: error: unknown command 'trian' (did you mean 'train'?); commands: train, eval, "
                         "compare, bench, board, play, algos, presets, pretrain, sweep"),
        "algos_typo": (["algos", "pp0"], 2,
                       "rlcore: error: unknown algorithm 'pp0' (did you mean 'ppo'?); registered algorithms: a2c, "
                       f"{REGISTERED.removeprefix('a2c, ')}"),
        "threads_value": (["train", "dqn", "CartPole-v1", "--threads", "many"], 2,
                          "rlcore: error: threads must be 'auto', a number of threads >= 1 or None (leave torch's "
                          "and numpy's defaults), got 'many'"),
        "version": (["--version"], 0, f"rlcore {rlcore.__version__}"),
        "debug_shows_the_traceback": (["train", "dqn", "CartPole-v1", "--set", "gamma=0.99.9", "--debug"], 2,
                                      "rlcore: error: gamma must be a number (float), got '0.99.9'"),
    }


SHELL_CASES = ("unknown_env", "set_value_number", "subcommand_flag_typo", "version", "debug_shows_the_traceback")
"""Cases also run as the shell runs them (a subprocess, for its exit code and what reaches the terminal); the rest run
``cli.main`` in this process (a subprocess costs ~4 s of imports each)."""


@dataclasses.dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run_in_process(args: list[str]) -> Outcome:
    """``cli.main(args)`` with its output captured: the exit code it returns or exits with, stdout, stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = cli.main(args)
        except SystemExit as exit_:  # argparse's errors and --version
            code = exit_.code if isinstance(exit_.code, int) else 1
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Outcome, int, str]]:
    """Every case run through ``cli.main`` in this process, and the shell cases through the CLI as a subprocess
    (``<case>/shell``)."""
    runs = two_runs(tmp_path_factory.mktemp("runs"))
    table = cases(runs)

    def run(args: list[str]) -> Outcome:
        done = subprocess.run([sys.executable, "-m", "rlcore.cli", *args], env=ENV, capture_output=True, text=True,
                              timeout=180, cwd=tmp_path_factory.mktemp("cwd"))
        return Outcome(done.returncode, done.stdout, done.stderr)

    with ThreadPoolExecutor(max_workers=len(SHELL_CASES)) as pool:
        shell = {f"{name}/shell": pool.submit(run, table[name][0]) for name in SHELL_CASES}
        home = os.getcwd()
        os.chdir(tmp_path_factory.mktemp("cwd"))  # while the subprocesses run
        try:
            outcomes = {name: run_in_process(args) for name, (args, _, _) in table.items()
                        if name != "debug_shows_the_traceback"}  # --debug changes this process's logging levels
        finally:
            os.chdir(home)
        outcomes.update({name: future.result() for name, future in shell.items()})
    return {name: (outcome, *table[name.removesuffix("/shell")][1:]) for name, outcome in outcomes.items()}


CASES = [name for name in cases(Path("/x")) if name != "debug_shows_the_traceback"]
CASES += [f"{name}/shell" for name in SHELL_CASES]


@pytest.mark.parametrize("case", CASES)
def test_each_error_is_one_line_with_exit_code_2_and_no_traceback(results, case: str) -> None:
    result, code, line = results[case]
    case = case.removesuffix("/shell")
    assert result.returncode == code, (result.stdout, result.stderr)
    output = result.stdout if code == 0 else result.stderr
    assert output.strip().splitlines()[-1] == line, output
    if case == "debug_shows_the_traceback":
        assert "Traceback (most recent call last)" in result.stderr
        return
    assert "Traceback" not in result.stderr
    error_lines = [text for text in result.stderr.splitlines() if "error:" in text]
    assert len(error_lines) <= 1, result.stderr
    command = line.split(":", 1)[0]  # "rlcore train" for argparse's errors of a subcommand
    if code == 2 and command != "rlcore":
        assert result.stderr.startswith(f"usage: {command} "), result.stderr  # the subcommand's usage
    elif code == 2:
        assert result.stderr.strip().splitlines()[-1] == line and "usage:" not in result.stderr or case in (
            "command_typo",)


def test_python_dash_m_rlcore_is_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "rlcore", "--version"], env=ENV, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0 and done.stdout.strip() == f"rlcore {rlcore.__version__}", done.stderr


def test_no_arguments_prints_the_usage() -> None:
    result = run_in_process([])
    assert result.returncode == 2 and result.stderr.startswith("usage: rlcore ") and "train" in result.stderr


def test_the_python_api_gives_the_same_names_and_messages() -> None:
    with pytest.raises(ValueError, match=r"^learning_rate must be a number \(float\), got 'fast'$"):
        rlcore.train("dqn", "CartPole-v1", learning_rate="fast")
    with pytest.raises(ValueError, match=r"^gamma must be a number \(float\), got '0.99.9'$"):
        rlcore.train("dqn", "CartPole-v1", gamma="0.99.9")
    with pytest.raises(ValueError, match=r"unknown setting 'learning_rat' for dqn \(did you mean 'learning_rate'\?\)"):
        rlcore.train("dqn", "CartPole-v1", learning_rat=1e-3)
    with pytest.raises(KeyError, match=r"unknown algorithm 'DQM' \(did you mean 'dqn'\?\)"):
        rlcore.train("DQM", "CartPole-v1")
    train_settings, algo_settings = split_settings("dqn", "CartPole-v1", {
        "net_arch": "64,64", "gamma": "0.98", "double": "true", "learning_starts": "1e3", "stop_at_reward": "475",
        "threads": "2", "max_grad_norm": "null"})
    assert algo_settings["net_arch"] == (64, 64) and algo_settings["gamma"] == 0.98 and algo_settings["double"] is True
    assert algo_settings["learning_starts"] == 1000 and algo_settings["max_grad_norm"] is None
    assert train_settings["stop_at_reward"] == 475.0 and train_settings["threads"] == 2


def test_one_spelling_of_the_log_folder_flag() -> None:
    parser = cli.build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    for name in ("train", "sweep", "board", "pretrain"):
        text = subparsers.choices[name].format_help()
        assert "--log-dir" in text and "--logdir" not in text, name


def test_an_unexpected_error_is_one_line_with_exit_code_1(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def broken(args):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(cli, "_presets", broken)
    assert cli.main(["presets"]) == 1
    assert capsys.readouterr().err == "rlcore: error: RuntimeError: something broke (--debug shows the traceback)\n"


@pytest.mark.parametrize(("values", "message"), [
    ({"envs": ["CartPol-v1"]}, "unknown env 'CartPol-v1'"),
    ({"algos": ["sac"]}, r"sac cannot handle the action space Discrete\(2\)"),
    ({"gamma": 1.5}, r"gamma must be in \[0, 1\], got 1.5"),
    ({"grid": {"learning_rate": [1e-3, -1]}}, r"learning_rate must be in \(0, inf\), got -1.0"),
    ({"seeds": "abc"}, "seeds: 'abc' must be a count >= 1"),
    ({"seed": 7}, "seed in the shared settings: a sweep's seeds are its `seeds:`"),  # both were overwritten silently
    ({"grid": {"seed": [1, 2]}}, "seed in grid: a sweep's seeds are its `seeds:`")])
def test_a_sweeps_trials_are_checked_as_train_checks_them_before_ray_starts(values: dict, message: str,
                                                                             tmp_path: Path) -> None:
    from rlcore.sweep import SweepSpec

    with pytest.raises(Exception, match=message):
        SweepSpec.from_dict({"algos": ["dqn"], "envs": ["CartPole-v1"], **values}).trials(tmp_path)


def test_eval_of_an_agent_trained_on_a_class_asks_for_the_env_flag(tmp_path: Path, capsys) -> None:
    import gymnasium as gym

    class Pole(gym.Wrapper):
        def __init__(self) -> None:
            super().__init__(gym.make("CartPole-v1"))

    agent = rlcore.train("dqn", Pole, total_env_steps=100, learning_starts=50, net_arch=[8], eval_freq=0,
                         progress_bar=False, log_dir=None)
    agent.save(tmp_path / "agent")
    assert cli.main(["eval", str(tmp_path / "agent"), "--episodes", "1"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"the agent in {tmp_path / 'agent'} was trained on an env class or factory; pass --env ID (a registered id, "
        "or module:Id to import the module that registers it)")
    assert cli.main(["eval", str(tmp_path / "agent"), "--episodes", "1", "--env", "CartPole-v1"]) == 0


def test_evaluation_builds_the_env_with_the_training_env_kwargs_unless_told(tmp_path: Path, capsys) -> None:
    """evaluate/eval build the env with the agent's env_kwargs by default; an env that does not take them gets an
    error naming them and the fix, and env_kwargs={} / --env-kwargs '{}' builds it without them."""
    import gymnasium as gym

    agent = rlcore.train("dqn", "CartPole-v1", env_kwargs={"sutton_barto_reward": True}, total_env_steps=100,
                         learning_starts=50, net_arch=[8], eval_freq=0, progress_bar=False, log_dir=None)
    assert agent.evaluate(1)["mean_reward"] <= 0  # Sutton and Barto's reward: 0 a step, -1 at the fall
    plain = lambda: gym.make("CartPole-v1")  # noqa: E731  (a factory that takes no keyword arguments)
    with pytest.raises(TypeError, match=r"does not take the env_kwargs \{'sutton_barto_reward': True\} this agent "
                                        r"trained with .*; pass env_kwargs=\{\}"):
        agent.evaluate(1, env=plain)
    assert agent.evaluate(1, env=plain, env_kwargs={})["mean_reward"] >= 1
    path = str(agent.save(tmp_path / "agent"))
    assert cli.main(["eval", path, "--episodes", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_reward"] <= 0
    assert cli.main(["eval", path, "--episodes", "1", "--env-kwargs", '{"sutton_barto_reward": false}']) == 0
    assert json.loads(capsys.readouterr().out)["mean_reward"] >= 1
    for bad, message in (("[1]", "must be a JSON object"), ("{x", "is not JSON")):
        assert cli.main(["eval", path, "--episodes", "1", "--env-kwargs", bad]) == 2
        assert message in capsys.readouterr().err
