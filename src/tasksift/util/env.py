"""Where tasksift keeps its caches and how many CPU threads it may use."""

from __future__ import annotations

import os
from pathlib import Path

#: environment variable naming the cache root (features, converted models, trainings)
CACHE_ENV = "TASKSIFT_CACHE"


def default_cache_root() -> Path:
    """``$TASKSIFT_CACHE`` if set, else ``~/.cache/tasksift``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "tasksift"


def default_threads() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
