"""What a run tells its user: log lines above the progress bar, the latest evaluation on the bar, the preset and the
steps at the start, a summary at the end; no path pointing nowhere; no SDL noise on eval --video."""

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import rlcore
from rlcore.logger import ProgressBar
from rlcore.report import announce_preset

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_log_lines_go_through_the_bars_console_and_never_onto_the_bar() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160)
    handler = logging.StreamHandler(sys.stderr)  # as logging.basicConfig and the rlcore command make it
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    log = logging.getLogger("rlcore.test_report")
    log.addHandler(handler)
    log.propagate = False
    try:
        bar = ProgressBar(1000, "dqn CartPole-v1", console=console)
        bar.update(100, {"time/fps": 50.0})
        log.warning("a line from the loop")
        bar.update(500, {"eval/mean_reward": 20.0})
        bar.update(600, {"eval/mean_reward": 10.0, "rollout/ep_rew_mean": 9.0})
        bar.update(1024, {})  # a whole last rollout past the total: the bar ends full, not at 1,024/1,000
        bar.close()
        assert handler.stream is sys.stderr  # given back when the bar closed
    finally:
        log.removeHandler(handler)
        log.propagate = True
    lines = [ANSI.sub("", line).split("\r")[-1] for line in buffer.getvalue().split("\n")]
    assert "LOG a line from the loop" in lines  # a line of its own, drawn through the bar's console
    final = [line for line in lines if "steps/s" in line][-1]  # the bar as it was left
    assert "1,024/1,024 steps" in final and "eval 10.0 (best 20.0)" in final and "return 9.0" in final, final


def test_the_preset_line_names_the_preset_or_the_defaults(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="rlcore.report"):
        found = announce_preset("dqn", "CartPole-v1", rlcore.presets.load_preset("dqn", "CartPole-v1"), {"seed": 1,
                                                                                                      "gamma": 0.9})
        missing = announce_preset("dqn", "Acrobot-v1", rlcore.presets.load_preset("dqn", "Acrobot-v1"), {})
    assert found == "preset: dqn on CartPole-v1 from rlcore/presets/dqn.yaml (15 settings; yours override gamma)"
    assert missing == ("preset: none for dqn on Acrobot-v1; using the defaults of dqn and of the training loop "
                       "(`rlcore presets` lists the tuned ones)")
    assert [record.getMessage() for record in caplog.records] == [found, missing]


def test_a_planners_step_rounding_names_no_setting_it_lacks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        rlcore.train("mcts", "FrozenLake-v1", total_env_steps=10, num_envs=4, num_simulations=2, eval_freq=0,
                     progress_bar=False, log_dir=None)
    assert ("steps: total_env_steps=10 is not a multiple of the collection (1 step x 4 envs = 4 env steps): the "
            "run takes 12 env steps") in caplog.text


def test_a_run_announces_its_steps_and_ends_with_a_summary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        agent = rlcore.train("ppo", "CartPole-v1", total_env_steps=300, n_steps=32, num_envs=2, eval_freq=128,
                             eval_episodes=2, progress_bar=False, log_dir=str(tmp_path))
    messages = [record.getMessage() for record in caplog.records]
    assert ("steps: total_env_steps=300 is not a multiple of the rollout (n_steps=32 x 2 envs = 64 env steps): "
            "the run takes 320 env steps") in messages
    assert agent.algo.env_steps == 320
    assert messages.index("preset: ppo on CartPole-v1 from rlcore/presets/ppo.yaml (13 settings; yours override "
                          "eval_freq, n_steps, num_envs, total_env_steps)") < messages.index(
        next(message for message in messages if message.startswith("done: ")))
    summary = messages[-6:]
    assert re.fullmatch(r"done: 320 env steps in [\d.]+ s \([\d,]+ steps/s\)", summary[0]), summary
    assert re.fullmatch(r"evaluation \(2 episodes\): best [\d.]+ at \d+ env steps, final [\d.]+ at 320", summary[1])
    best = agent.run_dir / "best"
    assert (best / "meta.json").exists()
    assert summary[2:5] == [f"best agent: {best}", f"evaluate it: rlcore eval {best} --episodes 10",
                            f"watch it:    rlcore eval {best} --episodes 1 --video ppo-CartPole-v1.mp4"]
    assert summary[5] == f"curves:      rlcore board --log-dir {tmp_path}"


