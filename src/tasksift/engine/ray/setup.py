"""What the Ray engine needs first: Ray itself (or one line naming the extra), and the setup of every worker."""

from __future__ import annotations

import os
from typing import Any

from tasksift.util.errors import InputError

_OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def require_ray() -> Any:
    """The ``ray`` module, or an :class:`InputError` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray, which is not installed",
                         fix="pip install 'tasksift[ray]'") from None
    return ray


def worker_setup(threads: int) -> None:
    """What every worker does first: stay offline, use its share of the CPUs."""
    for var in _OFFLINE:
        os.environ.setdefault(var, "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass
