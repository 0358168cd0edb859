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


def env_bytes(name: str, default: int, *, minimum: int, example: int) -> int:
    """A size in bytes from ``$name``: ``default`` when unset or empty; anything but a whole number of at least
    ``minimum`` is refused in one line naming the variable, its default and an ``example`` value."""
    from tasksift.util.errors import InputError

    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        what = "a positive whole number" if minimum > 0 else "a whole number"
        raise InputError(f"${name}={text!r} is not {what} of bytes",
                         fix=f"unset it (default {default}) or give a number such as {example}")
    return value
