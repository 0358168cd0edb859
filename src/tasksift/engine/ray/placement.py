"""Where the Ray engine's featurization runs: on the cluster's CPUs, or one worker per GPU.

The device a job asks for comes with its factory (its ``device`` attribute; a factory without one runs on the
CPU): ``cpu``, ``cuda`` (each worker on the GPU Ray gives it; a GPU number given to the driver means nothing on
the workers) or ``auto`` (the cluster's GPUs when it has any, else its CPUs). :func:`place` turns that and the
cluster's nodes into a :class:`Placement`: how many actors, what each reserves, the torch threads each uses and
the device each builds its model on (``cuda`` inside an actor is the GPU Ray assigned it, since Ray sets its
``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tasksift.util.errors import InputError

#: the devices a job may ask the Ray engine for
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class Placement:
    """The actors of one featurization: ``workers`` of them, each reserving ``num_cpus`` CPUs and ``num_gpus``
    GPUs, running torch on ``threads`` threads and building its model on ``device`` (``cpu`` or ``cuda``)."""

    device: str
    workers: int
    threads: int
    num_cpus: int
    num_gpus: int

    @property
    def label(self) -> str:
        """How the progress bar names the workers."""
        return f"{self.workers} GPU workers" if self.num_gpus else f"{self.workers} workers"


def requested_device(factory: Any) -> str:
    """The device a job's factory asks for, as one of :data:`DEVICES` (``cuda:N`` and a ``torch.device`` of type
    ``cuda`` are ``cuda``); a factory without a ``device`` attribute runs on the CPU."""
    value = getattr(factory, "device", "cpu")
    text = str(getattr(value, "type", value)).strip().lower().split(":")[0]
    if text not in DEVICES:
        raise InputError(f"--device {value!r} cannot run on the Ray engine's workers",
                         fix="use --device cpu, cuda (one worker per GPU of the cluster) or auto")
    return text


def place(device: str, nodes: Sequence[Mapping[str, Any]], *, shards: int, workers: int | None,
          cpus_per_worker: int, cpu_workers: int, address: str | None = None) -> Placement:
    """The actors for ``shards`` shards on a cluster whose alive nodes have the resources ``nodes`` (``ray.nodes()``'s
    ``Resources``: ``CPU``, ``GPU``).

    On the CPUs (``cpu``, or ``auto`` on a cluster without GPUs): ``cpu_workers`` actors of ``cpus_per_worker``
    CPUs, as before this module existed. On GPUs: one actor per GPU (``workers``, when given, caps it), each
    reserving one GPU and the CPUs its node has per GPU (at least one; fewer actors when a node has fewer CPUs
    than GPUs), so that every actor finds room. Never more actors than shards. ``cuda`` on a cluster without GPUs
    is an :class:`InputError` naming the fix.
    """
    if device not in DEVICES:
        raise ValueError(f"device {device!r} must be one of {', '.join(DEVICES)}")
    gpu_nodes = [(int(node.get("CPU", 0)), int(node.get("GPU", 0))) for node in nodes if int(node.get("GPU", 0)) > 0]
    gpus = sum(g for _, g in gpu_nodes)
    if device == "cuda" and gpus == 0:
        where = f"at {address}" if address else "Ray is connected to"
        raise InputError(f"--device cuda with the Ray engine, but the cluster {where} has no GPUs",
                         fix="use --device cpu (or auto: the GPUs when the cluster has some), or start its nodes "
                             "with their GPUs (ray start --num-gpus N)")
    if device == "cpu" or gpus == 0:
        return Placement("cpu", max(1, min(cpu_workers, shards)), cpus_per_worker, cpus_per_worker, 0)
    threads = max(1, min(c // g for c, g in gpu_nodes))
    room = sum(min(g, c // threads) for c, g in gpu_nodes)
    if room == 0:
        raise InputError("the cluster's GPU nodes have no CPU for a worker",
                         fix="start the GPU nodes with at least one CPU each (ray start --num-cpus N)")
    return Placement("cuda", max(1, min(workers or gpus, room, shards)), threads, threads, 1)
