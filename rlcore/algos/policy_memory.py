"""The memory side of REINFORCE, A2C and PPO with ``memory="lstm"`` or ``"transformer"``.

A :class:`PolicyMemory` belongs to an on-policy algorithm whose policy is a
:class:`~rlcore.policy.MemoryActorCritic`. It carries the training envs' state between ``explore`` calls (reset where
``store`` saw an episode end), stores with each step what training needs to recompute it (the state before the step
and the episode-start flag for the LSTM, the observation window for the Transformer), and cuts the rollout into
minibatches of those stored inputs: whole sequences of ``sequence_length`` steps of one env for the LSTM (trained
from the stored state at each sequence's start, resetting inside where an episode starts), independent windows for
the Transformer. Evaluation and ``Agent.predict`` act through :meth:`PolicyMemory.acting_step` with a state of
their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rlcore.distributions import Distribution
from rlcore.observations import take_rows, to_tensor
from rlcore.policy import MemoryActorCritic

STORED_PREFIX = "memory/"
"""Rollout columns holding the memory's stored inputs are named ``memory/<key>``."""
SEQUENCE_KEYS = (f"{STORED_PREFIX}obs", f"{STORED_PREFIX}episode_start")
"""The LSTM's stored inputs taken for every step of a sequence; the others (its states) at the first step only."""


