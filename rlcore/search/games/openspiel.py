"""OpenSpiel games as search simulators and gymnasium envs (``pip install -e '.[games]'``).

Any OpenSpiel game that is sequential, deterministic (no chance nodes) and of perfect information, with one
player or two zero-sum players, works by name, parameters included:

- ``openspiel/<game>`` is rlcore's env id for it, e.g. ``openspiel/hex(board_size=5)``: ``rlcore train
  alphazero 'openspiel/hex(board_size=5)'``, ``rlcore play mcts --env openspiel/clobber(rows=4,columns=4)``.
  The part after ``openspiel/`` is handed to ``pyspiel.load_game`` as data (it is never imported), so a
  checkpoint that stores the id stays plain data.
- :class:`OpenSpielSimulator` is the :class:`~rlcore.search.simulator.Simulator` (states are ``pyspiel.State``
  objects, never changed in place: :meth:`~OpenSpielSimulator.step` returns a child), with a random
  :meth:`~OpenSpielSimulator.rollout` that plays on one clone in place.
- :class:`OpenSpielEnv` is the gymnasium env, with the conventions of rlcore's board games: the agent plays
  both sides of a two-player game; the reward goes to the player who just moved; ``info`` holds the legal moves
  (``"action_mask"``, ``int8 [A]``) and the player to move (``"to_play"``); an illegal move loses at once
  (reward -1, terminated).

Observations are OpenSpiel's observation tensor for the player to move, in the game's tensor shape, plus (in
two-player games) one plane (or entry) of ones when the second player is to move, since many OpenSpiel tensors
show the board but not whose turn it is: ``float32 [C + 1, H, W]`` for board games (a 2-d tensor gets one
channel first), ``float32 [N + 1]`` for flat ones.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

PREFIX = "openspiel/"
"""rlcore's env ids for OpenSpiel games: ``openspiel/<game string>``."""


def is_openspiel_id(env: object) -> bool:
    """Whether ``env`` is an ``openspiel/<game>`` id."""
    return isinstance(env, str) and env.startswith(PREFIX)


def pyspiel_module() -> Any:
    """The ``pyspiel`` module, or an ImportError that says how to install it."""
    try:
        import pyspiel
    except ImportError as error:  # pragma: no cover - depends on the extra
        raise ImportError("OpenSpiel games need the open-spiel package: pip install -e '.[games]' "
                          "(or pip install open-spiel)") from error
    return pyspiel


def load_game(game: Any) -> Any:
    """A ``pyspiel.Game`` from a game string (``"hex(board_size=5)"``, ``"openspiel/hex(board_size=5)"``) or a
    game, checked to be one search can plan on.

    Raises:
        ValueError: The game is unknown, or has chance nodes, hidden information, simultaneous moves, more
            than two players, or two players that are not zero-sum; the message names the game and the fix.
    """
    pyspiel = pyspiel_module()
    if isinstance(game, str):
        text = game.removeprefix(PREFIX)
        try:
            game = pyspiel.load_game(text)
        except pyspiel.SpielError as error:
            reason = str(error).split(" Available games are:")[0]  # not the list of all ~90 games
            raise ValueError(f"OpenSpiel cannot load the game {text!r}: {reason}. Pass a registered game name with "
                             "optional parameters, e.g. 'hex(board_size=5)' (see pyspiel.registered_names())"
                             ) from error
    kind, name = game.get_type(), game.get_type().short_name
    game_kind = pyspiel.GameType
    problems = []
    if kind.dynamics != game_kind.Dynamics.SEQUENTIAL:
        problems.append("simultaneous moves")
    if kind.chance_mode != game_kind.ChanceMode.DETERMINISTIC:
        problems.append("chance nodes")
    if kind.information != game_kind.Information.PERFECT_INFORMATION:
        problems.append("hidden information")
    if game.num_players() > 2:
        problems.append(f"{game.num_players()} players")
    if game.num_players() == 2 and kind.utility not in (game_kind.Utility.ZERO_SUM, game_kind.Utility.CONSTANT_SUM):
        problems.append(f"{kind.utility.name.lower()} utilities")
    if not kind.provides_observation_tensor:
        problems.append("no observation tensor")
    if problems:
        raise ValueError(f"rlcore's search plans on deterministic, perfect-information games with one player or two "
                         f"zero-sum players; OpenSpiel's {name!r} has {', '.join(problems)}. Pick another game "
                         "(e.g. hex, connect_four, clobber, breakthrough, othello)")
    return game


def observation_shape(game: Any) -> tuple[int, ...]:
    """The shape of :meth:`OpenSpielSimulator.observation` for ``game`` (see the module docstring)."""
    shape = tuple(game.observation_tensor_shape())
    extra = 1 if game.num_players() == 2 else 0
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) == 3:
        return (shape[0] + extra, *shape[1:])
    return (int(np.prod(shape)) + extra,)