def test_a_board_game_run_suggests_playing_it_not_a_video(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="rlcore.report"):
        agent = rlcore.train("alphazero", "rlcore/TicTacToe-v0", total_env_steps=32, num_simulations=4, channels=8,
                             num_blocks=1, batch_size=16, learning_starts=16, train_every=16, eval_freq=0,
                             progress_bar=False, log_dir=str(tmp_path))
    final = agent.run_dir / "final"
    assert f"play it:     rlcore play {final}" in caplog.messages
    assert not [message for message in caplog.messages if message.startswith("watch it")]


def test_log_dir_none_leaves_no_path_pointing_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="rlcore.report"):
        agent = rlcore.train("dqn", "CartPole-v1", total_env_steps=200, learning_starts=50, net_arch=[8],
                             eval_freq=0, progress_bar=False, log_dir=None)
    assert agent.run_dir is None
    assert list(tmp_path.iterdir()) == []  # no runs/ folder either
    assert "nothing saved (log_dir=None): save the returned agent with agent.save(path)" in caplog.messages


def test_eval_video_prints_no_sdl_noise(tmp_path: Path) -> None:
    pytest.importorskip("imageio")
    rlcore.train("dqn", "CartPole-v1", total_env_steps=200, learning_starts=50, net_arch=[8], eval_freq=0,
                 progress_bar=False, log_dir=None, run_dir=tmp_path / "run")
    env = {key: value for key, value in os.environ.items()
           if key not in ("XDG_RUNTIME_DIR", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER", "DISPLAY")}
    result = subprocess.run([sys.executable, "-m", "rlcore.cli", "eval", str(tmp_path / "run"), "--episodes", "1",
                             "--video", str(tmp_path / "out.gif")], env={**env, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.gif").stat().st_size > 0
    assert "XDG_RUNTIME_DIR" not in result.stderr and "ALSA" not in result.stderr, result.stderr


def test_a_runs_bar_updates_at_its_redraw_rate_and_ends_at_the_last_step_and_evaluation(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The trainer hands the bar values only when it would redraw (a single env steps thousands of times a second),
    an evaluation's result at once, and the last step always."""
    from rlcore.callbacks import Callback

    updates: list[tuple[int, dict[str, float]]] = []
    original = ProgressBar.update

    def recording_update(self: ProgressBar, env_steps: int, metrics: dict[str, float]) -> None:
        updates.append((env_steps, dict(metrics)))
        original(self, env_steps, metrics)

    class IterationSteps(Callback):
        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_iteration(self, trainer, metrics):  # noqa: ANN001, ANN201
            self.steps.append(trainer.env_steps)

    monkeypatch.setattr(ProgressBar, "update", recording_update)
    iterations = IterationSteps()
    rlcore.train("dqn", "CartPole-v1", total_env_steps=3_000, eval_freq=1_000, eval_episodes=2, seed=0,
                 learning_starts=10_000, num_envs=1, train_freq=1, progress_bar=True, log_dir=str(tmp_path),
                 checkpoint_freq=0, callbacks=[iterations])
    assert len(iterations.steps) == 3_000  # one env step an iteration
    assert updates[-1][0] == iterations.steps[-1] == 3_000  # the last step, whatever the clock
    # not one per iteration: 10 a second (no learning: the run takes seconds, under 150 s however loaded)
    assert len(updates) < len(iterations.steps) // 2
    evaluations = [metrics for _, metrics in updates if "eval/mean_reward" in metrics]
    assert len(evaluations) >= 3 and "rollout/ep_rew_mean" in updates[-1][1]


def test_the_bar_shows_the_final_evaluation_and_a_resumed_runs_best(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path) -> None:
    from rlcore.trainer import Trainer

    first_bests: list[float | None] = []
    updates: list[dict[str, float]] = []
    original_init, original_update = ProgressBar.__init__, ProgressBar.update

    def recording_init(self: ProgressBar, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        original_init(self, *args, **kwargs)
        first_bests.append(self.best_eval)

    def recording_update(self: ProgressBar, env_steps: int, metrics: dict[str, float]) -> None:
        updates.append(dict(metrics))
        original_update(self, env_steps, metrics)

    monkeypatch.setattr(ProgressBar, "__init__", recording_init)
    monkeypatch.setattr(ProgressBar, "update", recording_update)
    trainer = Trainer("q_learning", "FrozenLake-v1", rlcore.TrainConfig(
        total_env_steps=1_500, eval_freq=1_000, eval_episodes=5, progress_bar=True, log_dir=str(tmp_path)))
    trainer.run()
    assert [h["env_steps"] for h in trainer.history] == [1_000, 1_500]  # the last one by finish()
    final = {key: value for key, value in trainer.history[-1].items() if key.startswith("eval/")}
    assert len(final) > 1 and {key: updates[-1].get(key) for key in final} == final  # the evaluation's own metrics
    resumed = Trainer.resume(trainer.run_dir, total_env_steps=2_000)
    resumed.run()
    assert first_bests == [None, max(h["eval/mean_reward"] for h in trainer.history)]  # the first run's best


def test_a_run_that_never_learned_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        agent = rlcore.train("dqn", "CartPole-v1", total_env_steps=256, learning_starts=1_000, eval_freq=0,
                             progress_bar=False, log_dir=None)
    assert agent.algo.updates == 0
    assert ("dqn took no learning step: it learns once past learning_starts=1,000 and collected 256 env steps; the "
            "agent is untrained") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rlcore.train("dqn", "CartPole-v1", total_env_steps=200, learning_starts=50, eval_freq=0, progress_bar=False,
                     log_dir=None)
    assert "took no learning step" not in caplog.text
    with caplog.at_level(logging.WARNING):  # self-play learns by positions and train_every: not this warning's
        rlcore.train("alphazero", "rlcore/TicTacToe-v0", total_env_steps=32, eval_freq=0, progress_bar=False,
                     log_dir=None)
    assert "took no learning step" not in caplog.text


def test_the_summary_offers_only_commands_that_work(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """It offered a video of envs that cannot render (rlcore eval refused it) and shell commands for runs trained on
    an env class (which the shell cannot name)."""
    from envs.memory import MemoryEnv

    with caplog.at_level(logging.INFO, logger="rlcore.report"):
        for env in ("rlcore/Memory-v0", MemoryEnv):
            rlcore.train("ppo", env, total_env_steps=64, n_steps=32, num_envs=2, eval_freq=0, progress_bar=False,
                         log_dir=str(tmp_path))
    assert not [message for message in caplog.messages if message.startswith("watch it")]
    evaluate = [message for message in caplog.messages if message.startswith("evaluate it")]
    assert evaluate[0].startswith("evaluate it: rlcore eval ") and evaluate[1].startswith("evaluate it: rlcore.load(")
    assert "env=...).evaluate(10)" in evaluate[1]


def test_a_script_without_logging_sees_the_runs_lines(tmp_path: Path) -> None:
    """Only the shell set up logging: a plain script's run printed no preset, step or summary line."""
    script = ("import logging, rlcore\n"
              f"rlcore.train('ppo', 'CartPole-v1', total_env_steps=300, n_steps=32, num_envs=2, eval_freq=0, "
              f"progress_bar=False, log_dir={str(tmp_path)!r})\n"
              "assert logging.getLogger('rlcore').handlers == [] and logging.getLogger('rlcore').level == 0\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    for line in ("preset: ppo on CartPole-v1", "steps: total_env_steps=300", "done: 320 env steps", "final agent: "):
        assert line in result.stderr, result.stderr
