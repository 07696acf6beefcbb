"""The ``rlcore`` command: ``rlcore train ALGO ENV``, ``rlcore eval PATH``, ``rlcore train --resume RUN``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import yaml

logger = logging.getLogger("rlcore")


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` -> ``(key, value)`` with the value parsed as YAML (numbers, lists, booleans, null)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"settings are key=value, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlcore", description="Train and evaluate RL agents.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an algorithm on an env (its tuned preset by default)")
    train.add_argument("algo", nargs="?", help="algorithm name, e.g. dqn, q_learning, sarsa")
    train.add_argument("env", nargs="?", help="gymnasium id, e.g. CartPole-v1 or rlcore/Corridor-v0")
    train.add_argument("--steps", type=int, help="total env steps (overrides the preset)")
    train.add_argument("--seed", type=int, help="random seed")
    train.add_argument("--num-envs", type=int, help="parallel sub-envs")
    train.add_argument("--device", help="auto, cpu or cuda")
    train.add_argument("--log-dir", help="root folder of the runs (default: runs)")
    train.add_argument("--run-dir", help="exact run folder (default: <log-dir>/<env>/<algo>/seed<k>-<time>)")
    train.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[],
                       metavar="KEY=VALUE", help="any TrainConfig or algorithm field; repeatable")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = commands.add_parser("eval", help="evaluate a saved agent or run folder")
    evaluate.add_argument("path", help="agent checkpoint folder or run folder")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--env", help="env id (when the agent was trained on a class or factory)")
    evaluate.add_argument("--seed", type=int, default=10_000)

    commands.add_parser("algos", help="list the registered algorithms")
    return parser


def _train(args: argparse.Namespace) -> int:
    from rlcore.api import train
    from rlcore.trainer import Trainer

    overrides: dict[str, Any] = dict(args.settings)
    for flag, key in (("steps", "total_env_steps"), ("seed", "seed"), ("num_envs", "num_envs"),
                      ("device", "device"), ("log_dir", "log_dir")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    if args.no_progress:
        overrides["progress_bar"] = False
    if args.resume:
        trainer = Trainer.resume(args.resume, **overrides)
        agent = trainer.run()
    else:
        if not args.algo or not args.env:
            raise SystemExit("rlcore train needs ALGO and ENV (or --resume RUN)")
        agent = train(args.algo, args.env, run_dir=args.run_dir, **overrides)
    sys.stdout.write(f"run folder: {agent.run_dir}\n")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from rlcore.agent import load

    agent = load(args.path)
    metrics = agent.evaluate(args.episodes, env=args.env, seed=args.seed)
    sys.stdout.write(json.dumps({"algo": agent.name, "env": args.env or agent.env, **metrics}) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rlcore`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        from rlcore.algos.base import ALGORITHMS, get_algo_class

        get_algo_class("dqn")
        sys.stdout.write("\n".join(sorted(ALGORITHMS)) + "\n")
        return 0
    except (ValueError, KeyError, TypeError) as error:
        sys.stderr.write(f"rlcore: error: {error}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