class OpenSpielSimulator:
    """A :class:`~rlcore.search.simulator.Simulator` over an OpenSpiel game; states are ``pyspiel.State``.

    Args:
        game: A game string such as ``"hex(board_size=5)"`` (``openspiel/`` in front is allowed) or a
            ``pyspiel.Game``.
    """

    mirror_symmetric = False
    """Whether left-right mirrored positions are equivalent (not known for OpenSpiel games in general)."""

    def __init__(self, game: Any) -> None:
        self.game = load_game(game)
        self.name = str(self.game)
        self.num_players = int(self.game.num_players())
        self.num_actions = int(self.game.num_distinct_actions())
        self.obs_shape = observation_shape(self.game)
        reward_model = self.game.get_type().reward_model
        self._terminal_rewards_only = reward_model == pyspiel_module().GameType.RewardModel.TERMINAL
        self.max_value = float(self.game.max_utility()) if self._terminal_rewards_only else math.inf
        """The largest return of a player from any state (the MCTS solver proves a win by it): the game's
        ``max_utility`` where only the end pays; with rewards along the way ``max_utility`` bounds the whole
        game's total, not what is left of it after some steps, so there is no bound (inf)."""

    # -- the protocol ------------------------------------------------------------------
    def initial_state(self) -> Any:
        """The start position (a new ``pyspiel.State``)."""
        return self.game.new_initial_state()

    def legal_actions(self, state: Any) -> np.ndarray:
        return np.asarray(state.legal_actions(), np.int64)

    def step(self, state: Any, action: int) -> tuple[Any, float, bool]:
        mover = state.current_player()
        child = state.child(int(action))
        done = child.is_terminal()
        if self._terminal_rewards_only and not done:
            return child, 0.0, False
        return child, float(child.rewards()[mover]), done

    def to_play(self, state: Any) -> int:
        return max(int(state.current_player()), 0)  # terminal states (player -4) count as player 0's

    def is_terminal(self, state: Any) -> bool:
        return bool(state.is_terminal())

    def same_state(self, first: Any, second: Any) -> bool:
        """Whether two states are the same position reached by the same moves (deterministic games)."""
        return first is second or first.history() == second.history()

    def rollout(self, state: Any, depth: int, gamma: float, rng: np.random.Generator) -> float:
        """Discounted return, for the player to move at ``state``, of up to ``depth`` uniformly random moves.

        Plays on one clone in place (OpenSpiel's ``apply_action``), drawing uniforms in blocks.
        """
        if state.is_terminal():
            return 0.0
        player, playout = state.current_player(), state.clone()
        uniforms, used = rng.random(64), 0
        total, discount = 0.0, 1.0
        for _ in range(depth):
            if used == 64:
                uniforms, used = rng.random(64), 0
            legal = playout.legal_actions()
            playout.apply_action(legal[int(uniforms[used] * len(legal))])
            used += 1
            if self._terminal_rewards_only:
                if playout.is_terminal():
                    return discount * playout.returns()[player]
            else:
                total += discount * playout.rewards()[player]
                if playout.is_terminal():
                    return total
            discount *= gamma
        return total

    # -- what networks and envs need -----------------------------------------------------
    def observation(self, state: Any) -> np.ndarray:
        """The network input at ``state``: the tensor of the player to move (plus a to-play plane in two-player
        games). ``float32 obs_shape``."""
        player = self.to_play(state)
        tensor = np.asarray(state.observation_tensor(player), np.float32)
        if self.num_players == 1:
            return tensor.reshape(self.obs_shape)
        if len(self.obs_shape) == 3:
            out = np.empty(self.obs_shape, np.float32)
            out[:-1] = tensor.reshape(self.obs_shape[0] - 1, *self.obs_shape[1:])
            out[-1] = player
            return out
        return np.append(tensor, np.float32(player))

    def action_mask(self, state: Any) -> np.ndarray:
        """``int8 [A]``: 1 where the action is legal (all zeros once the game is over)."""
        mask = np.zeros(self.num_actions, np.int8)
        if not state.is_terminal():
            mask[state.legal_actions()] = 1
        return mask

    def action_name(self, state: Any, action: int) -> str:
        """OpenSpiel's name of ``action`` at ``state`` (e.g. ``c3`` in Hex)."""
        return str(state.action_to_string(self.to_play(state), int(action)))

    def snapshot(self, env: gym.Env) -> Any:
        """The state of an :class:`OpenSpielEnv` (states are never changed in place, so no copy is needed)."""
        return env.unwrapped.state


class OpenSpielEnv(gym.Env[np.ndarray, np.int64]):
    """An OpenSpiel game as a gymnasium env (see the module docstring for the conventions).

    Args:
        game: A game string such as ``"hex(board_size=5)"`` or ``"openspiel/hex(board_size=5)"``.
        render_mode: None or ``"ansi"`` (OpenSpiel's text of the position).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 2}

    def __init__(self, game: str = "tic_tac_toe", render_mode: str | None = None) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.simulator = OpenSpielSimulator(game)
        self.observation_space = spaces.Box(-np.inf, np.inf, self.simulator.obs_shape, np.float32)
        self.action_space = spaces.Discrete(self.simulator.num_actions)
        self.state = self.simulator.initial_state()

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self.simulator.action_mask(self.state), "to_play": self.simulator.to_play(self.state)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.state = self.simulator.initial_state()
        return self.simulator.observation(self.state), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.state.is_terminal():
            raise RuntimeError("the game is over; call reset() before step()")
        action = int(action)
        if not 0 <= action < self.simulator.num_actions or action not in self.state.legal_actions():
            return self.simulator.observation(self.state), -1.0, True, False, {**self._info(), "illegal_action": True}
        self.state, reward, done = self.simulator.step(self.state, action)
        return self.simulator.observation(self.state), reward, done, False, self._info()

    def set_state(self, state: Any) -> None:
        """Puts the env in ``state`` (a ``pyspiel.State`` of this game), e.g. to analyse a position."""
        self.state = state.clone()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return str(self.state).rstrip("\n") + "\n"

    def winner(self) -> int | None:
        """The player with the higher return once the game is over; None while it runs or after a draw."""
        if not self.state.is_terminal() or self.simulator.num_players != 2:
            return None
        returns = self.state.returns()
        return None if returns[0] == returns[1] else int(np.argmax(returns))


def make_openspiel_env(env_id: str, **env_kwargs: Any) -> OpenSpielEnv:
    """The env of an ``openspiel/<game>`` id (``env_kwargs``: ``render_mode``)."""
    return OpenSpielEnv(env_id, **env_kwargs)
