"""The spice selector package."""

from tasksift.selectors.spice.selector import *  # noqa: F403
