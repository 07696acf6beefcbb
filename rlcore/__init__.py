"""rlcore: reinforcement learning on PyTorch, gymnasium and TensorBoard.

Public API::

    agent = rlcore.train("dqn", "CartPole-v1", total_env_steps=50_000, seed=0)
    agent.predict(obs); agent.evaluate(10); agent.save("agent/")
    agent = rlcore.load("agent/")
    table = rlcore.compare(["runs/CartPole-v1"], metric="eval/mean_reward", threshold=475)
"""

import rlcore.backbones.extractors  # noqa: F401  (registers the backbone extractors: backbone_cnn, backbone_lstm, bert)
from rlcore.agent import Agent, load
from rlcore.api import train
from rlcore.buffers.replay import ReplayBuffer
from rlcore.callbacks import Callback
from rlcore.checkpoint import CheckpointError
from rlcore.compare import ComparisonTable, compare
from rlcore.env import make_vec_env
from rlcore.trainer import TrainConfig, Trainer

__version__ = "0.1.0"

__all__ = ["Agent", "Callback", "CheckpointError", "ComparisonTable", "ReplayBuffer", "TrainConfig", "Trainer",
           "__version__", "compare", "load", "make_vec_env", "train"]
