"""The tsds selector package."""

from tasksift.selectors.tsds.selector import *  # noqa: F403
