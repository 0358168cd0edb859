"""The local engine: searches in this process and imports no Ray."""

from __future__ import annotations

import subprocess
import sys

from tasksift.engine import get_engine
from tasksift.index.searcher import LocalSearch


def test_the_local_engine_searches_in_process() -> None:
    search = get_engine("local").search()
    assert isinstance(search, LocalSearch) and search.info() == {"where": "local"}


def test_the_local_engine_imports_no_ray() -> None:
    code = ("import sys, numpy as np, tasksift\n"
            "x = np.random.default_rng(0).normal(size=(50, 4)).astype('float32')\n"
            "for m in ('knn', 'tsds', 'random'):\n"
            "    tasksift.select(pool_vectors=x, target_vectors=x[:3], method=m, budget=5)\n"
            "from tasksift.engine import get_engine\n"
            "get_engine('local')\n"
            "print(sorted(name for name in sys.modules if name == 'ray' or name.startswith('ray.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
