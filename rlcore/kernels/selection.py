"""The one step that decides whether a kernel runs, and says which path runs and why.

An algorithm that has a kernel calls :func:`choose_kernel` once, when it is built, with everything that can rule the
kernel out: its own switches (``fast_path``, ``amp``, ...) and a subclass's overrides as ``gates``, then the
kernel's own check of the network, the device and the loss (its ``refusal``). The first reason found wins and the
readable autograd reference runs; with none, the kernel is built. Either way one INFO line of the ``rlcore.kernels``
logger names the path and the reason.

A kernel reproduces references by their exact types (a subclass may compute something else), by the algorithm's own
methods and by their code. Each kernel class lists in ``REPRODUCES`` the names of the algorithm's methods whose work
it does instead (e.g. SAC's ``gradient_step``, ``policy_sample``, ``ent_coef``); :func:`override_gates` shuts the
kernel away from a subclass that overrides any of them, so the subclass's own code trains. And ``CHECKED_AGAINST``
holds the :func:`fingerprint` of every reference function (those methods' stock code included, handed over by
:func:`reproduced`) as it was when the kernel was last checked against it (``tests/test_kernels.py``). A reference
whose code was edited since (a loss changed in place, say) no longer matches, so its kernel steps aside and the
edited code trains; the contract test then fails until the kernel is checked again and the new fingerprint recorded.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import io
import logging
import textwrap
import tokenize
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

logger = logging.getLogger("rlcore.kernels")

K = TypeVar("K")


def first_refusal(gates: Iterable[tuple[bool, str]]) -> str | None:
    """The reason of the first gate that is shut (``(True, reason)``), else None."""
    return next((reason for shut, reason in gates if shut), None)


def choose_kernel(
    owner: str, gates: Iterable[tuple[bool, str]], refusal: Callable[[], str | None], build: Callable[[], K]
) -> K | None:
    """The kernel ``build()`` returns when no gate is shut and ``refusal()`` finds nothing, else None.

    Args:
        owner: Who asks (the algorithm's name), for the log line.
        gates: ``(shut, reason)`` pairs, checked in order before ``refusal``.
        refusal: The kernel's own check; returns why it does not apply, or None.
        build: Builds the kernel (called only when it applies).
    """
    reason = first_refusal(gates) or refusal()
    if reason is not None:
        log_reference_path(owner, reason)
        return None
    kernel = build()
    logger.info("%s: kernel path, %s", owner, kernel)
    return kernel


def override_gates(algo: Any, reference: type, names: Iterable[str]) -> list[tuple[bool, str]]:
    """One gate per method name in ``names`` (what a kernel's ``REPRODUCES`` lists): shut, with the reason
    ``"<class> overrides <name>"``, where ``type(algo)`` has another attribute of that name than ``reference``
    (the class whose code the kernel reproduces), i.e. a subclass overrides it and the kernel would not call it."""
    own = type(algo)
    return [(inspect.getattr_static(own, name) is not inspect.getattr_static(reference, name),
             f"{own.__name__} overrides {name}") for name in names]


def reproduced(reference: type, names: Iterable[str]) -> tuple[Any, ...]:
    """``reference``'s methods of these names, for :func:`first_edited` (their code must be the checked one)."""
    return tuple(getattr(reference, name) for name in names)


def log_reference_path(owner: str, reason: str) -> None:
    """The INFO line of an algorithm that trains through autograd, and why (for those without a kernel too)."""
    logger.info("%s: autograd reference path, because %s", owner, reason)


CHECKED_AGAINST: dict[str, str] = {
    "rlcore.algos.ppo.PPOLoss.__init__": "36b69fde2e8ed5ef",
    "rlcore.algos.ppo.PPOLoss.loss": "3795d42f0c8105b0",
    "rlcore.algos.a2c.ActorCriticLoss.__init__": "57fe5d240eced2f2",
    "rlcore.algos.a2c.ActorCriticLoss.loss": "651734c1f470a9c2",
    "rlcore.algos.onpolicy.OnPolicyAlgorithm._sample": "fcea6339ef47e4f7",
    "rlcore.algos.onpolicy.OnPolicyAlgorithm._masked": "429489b36c091cc9",
    "rlcore.algos.onpolicy.OnPolicyAlgorithm.autocast": "375eaa59e13f7583",
    "rlcore.distributions.Categorical.log_prob": "944ef6d8b0d8b670",
    "rlcore.distributions.Categorical.entropy": "61e5e96029dd4324",
    "rlcore.distributions.Categorical.sample_with_log_prob": "e87cdc681489fe4d",
    "rlcore.distributions.DiagGaussian.log_prob": "f39980f867c51347",
    "rlcore.distributions.DiagGaussian.entropy": "a4e5a0a305a95c5d",
    "rlcore.distributions.DiagGaussian.sample": "998ac3528a7c1df2",
    "rlcore.distributions.Distribution.sample_with_log_prob": "6f62a83542403487",
    "rlcore.distributions.StateDependentGaussian.log_prob": "edc398487e3e6ff9",
    "rlcore.distributions.StateDependentGaussian.entropy": "e7d2a75fde6b7c7e",
    "rlcore.distributions.StateDependentGaussian._std": "fc5e8973e5fcc2f7",
    "rlcore.distributions.StateDependentGaussian._split": "2c213d5c450d7de0",
    "rlcore.distributions.state_dependent_std": "470a2a3a87882edd",
    "rlcore.policy.LatentActor.forward": "e448490c994a5198",
    "rlcore.policy.ActorCritic.forward": "ce97226d01c42c55",
    "rlcore.policy.ActorCritic.value": "a555438a47cd0d24",
    "rlcore.nets.base.FlattenExtractor.forward": "5e89959930d6a09e",
    "rlcore.nets.cnn.SmallCNN.forward": "7c4fae7d180775fc",
    "rlcore.nets.cnn.ImageEncoder.prepare": "339fe277c91dd113",
    "rlcore.nets.cnn.FlattenHWC.forward": "aaca9e857b049325",
    "rlcore.policy.QNetwork.forward": "1d4bad380c43bf07",
    "rlcore.nets.base.q_head": "678b2387830b6e6e",
    "rlcore.algos.dqn.DQN.td_loss": "5a1711a5c786ad04",
    "rlcore.algos.dqn.DQN.targets": "6d5db4111792cf08",
    "rlcore.algos.dqn.DQN._td_step": "77ea09f61b75576e",
    "rlcore.algos.dqn.DQN.amp_forward": "a5f150aa533c93a4",
    "rlcore.algos.dqn.DQN.q_values": "aaeb293291b6c76f",
    "rlcore.precision.autocast_forward": "89dfdec4acdc9599",
    "rlcore.algos.dqn.td_targets": "57188c5430b4e08a",
    "rlcore.algos.sac.SAC.gradient_step": "e80cea11c80bf4e7",
    "rlcore.algos.sac.SAC.policy_action": "b90f5a482463bf54",
    "rlcore.algos.sac.SAC.policy_draws": "adce780ac39c9e3a",
    "rlcore.algos.sac.SAC.policy_sample": "ea4760711d86839d",
    "rlcore.algos.sac.SAC.ent_coef": "fa862287e734205e",
    "rlcore.algos.td3.TD3.gradient_step": "499012c67d6160de",
    "rlcore.algos.td3.TD3.policy_action": "dcc6449a238d8b5b",
    "rlcore.algos.off_policy.ContinuousQAlgorithm.amp_forward": "f28cfdadbde79d28",
    "rlcore.nets.continuous.QCritics.forward": "5c4b4d4029ee4add",
    "rlcore.nets.continuous.QCritics.first": "1c8de84cd888a888",
    "rlcore.nets.continuous.SquashedGaussianActor.forward": "c35e445b40a19061",
    "rlcore.nets.continuous.squashed_gaussian": "354456d595eff4e9",
    "rlcore.nets.continuous.StateDependentSquashedActor.forward": "9d322f6e1afd4cba",
    "rlcore.nets.continuous.state_dependent_squashed": "39509d1c1d6ca2ca",
    "rlcore.nets.continuous.DeterministicActor.forward": "7c1fe82d7a5e9b17",
    "rlcore.optim.polyak_update": "f2aaffee4b1d4990",
    "rlcore.nets.muzero.MuZeroNetwork.recurrent_inference": "759d60d57cbde49d",
    "rlcore.nets.muzero.MuZeroNetwork.dynamics_step": "e5a55a1f5016b86a",
    "rlcore.nets.muzero.MuZeroNetwork.predict": "151d37ac904b8d6f",
    "rlcore.nets.muzero.normalize_latent": "acbcec41686e81c6",
    "rlcore.nets.muzero.support_to_scalar": "254c1b23e006718c",
    "rlcore.nets.muzero.unscale_value": "6862b0c09fbbb951",
    "rlcore.algos.muzero.MuZero.reference_model_step": "2231e3f59b34ad94",
    "rlcore.algos.deep_q.masked_q_values": "6076ad6fe849a167",
    "rlcore.normalize.RunningMeanStd.update": "47182862efe75a9e",
    "rlcore.normalize.ObservationNormalizer.update": "7837b5d2dc59d529",
    "rlcore.normalize.ObservationNormalizer.normalize": "1789275fd3aec724",
    "rlcore.normalize.RewardNormalizer.update_and_normalize": "db67b6d7efc206ac",
    "rlcore.normalize.RewardNormalizer.normalize": "6cdae03cb75cdf39",
}
"""The :func:`fingerprint` of every reference a kernel reproduces, as it was when the kernel was last checked
against it (``tests/test_kernels.py`` recomputes them). Each kernel's ``references(...)`` says which apply."""

_SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                   tokenize.ENCODING, tokenize.ENDMARKER}


def reference_name(function: Any) -> str:
    """``module.qualname`` of a function or method, the key of ``CHECKED_AGAINST`` tables."""
    return f"{function.__module__}.{function.__qualname__}"


@functools.cache
def fingerprint(function: Any) -> str | None:
    """A digest of ``function``'s code: its source tokens without the docstring, comments, blank lines and
    indentation (so it is the same on every Python version); None when the source cannot be read. Computed once
    per function object (~2 ms)."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return None
    lines = source.splitlines(keepends=True)
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        del lines[first.lineno - 1 : first.end_lineno]  # the docstring
    tokens = tokenize.generate_tokens(io.StringIO("".join(lines)).readline)
    text = " ".join(token.string for token in tokens if token.type not in _SKIPPED_TOKENS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def first_edited(functions: Iterable[Any], checked_against: Mapping[str, str] = CHECKED_AGAINST) -> str | None:
    """Why the kernel must step aside when one of ``functions`` is not the code it was checked against, else None."""
    for function in functions:
        name = reference_name(function)
        if checked_against.get(name) != fingerprint(function):
            return f"{name} is not the code its kernel was checked against (edited since?)"
    return None
