"""SPICE and FisherSFT: the greedy machinery over arrays (:mod:`.greedy`: the Fisher term, one greedy window,
the windows' quotas, the proxy schedule) and the selectors (:mod:`.selector`)."""

from tasksift.selectors.spice.greedy import GradientProxy, ProxyRows
from tasksift.selectors.spice.selector import FisherSFTSelector, SpiceSelector

__all__ = ["FisherSFTSelector", "GradientProxy", "ProxyRows", "SpiceSelector"]
