"""Memory for partially observable tasks: an LSTM core and a causal Transformer over recent observations.

Both sit between a per-observation encoder (a :class:`FeatureExtractor`) and the policy heads,
and both keep per-env state across steps that is reset where an episode starts:

- :class:`LSTMCore`: the state is ``(h, c)``, ``[N, hidden]`` each. Acting steps it once per env
  step; training re-runs it over stored sequences from the stored state at each sequence's start
  (:meth:`LSTMCore.sequence`: fused :meth:`LSTMCore.unroll` calls split where episodes start; replay windows
  run the same way from a zero state).
- :class:`TransformerCore`: the state is a window of the last ``K`` observations and a mask of
  which are from the current episode (:func:`push_window`); the output is the causal
  self-attention output at the newest position. Training needs no sequences: each stored step
  keeps its window (:meth:`TransformerCore.sliding` rebuilds every step's window from a replay window).

A state is a ``dict[str, Tensor]`` whose tensors have a leading env dimension ``N``, so it can be
indexed, reset row-wise, stored in a rollout and saved in a checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlcore.observations import map_observation

State = dict[str, Tensor]


def reset_rows(state: State, episode_start: Tensor) -> State:
    """Zeroes every state tensor's rows where ``episode_start`` ``[N]`` is true (a new episode)."""
    keep = (~episode_start.to(torch.bool)).to(next(iter(state.values())).device)
    return {key: value * keep.view(-1, *([1] * (value.dim() - 1))).to(value.dtype) for key, value in state.items()}


def segment_lengths(segment_begins: Tensor) -> Tensor:
    """Steps of each segment ``[S]`` (row-major order) of ``[B, L]`` sequences cut where ``segment_begins`` is true
    (true at every row's step 0)."""
    flat = segment_begins.reshape(-1)
    begins = torch.nonzero(flat).view(-1)
    ends = torch.cat([begins[1:], begins.new_tensor([flat.numel()])])
    return ends - begins


