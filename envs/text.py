"""TextTopic: read a sentence, name its topic. Observations are sentences as word ids.

Each sentence puts one of 80 nouns (16 per topic: animals, food, vehicles, musical instruments,
clothing) into one of 10 topic-neutral templates ("there is a {} near the house"). Knowing what the
words mean is the whole task: a frozen pretrained sentence encoder separates the topics at once,
while a network that starts from random weights has to learn each noun's topic from rewards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlcore.backbones.data import TEMPLATES, TOPICS, topic_sentences

all_sentences = topic_sentences
"""Every ``(sentence, topic index)`` of the task (800 of them), in a fixed order."""

PAD = "<pad>"
_TEMPLATE_WORDS = {word for template in TEMPLATES for word in template.split() if word != "{}"}
VOCABULARY: tuple[str, ...] = (PAD, *sorted(_TEMPLATE_WORDS | {noun for nouns in TOPICS.values() for noun in nouns}))
"""Word of each observation id; id 0 is padding."""
MAX_WORDS = 10
"""Observation length: sentences are padded with 0 to this many words."""
EPISODE_LENGTH = 8
TARGET_FRACTION = 0.9
TARGET_RETURN = TARGET_FRACTION * EPISODE_LENGTH
"""The env's target: 90% of the sentences of an episode named correctly (7.2 of 8)."""

_WORD_ID = {word: index for index, word in enumerate(VOCABULARY)}


def encode(sentence: str) -> np.ndarray:
    """A sentence of the task's words -> its observation ``[MAX_WORDS]`` int64 (0-padded)."""
    ids = [_WORD_ID[word] for word in sentence.split()]
    if len(ids) > MAX_WORDS:
        raise ValueError(f"sentence {sentence!r} has more than {MAX_WORDS} words")
    return np.array(ids + [0] * (MAX_WORDS - len(ids)), dtype=np.int64)


def decode(ids: np.ndarray) -> str:
    """An observation ``[MAX_WORDS]`` -> its sentence (padding dropped)."""
    return " ".join(VOCABULARY[int(i)] for i in ids if int(i) != 0)


def write_corpus(path: str | Path) -> Path:
    """Writes every sentence of the task, one per line (a corpus for ``rlcore pretrain bert``)."""
    file = Path(path)
    file.write_text("\n".join(sentence for sentence, _ in all_sentences()) + "\n", encoding="utf-8")
    return file


def write_vocabulary(path: str | Path) -> Path:
    """Writes :data:`VOCABULARY`, one word per line (for ``features_kwargs={"vocabulary": "<that file>"}``)."""
    file = Path(path)
    file.write_text("\n".join(VOCABULARY) + "\n", encoding="utf-8")
    return file


class TextTopicEnv(gym.Env[np.ndarray, np.int64]):
    """Shows ``episode_length`` sentences, one per step; naming a sentence's topic pays 1, else 0.

    Observations are ``Box(0, len(VOCABULARY) - 1, (MAX_WORDS,), int64)``: the words' ids in
    :data:`VOCABULARY`, padded with 0 at the end (``features_kwargs={"vocabulary": list(VOCABULARY)}`` lets the
    BERT extractor read them). Actions are ``Discrete(5)``: the index of the topic in :data:`TOPICS`. Every
    step's sentence is drawn uniformly from the 800 (template, noun) pairs with ``self.np_random``; the episode
    terminates after ``episode_length`` steps. ``info`` holds the ``sentence``, its ``topic``, and after a step
    whether the answer was ``correct``.

    The target is a return of ``0.9 * episode_length`` (:data:`TARGET_RETURN` for the default 8); chance is 0.2
    per step.

    Args:
        episode_length: Sentences per episode (``>= 1``).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, episode_length: int = EPISODE_LENGTH) -> None:
        if not isinstance(episode_length, int | np.integer) or episode_length < 1:
            raise ValueError(f"episode_length must be an integer >= 1, got {episode_length!r}")
        self.episode_length = int(episode_length)
        self.vocabulary = VOCABULARY
        self.topics = tuple(TOPICS)
        self.observation_space = spaces.Box(0, len(VOCABULARY) - 1, (MAX_WORDS,), np.int64)
        self.action_space = spaces.Discrete(len(TOPICS))
        self._sentences = all_sentences()
        self._encoded = np.stack([encode(sentence) for sentence, _ in self._sentences])
        self._current = 0
        self._t = 0

    def _draw(self) -> tuple[np.ndarray, dict[str, Any]]:
        self._current = int(self.np_random.integers(len(self._sentences)))
        sentence, topic = self._sentences[self._current]
        return self._encoded[self._current].copy(), {"sentence": sentence, "topic": topic}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._draw()

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a topic index in [0, {len(TOPICS)}), got {action!r}")
        if self._t >= self.episode_length:
            raise RuntimeError("the episode has ended; call reset() before step()")
        correct = int(action) == self._sentences[self._current][1]
        self._t += 1
        obs, info = self._draw()
        return obs, float(correct), self._t >= self.episode_length, False, {**info, "correct": correct}
