"""TSDS, task-specific data selection by optimal transport, as a package:

- :mod:`~tasksift.selectors.tsds.solver`: the closed form (the level, the plan, lazy prefixes of the lists);
- :mod:`~tasksift.selectors.tsds.density`: the kernel densities, exact and approximate;
- :mod:`~tasksift.selectors.tsds.sampling`: the pool probability and the draws;
- :mod:`~tasksift.selectors.tsds.selector`: :class:`TSDSSelector` (registered as ``tsds``).
"""

from tasksift.selectors.tsds.density import (
    CheckedDensity,
    DensityOracle,
    brute_density,
    radius_density,
    reference_density,
)
from tasksift.selectors.tsds.sampling import PoolProbability, draw_counts, pool_probability
from tasksift.selectors.tsds.selector import TSDSSelector
from tasksift.selectors.tsds.solver import (
    Level,
    plan_masses,
    plan_objective,
    smallest_reaching,
    solve_lazily,
    solve_level,
)

__all__ = [
    "CheckedDensity",
    "DensityOracle",
    "Level",
    "PoolProbability",
    "TSDSSelector",
    "brute_density",
    "draw_counts",
    "plan_masses",
    "plan_objective",
    "pool_probability",
    "radius_density",
    "reference_density",
    "smallest_reaching",
    "solve_lazily",
    "solve_level",
]
