"""One local Ray cluster (2 CPUs) for every test of the Ray engine, and the engine connected to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="package")
def cluster() -> Iterator[str]:
    """A local Ray cluster for these tests; yields its address."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="package")
def engine(cluster: str) -> Any:
    from tasksift.engine.ray import RayEngine

    return RayEngine(workers=2)  # uses the cluster the fixture connected to
