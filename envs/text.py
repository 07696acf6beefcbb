"""TextTopic: read a sentence, name its topic. Observations are sentences as word ids.

Each sentence puts one of 80 nouns (16 per topic: animals, food, vehicles, musical instruments,
clothing) into one of 10 topic-neutral templates ("there is a {} near the house"). Knowing what the
words mean is the whole task: a frozen pretrained sentence encoder separates the topics at once,
while a network that starts from random weights has to learn each noun's topic from rewards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.labelled import LabelledSamplesEnv
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


class TextTopicEnv(LabelledSamplesEnv):
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

    action_meaning = "a topic index"

    def __init__(self, episode_length: int = EPISODE_LENGTH) -> None:
        super().__init__(episode_length)
        self.vocabulary = VOCABULARY
        self.topics = tuple(TOPICS)
        self.observation_space = spaces.Box(0, len(VOCABULARY) - 1, (MAX_WORDS,), np.int64)
        self.action_space = spaces.Discrete(len(TOPICS))
        self._sentences = all_sentences()
        self._encoded = np.stack([encode(sentence) for sentence, _ in self._sentences])

    def num_samples(self) -> int:
        return len(self._sentences)

    def observation(self, index: int) -> np.ndarray:
        return self._encoded[index].copy()

    def label(self, index: int) -> int:
        return self._sentences[index][1]

    def sample_info(self, index: int) -> dict[str, Any]:
        sentence, topic = self._sentences[index]
        return {"sentence": sentence, "topic": topic}
