"""Compare two algorithms over seeds on CartPole: a table (mean, IQM, bootstrap CI, steps to a score) and curves.

Run:  python examples/compare_algorithms.py            (about two minutes on one CPU core)
      RLCORE_EXAMPLE_QUICK=1 python examples/compare_algorithms.py   (a few seconds; what CI runs)
The same from the shell:  rlcore bench ppo a2c --env CartPole-v1 --seeds 2 --threshold 475
                  or:     rlcore compare runs/CartPole-v1 --threshold 475 --out curves.png
"""

import os
from pathlib import Path

import rlcore

QUICK = os.environ.get("RLCORE_EXAMPLE_QUICK") == "1"
ALGOS, SEEDS = ("ppo", "a2c"), (0, 1)
STEPS = 8_000 if QUICK else 100_000
THRESHOLD = 150.0 if QUICK else 475.0  # 475 is CartPole-v1's "solved" score

# 1. Train every (algorithm, seed). Each run writes runs/CartPole-v1/<algo>/seed<k>-<time>/ with TensorBoard
#    events; eval/mean_reward is logged every eval_freq env steps (the learning curve compared below).
run_dirs = []
for algo in ALGOS:
    for seed in SEEDS:
        agent = rlcore.train(algo, "CartPole-v1", seed=seed, total_env_steps=STEPS, eval_freq=STEPS // 8,
                             progress_bar=not QUICK)
        run_dirs.append(agent.run_dir)

# 2. Compare: the runs are grouped by (algorithm, env) from their hparams.json; statistics are over seeds.
table = rlcore.compare(run_dirs, metric="eval/mean_reward", threshold=THRESHOLD, out="curves.png")
print(table)  # a markdown table

# 3. The rows are plain dicts, for your own analysis.
for row in table:
    steps = "never" if row["steps_to_threshold"] is None else f"{row['steps_to_threshold']:,.0f} env steps"
    print(f"{row['algo']}: IQM {row['final_iqm']:.1f}, 95% CI [{row['ci_low']:.1f}, {row['ci_high']:.1f}], "
          f"{row['reached']}/{row['seeds']} seeds reached {THRESHOLD:g} (mean: {steps})")

# random play scores about 22 on CartPole; both algorithms must do clearly better, and the plot must exist
assert len(table) == len(ALGOS) and all(row["seeds"] == len(SEEDS) for row in table)
assert all(row["final_mean"] > (60 if QUICK else 300) for row in table), table.rows
assert Path("curves.png").stat().st_size > 10_000
