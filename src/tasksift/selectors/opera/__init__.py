"""The opera selector package."""

from tasksift.selectors.opera.selector import *  # noqa: F403
