"""Search: the Simulator protocol and its adapters, an array-based MCTS tree, and the MCTS driver."""

from rlcore.search.mcts import MCTS, MCTSConfig
from rlcore.search.simulator import NativeSimulator, Simulator, SnapshotError, make_simulator

__all__ = ["MCTS", "MCTSConfig", "NativeSimulator", "Simulator", "SnapshotError", "make_simulator"]