class PolicyMemory:
    """The training envs' memory of ``policy`` and the stored inputs its training replays.

    Args:
        policy: The memory actor-critic.
        num_envs: Training envs ``N``.
        sequence_length: LSTM training: steps per sequence.
        obs_dtype: The dtype of prepared observations (the Transformer's window stores them).
        autocast: The algorithm's autocast context (bf16 when ``amp="bf16"``).
    """

    def __init__(
        self, policy: MemoryActorCritic, num_envs: int, sequence_length: int, obs_dtype: torch.dtype,
        autocast: Callable[[], torch.autocast],
    ) -> None:
        self.policy = policy
        self.kind = policy.kind
        self.sequence_length = sequence_length
        self.obs_dtype = obs_dtype
        self.autocast = autocast
        self.device = next(policy.parameters()).device
        self.state = self.initial_state(num_envs)
        """The training envs' state (LSTM ``h``, ``c``, or the observation window), carried across steps."""
        self.episode_start = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        """Which training envs start an episode at the next step."""

    def initial_state(self, num_envs: int) -> dict[str, Tensor]:
        """The state of ``num_envs`` envs before their first step."""
        return self.policy.initial_state(num_envs, self.device, self.obs_dtype)

    # --- acting -----------------------------------------------------------------------------
    @torch.no_grad()
    def explore(self, obs: Tensor, distribution: Distribution, generator: torch.Generator,
                action_mask: Tensor | None = None) -> tuple[Tensor, dict]:
        """One step of the training envs' memory on prepared ``obs [N, ...]``: the sample ``[N, ...]`` (among the legal
        actions of ``action_mask`` when given) and the extras to store (``obs``, ``action``, ``log_prob``, ``value``
        and the ``memory/...`` inputs)."""
        with self.autocast():
            params, value, self.state, inputs = self.policy.step(obs, self.state, self.episode_start)
        params, value = params.float(), value.float()
        if action_mask is not None:
            params = distribution.mask(params, action_mask)
        sample, log_prob = distribution.sample_with_log_prob(params, generator)
        if action_mask is not None:
            legal = distribution.first_legal(sample, action_mask)
            sample, log_prob = (sample, log_prob) if legal is sample else (legal, distribution.log_prob(params, legal))
        extras = {"obs": obs, "action": sample, "log_prob": log_prob, "value": value}
        extras.update({f"{STORED_PREFIX}{key}": tensor for key, tensor in inputs.items()})
        return sample, extras

    def values(self, obs: Tensor) -> Tensor:
        """``V`` ``[N]`` of prepared observations ``[N, ...]`` that follow the training envs' current memory."""
        return self._values(obs, self.state, self.episode_start)

    def values_after(self, rows: Tensor) -> Callable[[Tensor], Tensor]:
        """A function ``prepared obs [R, ...] -> V [R]`` for observations that follow the current memory of the
        envs ``rows`` ``[R]``: the memory as it is now (the envs' state moves on before it may be called)."""
        state = {key: take_rows(value, rows) for key, value in self.state.items()}
        return functools.partial(self._values, state=state,
                                 start=torch.zeros(len(rows), dtype=torch.bool, device=self.device))

    @torch.no_grad()
    def _values(self, obs: Tensor, state: dict[str, Tensor], start: Tensor) -> Tensor:
        """``V`` of prepared ``obs`` following the memory ``state`` (``start``: rows that begin an episode)."""
        with self.autocast():
            return self.policy.step(obs, state, start)[1].float()

    @torch.no_grad()
    def acting_step(self, obs: Tensor, state: dict[str, Tensor], episode_start: Tensor
                    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Distribution params ``[N, P]`` and the next state for prepared ``obs [N, ...]`` of envs in ``state``
        (``episode_start`` ``[N]``: rows that begin an episode); the training envs' state is untouched."""
        with self.autocast():
            params, _, state, _ = self.policy.step(obs, state, episode_start)
        return params.float(), state

    # --- collecting -------------------------------------------------------------------------
    def record(self, transition: dict[str, Any], done: Any) -> dict[str, Tensor]:
        """The step's stored inputs (the transition's ``memory/...`` extras); envs that are ``done`` ``[N]`` (ended
        or truncated) start an episode at the next step."""
        self.episode_start = torch.as_tensor(done, device=self.device)
        return {key: value for key, value in transition.items() if key.startswith(STORED_PREFIX)}

    # --- learning ---------------------------------------------------------------------------
    def minibatches(
        self, batch: dict[str, Tensor], batch_size: int, shuffle: bool, generator: torch.Generator, num_envs: int
    ) -> list[dict[str, Any]]:
        """A flattened rollout ``[T*N]`` cut into minibatches whose ``inputs`` are the stored inputs: LSTM
        sequences (``batch_size // sequence_length`` per minibatch, rows in sequence order) or Transformer windows
        (``batch_size`` rows)."""
        if self.kind == "transformer":
            parts = shuffled_parts(batch, batch_size, shuffle, generator)
            for part in parts:
                part["inputs"] = {"window": part["memory/window"], "valid": part["memory/valid"]}
            return parts
        length = self.sequence_length
        steps = batch["advantage"].shape[0] // num_envs
        device = batch["advantage"].device
        # sequence (k, env) covers rows (k * L + i) * N + env, i < L; rows of the flattened [T, N] rollout
        starts = torch.arange(0, steps, length, device=device)
        envs = torch.arange(num_envs, device=device)
        sequence_rows = ((starts.view(-1, 1, 1) + torch.arange(length, device=device).view(1, 1, -1))
                         * num_envs + envs.view(1, -1, 1)).reshape(-1, length)
        count = sequence_rows.shape[0]
        order = torch.randperm(count, generator=generator).to(device) if shuffle else torch.arange(count, device=device)
        parts = []
        for chosen in order.split(max(batch_size // length, 1)):
            chosen_rows = sequence_rows[chosen]
            flat = chosen_rows.reshape(-1)
            part: dict[str, Any] = {key: take_rows(value, flat) for key, value in batch.items()
                                    if not key.startswith(STORED_PREFIX)}
            first = chosen_rows[:, 0]
            part["inputs"] = {
                key[len(STORED_PREFIX):]: take_rows(value, chosen_rows if key in SEQUENCE_KEYS else first)
                for key, value in batch.items() if key.startswith(STORED_PREFIX)}
            parts.append(part)
        return parts

    # --- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"memory_state": self.state, "episode_start": self.episode_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("memory_state") is not None:
            self.state = {key: to_tensor(value, self.device) for key, value in state["memory_state"].items()}
        if "episode_start" in state:
            self.episode_start = state["episode_start"].to(self.device, torch.bool)


def shuffled_parts(
    batch: dict[str, Tensor], batch_size: int, shuffle: bool, generator: torch.Generator
) -> list[dict[str, Tensor]]:
    """Rows ``[R]`` of ``batch`` in minibatches of ``batch_size`` (the last may be shorter), in a random order drawn
    from ``generator`` when ``shuffle``; the batch itself when it fits in one and is not shuffled."""
    rows = batch["advantage"].shape[0]
    if not shuffle and batch_size >= rows:
        return [batch]
    if not shuffle:
        return [{key: take_rows(value, slice(start, start + batch_size)) for key, value in batch.items()}
                for start in range(0, rows, batch_size)]
    order = torch.randperm(rows, generator=generator).to(batch["advantage"].device)
    shuffled = {key: take_rows(value, order) for key, value in batch.items()}  # one gather per field, then views
    return [{key: take_rows(value, slice(start, start + batch_size)) for key, value in shuffled.items()}
            for start in range(0, rows, batch_size)]
