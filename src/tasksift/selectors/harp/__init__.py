"""HARP's parts, each a small module over arrays (the selectors live in :mod:`tasksift.selectors.harp.selector`).

- :mod:`~tasksift.selectors.harp.hierarchy`: regions -> parents -> leaves by recursive k-means, representative leaves;
- :mod:`~tasksift.selectors.harp.probes`: the probe protocol, the cached runner, the embedding-classifier surrogate;
- :mod:`~tasksift.selectors.harp.lm_probe`: the SmolLM2 + LoRA probe scored by option log-likelihood;
- :mod:`~tasksift.selectors.harp.shrinkage`: bootstrap noise and empirical-Bayes effects;
- :mod:`~tasksift.selectors.harp.envelope`: HARP-C / HARP-E utilities, greedy order, best prefix;
- :mod:`~tasksift.selectors.harp.setup`: builds a selector's probe from records (used by :func:`tasksift.select`).

What the paper publishes and what is our reconstruction is stated in each module and in docs/methods.md.
"""

from tasksift.selectors.harp.selector import *  # noqa: E402,F403
