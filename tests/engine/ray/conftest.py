"""One local Ray cluster (2 CPUs, and 2 GPUs declared as resources only: there is no GPU behind them) for every
test of the Ray engine, and the engine connected to it. A job on the CPU never asks for a GPU, so the declared
ones change nothing for it; the tests of one worker per GPU run CPU feature functions on them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="package")
def cluster() -> Iterator[str]:
    """A local Ray cluster for these tests; yields its address."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="package")
def engine(cluster: str) -> Any:
    from tasksift.engine.ray import RayEngine

    return RayEngine(workers=2)  # uses the cluster the fixture connected to
