"""Where the Ray engine's featurization runs, decided from the cluster's nodes (no Ray needed): the CPUs as
before, or one worker per GPU; a GPU the cluster does not have is refused in one line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tasksift.engine.ray.placement import Placement, place, requested_device
from tasksift.util.errors import InputError

CPU_ONLY = [{"CPU": 2.0, "memory": 1e9}]
ONE_BOX = [{"CPU": 16.0, "GPU": 8.0}]  # one machine, 8 GPUs


def plan(device: str, nodes: list[dict[str, float]], *, shards: int = 100, workers: int | None = None,
         cpu_workers: int = 2) -> Placement:
    return place(device, nodes, shards=shards, workers=workers, cpus_per_worker=1, cpu_workers=cpu_workers)


def test_the_cpu_runs_as_before() -> None:
    assert plan("cpu", ONE_BOX, cpu_workers=16) == Placement("cpu", 16, 1, 1, 0)  # GPUs there, not asked for
    assert plan("cpu", CPU_ONLY, shards=1) == Placement("cpu", 1, 1, 1, 0)  # never more actors than shards
    assert place("cpu", CPU_ONLY, shards=9, workers=None, cpus_per_worker=2, cpu_workers=3) == \
        Placement("cpu", 3, 2, 2, 0)


def test_one_worker_per_gpu_with_the_cpus_of_its_node() -> None:
    assert plan("cuda", ONE_BOX) == Placement("cuda", 8, 2, 2, 1)
    assert plan("cuda", ONE_BOX, workers=3) == Placement("cuda", 3, 2, 2, 1)  # --workers caps
    assert plan("cuda", ONE_BOX, workers=20).workers == 8  # and is capped by the GPUs
    assert plan("cuda", ONE_BOX, shards=5).workers == 5
    assert plan("auto", ONE_BOX) == plan("cuda", ONE_BOX)
    # a CPU-only head node does not count; each GPU node gives its workers as many CPUs as the tightest allows
    nodes = [{"CPU": 64.0}, {"CPU": 8.0, "GPU": 1.0}, {"CPU": 6.0, "GPU": 2.0}]
    assert plan("cuda", nodes) == Placement("cuda", 3, 3, 3, 1)
    # a node with fewer CPUs than GPUs: one CPU per worker, and no more workers than fit
    assert plan("cuda", [{"CPU": 2.0, "GPU": 4.0}]) == Placement("cuda", 2, 1, 1, 1)
    assert plan("cuda", [{"CPU": 2.0, "GPU": 2.0}], workers=None) == Placement("cuda", 2, 1, 1, 1)


def test_auto_without_gpus_runs_on_the_cpus() -> None:
    assert plan("auto", CPU_ONLY, cpu_workers=2) == Placement("cpu", 2, 1, 1, 0)


def test_cuda_on_a_cluster_without_gpus_is_refused_in_one_line() -> None:
    with pytest.raises(InputError) as err:
        place("cuda", CPU_ONLY, shards=4, workers=None, cpus_per_worker=1, cpu_workers=2, address="auto")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("--device cuda with the Ray engine, but the cluster at auto has no GPUs")
    assert "--device cpu" in text and "ray start --num-gpus" in text
    with pytest.raises(InputError, match="^--device cuda with the Ray engine, but the cluster Ray is connected to"):
        plan("cuda", [])
    with pytest.raises(InputError, match="GPU nodes have no CPU for a worker"):
        plan("cuda", [{"CPU": 0.0, "GPU": 2.0}])


def test_the_device_a_factory_asks_for() -> None:
    assert requested_device(lambda threads: None) == "cpu"  # a factory that says nothing runs on the CPU
    for value, expected in (("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda"), (torch.device("cuda", 0), "cuda"),
                            ("auto", "auto"), (" CUDA ", "cuda"), (torch.device("cpu"), "cpu")):
        assert requested_device(SimpleNamespace(device=value)) == expected, value
    with pytest.raises(InputError, match="^--device 'tpu' cannot run on the Ray engine's workers"):
        requested_device(SimpleNamespace(device="tpu"))
    with pytest.raises(ValueError, match="device 'mps' must be one of"):
        plan("mps", CPU_ONLY)
