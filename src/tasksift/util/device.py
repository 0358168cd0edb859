"""Where the models run: ``--device auto|cpu|cuda|cuda:N`` on the command line, ``device=`` in Python.

:func:`resolve_device` is the one validation path: every command and every API function that loads a model turns
the text it was given into a ``torch.device`` here, before any work, and a value it cannot use is an
:class:`InputError` naming ``--device``, the value and the forms allowed. ``auto`` takes the first GPU when
torch sees one, else the CPU; the default is ``cpu``, so a run gives the same numbers on every machine unless a
GPU is asked for.

The device is a setting of the run, never part of a cache key: features, warm-ups and trainings computed on one
device serve a run on another. What runs differently on a GPU (float16 embeddings, bfloat16 autocast in training
and scoring) is described where it happens and in docs/performance.md, "GPU".

torch is imported inside the functions only, so importing this module stays light.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tasksift.util.errors import InputError

if TYPE_CHECKING:
    import torch

#: the device when none is given
DEFAULT_DEVICE = "cpu"
#: the forms a device may take, for error messages and help texts
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"
_FORM = re.compile(r"(auto|cpu|cuda)(?::(\d+))?")


def _form(value: Any, option: str) -> tuple[str, int | None]:
    """``(kind, number)`` of a device's name (``auto``, ``cpu``, ``cuda``; the number of ``cuda:N``), ``None``
    being :data:`DEFAULT_DEVICE`; anything else refused in one line naming ``option``."""
    import torch

    if value is None:
        value = DEFAULT_DEVICE
    match = _FORM.fullmatch(str(value).strip().lower())
    if not isinstance(value, str | torch.device) or match is None or (match[2] is not None and match[1] != "cuda"):
        raise InputError(f"{option} {value!r} is not a device",
                         fix=f"use {DEVICE_FORMS}, N being the number of a GPU torch sees")
    return match[1], None if match[2] is None else int(match[2])


def resolve_device(value: Any = None, *, option: str = "--device") -> torch.device:
    """The ``torch.device`` that ``value`` names: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, a ``torch.device``, or
    ``None`` (:data:`DEFAULT_DEVICE`). ``cuda`` is the first GPU, ``cuda:0`` as torch writes it.

    Refused, as one :class:`InputError` that names ``option``, the value and the fix: anything else (``tpu``,
    ``cuda:x``, ``cpu:1``), and a GPU torch does not see (``cuda`` on a machine without CUDA, ``cuda:3`` with two
    GPUs).
    """
    import torch

    kind, number = _form(value, option)
    if kind == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"{option} {value}: torch sees no CUDA device here",
                         fix=f"use {option} cpu, or auto (a GPU only when torch sees one)")
    count = torch.cuda.device_count()
    if number is not None and number >= count:
        raise InputError(f"{option} {value}: torch sees {count} CUDA device{'s' if count != 1 else ''} "
                         f"(cuda:0 to cuda:{count - 1})", fix=f"use {option} cuda:N with N below {count}, or auto")
    return torch.device("cuda", number or 0)


def device_info(device: torch.device, requested: Any = None) -> dict[str, Any]:
    """What a manifest or ``eval.json`` records of the device a run used: its name in torch's spelling, the
    GPU's model for a GPU, and what was asked for when that differs (``auto``)."""
    import torch

    out: dict[str, Any] = {"device": str(device)}
    if device.type == "cuda":
        out["name"] = torch.cuda.get_device_name(device)
    if requested is not None and str(requested).strip().lower() != str(device):
        out["requested"] = str(requested)
    return out


def uses_bf16(device: torch.device) -> bool:
    """Whether training and scoring on ``device`` run under bfloat16 autocast: on a GPU that supports it."""
    import torch

    return device.type == "cuda" and torch.cuda.is_bf16_supported()


@contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bfloat16 autocast on a GPU that supports it (:func:`uses_bf16`); on the CPU nothing changes (float32)."""
    import torch

    if not uses_bf16(device):
        yield
        return
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        yield


#: the engines that can run a model on a GPU: ``local`` in this process, ``ray`` on one worker per GPU of the
#: cluster (the Ray engine refuses a GPU its cluster does not have, when it starts a job)
GPU_ENGINES = ("local", "ray")


def check_local(device: torch.device, engine: Any) -> None:
    """Refuse a GPU with an engine (an engine object or its name; ``None``: this process) that cannot run the
    model on one: any but :data:`GPU_ENGINES`."""
    name = engine if isinstance(engine, str) else getattr(engine, "name", "local")
    if device.type != "cpu" and name not in GPU_ENGINES:
        raise InputError(f"--device {device} runs the model on a GPU, but the {name} engine computes on its "
                         "workers' CPUs", fix="use --engine local or ray with a GPU, or --device cpu")


def engine_device(requested: Any, resolved: torch.device) -> str:
    """What a job asks an engine's workers for (the ``device`` of its factory), from the device ``requested``:
    ``auto`` (the workers' cluster decides: its GPUs when it has some), ``cuda`` for any GPU (each worker on the
    GPU its engine gives it), else ``cpu``; when nothing was requested, from ``resolved``, the model's own
    device. The request is read as named, not as this process resolved it: a head node without a GPU may ask
    its cluster's workers for theirs (:func:`driver_device`)."""
    if requested is not None:
        kind, _ = _form(requested, "--device")
        return "cuda" if kind == "cuda" else kind
    return "cuda" if resolved.type == "cuda" else "cpu"


def driver_device(value: Any, engine: Any, *, option: str = "--device") -> torch.device:
    """Where this process runs the model for a feature job on ``engine`` (an engine or its name). Here:
    :func:`resolve_device`. On the Ray engine the model runs on the workers, so a GPU request (``cuda``,
    ``cuda:N``, ``auto``) is for the cluster's GPUs, which the engine checks when the job starts: this process,
    a head node that may have no GPU, keeps the CPU (only the form of ``value`` is checked here)."""
    import torch

    name = engine if isinstance(engine, str) else getattr(engine, "name", "local")
    if name == "ray":
        _form(value, option)
        return torch.device("cpu")
    return resolve_device(value, option=option)
