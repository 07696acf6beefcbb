"""Hand-written fast paths (kernels), kept apart from the readable references they reproduce.

- :mod:`~rlcore.kernels.mlp`: the plain MLP's forward, backward and acting forward (one implementation);
- :mod:`~rlcore.kernels.cnn`: SmallCNN's im2col forward and backward;
- :mod:`~rlcore.kernels.distributions`: Categorical/Gaussian log-probs, entropies, sampling and their gradients;
- :mod:`~rlcore.kernels.pg_losses`: PPO's and A2C/REINFORCE's losses differentiated in closed form;
- :mod:`~rlcore.kernels.actor_critic`: the policy-gradient step and acting of a stock actor-critic;
- :mod:`~rlcore.kernels.acting`: that actor-critic's collecting step (normalizers, both heads, sampling) compiled;
- :mod:`~rlcore.kernels.td`: DQN's TD step, targets and greedy acting for a stock Q-network;
- :mod:`~rlcore.kernels.optim`: torch's fused Adam and the gradient-norm clip in numpy;
- :mod:`~rlcore.kernels.selection`: the one check that decides whether a kernel runs, and logs why.

Each module's docstring names the reference it reproduces, and ``tests/test_kernels.py`` checks it against that
reference. Algorithms never call a kernel unchosen: :func:`~rlcore.kernels.selection.choose_kernel` decides,
once, whether a kernel covers the case at hand (the device, the network's shape, the stock loss and network rather
than a user's subclass or an edited reference) and falls back to the autograd reference otherwise.
"""