class LSTMCore(nn.Module):
    """A one-layer LSTM whose state is reset at episode starts.

    Args:
        in_dim: Width of the encoded observation ``D``.
        hidden: Width of the state and of the output ``H``.
    """

    def __init__(self, in_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(in_dim, hidden)
        self.out_dim = hidden

    def initial_state(self, num_envs: int, device: torch.device | str = "cpu") -> State:
        """Zero ``h`` and ``c``, ``[N, H]`` each."""
        zeros = torch.zeros(num_envs, self.out_dim, device=device)
        return {"h": zeros, "c": zeros.clone()}

    def step(self, x: Tensor, state: State, episode_start: Tensor) -> tuple[Tensor, State]:
        """One step: ``x [N, D]``, the state before it, ``episode_start [N]`` -> ``(out [N, H], new state)``."""
        state = reset_rows(state, episode_start)
        h, c = self.cell(x, (state["h"], state["c"]))
        return h, {"h": h, "c": c}

    def sequence(self, x: Tensor, state: State, episode_start: Tensor) -> Tensor:
        """Runs over sequences: ``x [B, L, D]``, initial state ``[B, H]``, ``episode_start [B, L]`` -> ``[B, L, H]``.

        The state is reset before every step that starts an episode, so a sequence may contain
        several episodes. The same maths as :meth:`step` repeated ``L`` times (:meth:`sequence_by_step`), in fused
        :meth:`unroll` calls: one per stretch of steps in which no sequence starts an episode, or, when episodes
        start often (short episodes: many stretches), one call over all episode segments padded at their ends
        (:meth:`by_segments`), whichever costs fewer calls without padding more than ``L * B`` extra steps. One
        host read of ``episode_start``.
        """
        starts = episode_start.to(torch.bool)
        segment_begins = starts.clone()
        segment_begins[:, 0] = True
        lengths = segment_lengths(segment_begins)
        stretches = 1 + int(starts[:, 1:].any(dim=0).sum())
        if stretches > 2 and lengths.numel() * int(lengths.max()) <= 2 * starts.numel():
            return self.by_segments(x, state, starts, segment_begins, lengths)
        later_starts = starts[:, 1:].any(dim=0)
        cuts = [0, *(torch.nonzero(later_starts).view(-1) + 1).tolist(), x.shape[1]]
        outputs = []
        for begin, end in zip(cuts[:-1], cuts[1:]):
            out, state = self.unroll(x[:, begin:end], reset_rows(state, starts[:, begin]))
            outputs.append(out)
        return torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]

    def by_segments(self, x: Tensor, state: State, starts: Tensor, segment_begins: Tensor, lengths: Tensor) -> Tensor:
        """:meth:`sequence` as one :meth:`unroll` over every episode segment (``S`` of them, the longest ``M``
        steps), each padded after its end with copies of its last step (an LSTM's outputs never depend on later
        steps, so the padding changes nothing that is kept). A sequence's first segment starts from the given
        state (reset where the sequence starts an episode), the others from zero.

        Args:
            x: ``[B, L, D]``.
            state: ``[B, H]`` each.
            starts: ``episode_start [B, L]`` as booleans.
            segment_begins: ``[B, L]``, true where a segment begins (``starts`` plus every sequence's step 0).
            lengths: ``[S]`` steps per segment, in row-major order (:func:`segment_lengths`).
        """
        batch, length = starts.shape
        flat_begins = torch.nonzero(segment_begins.reshape(-1)).view(-1)  # [S], row-major
        longest = int(lengths.max())
        offsets = torch.arange(longest, device=x.device)
        rows = torch.minimum(flat_begins.view(-1, 1) + offsets, (flat_begins + lengths - 1).view(-1, 1))  # [S, M]
        segments = x.reshape(batch * length, -1)[rows]
        first = flat_begins % length == 0  # exactly one per sequence, in sequence order
        initial = reset_rows(state, starts[:, 0])
        zeros = {key: value.new_zeros(len(flat_begins), value.shape[-1]) for key, value in initial.items()}
        segment_state = {key: zeros[key].index_put((first,), value) for key, value in initial.items()}
        out, _ = self.unroll(segments, segment_state)  # [S, M, H]
        segment_of_step = torch.cumsum(segment_begins.reshape(-1).long(), 0) - 1  # [B * L]
        step_in_segment = torch.arange(batch * length, device=x.device) - flat_begins[segment_of_step]
        return out.reshape(-1, out.shape[-1])[segment_of_step * longest + step_in_segment].view(batch, length, -1)

    def sequence_by_step(self, x: Tensor, state: State, episode_start: Tensor) -> Tensor:
        """:meth:`sequence` one :meth:`step` at a time (the reference it is tested against)."""
        outputs = []
        for index in range(x.shape[1]):
            out, state = self.step(x[:, index], state, episode_start[:, index])
            outputs.append(out)
        return torch.stack(outputs, dim=1)

    def unroll(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Runs over sequences without resets (each one episode's steps), in one fused call.

        ``x [B, T, D]``, initial state ``[B, H]`` each -> ``(out [B, T, H], final state)``. The same maths as
        :meth:`step` repeated ``T`` times (the cell's own weights, through ``torch.lstm``), only faster.
        """
        weights = [self.cell.weight_ih, self.cell.weight_hh, self.cell.bias_ih, self.cell.bias_hh]
        out, h, c = torch.lstm(x, (state["h"].unsqueeze(0), state["c"].unsqueeze(0)), weights, True, 1, 0.0,
                               self.training, False, True)
        return out, {"h": h.squeeze(0), "c": c.squeeze(0)}


class TransformerCore(nn.Module):
    """A causal Transformer encoder over the last ``context`` encoded observations of each env.

    Positions get a learned embedding (position 0 is the oldest); attention is causal and masks
    out positions from before the current episode. The output is the newest position's.

    Args:
        in_dim: Width of the encoded observation ``D``.
        context: Window length ``K``.
        d_model: Width inside the Transformer and of the output.
        heads: Attention heads.
        layers: Encoder layers.
    """

    def __init__(self, in_dim: int, context: int = 16, d_model: int = 64, heads: int = 4, layers: int = 1) -> None:
        super().__init__()
        self.context = context
        self.project = nn.Linear(in_dim, d_model)
        self.positions = nn.Parameter(torch.zeros(context, d_model))
        nn.init.normal_(self.positions, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.register_buffer("causal", torch.triu(torch.ones(context, context, dtype=torch.bool), diagonal=1),
                             persistent=False)
        self.in_dim = in_dim
        self.heads = heads
        self.out_dim = d_model

    def attention_mask(self, valid: Tensor) -> Tensor:
        """``[B * heads, K, K]`` bool, true where attention is blocked: the future, and keys from before the
        episode. Every position may attend to itself, so no row is fully blocked (which would give NaN)."""
        blocked = self.causal.unsqueeze(0) | ~valid.unsqueeze(1)
        blocked = blocked & ~torch.eye(self.context, dtype=torch.bool, device=valid.device)
        return blocked.repeat_interleave(self.heads, dim=0)

    def forward(self, window: Tensor, valid: Tensor) -> Tensor:
        """``window [B, K, D]``, ``valid [B, K]`` (the newest position valid) -> ``[B, d_model]``.

        Only the newest position is kept, so the last encoder layer runs for it alone
        (:func:`newest_position_layer`; the layers below it still run for every position) where
        :meth:`computes_newest_only` holds, else the whole encoder (:meth:`forward_full`): the same maths.
        """
        if not self.computes_newest_only():
            return self.forward_full(window, valid)
        valid = valid.to(torch.bool)
        hidden = self.project(window) + self.positions
        *lower, last = self.encoder.layers
        if lower:
            mask = self.attention_mask(valid)
            for layer in lower:
                hidden = layer(hidden, src_mask=mask)
        return self.norm(newest_position_layer(last, hidden, valid))

    def forward_full(self, window: Tensor, valid: Tensor) -> Tensor:
        """:meth:`forward` through the whole ``nn.TransformerEncoder`` (every position of every layer), keeping the
        newest position: the reference the newest-only path is tested against."""
        hidden = self.project(window) + self.positions
        hidden = self.encoder(hidden, mask=self.attention_mask(valid.to(torch.bool)))
        return self.norm(hidden[:, -1])

    def computes_newest_only(self) -> bool:
        """Whether :func:`newest_position_layer` reproduces the encoder's last layer: a plain
        ``nn.TransformerEncoder`` without a final norm whose last layer is a plain ``nn.TransformerEncoderLayer``
        (no subclasses) with the norm first, batch-first attention with a packed input projection and biases, no
        extra key/value biases, and no dropout while training."""
        if type(self.encoder) is not nn.TransformerEncoder or self.encoder.norm is not None:
            return False
        layer = self.encoder.layers[-1]
        if type(layer) is not nn.TransformerEncoderLayer or not layer.norm_first:
            return False
        attention = layer.self_attn
        packed = (attention._qkv_same_embed_dim and attention.batch_first and attention.in_proj_bias is not None
                  and attention.bias_k is None and not attention.add_zero_attn)
        dropouts = (attention.dropout, layer.dropout.p, layer.dropout1.p, layer.dropout2.p)
        return packed and not (layer.training and any(rate > 0 for rate in dropouts))

    def sliding(self, x: Tensor, first: int, episode_start: Tensor) -> Tensor:
        """Every position's output over a sequence of one env's steps, as :meth:`forward` would give it.

        Position ``t`` sees the window of the last ``K`` positions up to ``t`` of the sequence itself, from its
        episode only: positions before the sequence start, or before the latest ``episode_start`` at or before
        ``t``, are invalid, exactly what acting saw where an episode starts. ``x [B, T, D]``, ``episode_start
        [B, T]`` bool -> ``[B, T - first, d_model]`` for positions ``first .. T - 1``.
        """
        batch, length, width = x.shape
        context = self.context
        padded = torch.cat([x.new_zeros(batch, context - 1, width), x], dim=1)  # [B, T + K - 1, D]
        windows = padded.unfold(1, context, 1)[:, first:].transpose(2, 3)  # [B, T - first, K, D]
        offsets = torch.arange(context, device=x.device) - (context - 1)  # window slot -> position - t
        positions = torch.arange(first, length, device=x.device).unsqueeze(1) + offsets  # [T - first, K]
        # the latest episode start at or before each position (0: the sequence's own start)
        steps = torch.arange(length, device=x.device)
        begins = torch.cummax(torch.where(episode_start.to(torch.bool), steps, 0), dim=1).values  # [B, T]
        valid = positions.unsqueeze(0) >= begins[:, first:].unsqueeze(2)
        count = length - first
        out = self(windows.reshape(batch * count, context, width), valid.reshape(batch * count, context))
        return out.reshape(batch, count, -1)


def newest_position_layer(layer: nn.TransformerEncoderLayer, hidden: Tensor, valid: Tensor) -> Tensor:
    """A norm-first encoder layer's output at the newest position only, with the layer's own parameters.

    ``x + SA(LN1(x))`` then ``+ FF(LN2(.))`` for the newest position: the keys and values come from every
    position, the query, attention row, out-projection, residual and feed-forward from the newest alone. Its
    attention row (the last row of :meth:`TransformerCore.attention_mask`) blocks the keys that are not valid,
    except the newest position itself.

    Args:
        layer: The encoder layer (``norm_first=True``, batch-first packed attention, no dropout in effect: see
            :meth:`TransformerCore.computes_newest_only`); its own activation is used.
        hidden: The layer's input ``[B, K, d_model]``.
        valid: ``[B, K]`` bool, the positions of the current episode.

    Returns:
        ``[B, d_model]``: what the layer gives at position ``K - 1``.
    """
    attention = layer.self_attn
    batch, context, width = hidden.shape
    heads = attention.num_heads
    normed = layer.norm1(hidden)  # [B, K, d]
    query_weight, key_value_weight = attention.in_proj_weight.split([width, 2 * width])
    query_bias, key_value_bias = attention.in_proj_bias.split([width, 2 * width])
    query = F.linear(normed[:, -1], query_weight, query_bias).view(batch, heads, 1, width // heads)
    key, value = (F.linear(normed, key_value_weight, key_value_bias)  # [B, K, 2d]
                  .view(batch, context, 2, heads, width // heads).permute(2, 0, 3, 1, 4))  # [B, heads, K, d / heads]
    allowed = valid.clone()
    allowed[:, -1] = True
    attended = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed.view(batch, 1, 1, context))
    newest = hidden[:, -1] + attention.out_proj(attended.reshape(batch, width))  # [B, d]
    return newest + layer.linear2(layer.activation(layer.linear1(layer.norm2(newest))))


def make_memory_core(kind: str, in_dim: int, memory_size: int, context: int) -> LSTMCore | TransformerCore:
    """The core of a memory network: an LSTM, or a causal Transformer over ``context`` steps (4 heads when
    ``memory_size`` divides by 4, else 1)."""
    if kind == "lstm":
        return LSTMCore(in_dim, memory_size)
    return TransformerCore(in_dim, context, memory_size, heads=4 if memory_size % 4 == 0 else 1)


def encode_steps(features: nn.Module, obs: Tensor | dict[str, Tensor]) -> Tensor:
    """``[B, T, *obs_shape] -> [B, T, D]`` through a per-observation encoder (a Dict observation: each leaf
    ``[B, T, *leaf_shape]``)."""
    first = next(iter(obs.values())) if isinstance(obs, dict) else obs
    batch, length = first.shape[:2]
    steps = map_observation(lambda value: value.reshape(batch * length, *value.shape[2:]), obs)
    return features(steps).reshape(batch, length, -1)


def initial_memory_state(core: LSTMCore | TransformerCore, obs_shape: tuple[int, ...] | dict[str, tuple[int, ...]],
                         num_envs: int, device: torch.device | str,
                         obs_dtype: torch.dtype | dict[str, torch.dtype]) -> State:
    """The state of ``num_envs`` envs before their first step: zero LSTM states, or an empty observation window
    (``window [N, K, *obs_shape]`` of zeros, a dict of them per leaf for Dict observations, and ``valid [N, K]``
    all False)."""
    if isinstance(core, LSTMCore):
        return core.initial_state(num_envs, device)
    if isinstance(obs_shape, dict):
        window: Tensor | dict[str, Tensor] = {
            key: torch.zeros(num_envs, core.context, *shape, dtype=obs_dtype[key], device=device)  # type: ignore
            for key, shape in obs_shape.items()}
    else:
        window = torch.zeros(num_envs, core.context, *obs_shape, dtype=obs_dtype, device=device)  # type: ignore
    return {"window": window,  # type: ignore[dict-item]
            "valid": torch.zeros(num_envs, core.context, dtype=torch.bool, device=device)}


def push_window(state: State, obs: Tensor | dict[str, Tensor], episode_start: Tensor) -> State:
    """Adds ``obs [N, *obs_shape]`` as the newest of each env's window; envs starting an episode forget the rest."""
    start = episode_start.to(torch.bool).to(state["valid"].device)
    valid = state["valid"] & ~start.unsqueeze(1)
    if isinstance(obs, dict):
        window: Tensor | dict[str, Tensor] = {key: _pushed(state["window"][key], value)  # type: ignore[index]
                                              for key, value in obs.items()}
    else:
        window = _pushed(state["window"], obs)
    valid = torch.cat([valid[:, 1:], torch.ones_like(valid[:, :1])], dim=1)
    return {"window": window, "valid": valid}  # type: ignore[dict-item]


def _pushed(window: Tensor, obs: Tensor) -> Tensor:
    """``window [N, K, ...]`` shifted by one with ``obs [N, ...]`` as its newest entry."""
    return torch.cat([window[:, 1:], obs.unsqueeze(1).to(window.dtype)], dim=1)
