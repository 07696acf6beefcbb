"""Games that search plans on, as :class:`~rlcore.search.simulator.Simulator` objects and gymnasium envs.

- :mod:`rlcore.search.games.openspiel`: any deterministic, perfect-information OpenSpiel game with one
  player or two zero-sum players (``pip install -e '.[games]'``), by name: ``openspiel/hex(board_size=5)``.
"""
