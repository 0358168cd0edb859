"""``--device``: the one validation path, auto, the GPU checks, autocast and the engine check.

GPU tests at the end skip where torch sees no CUDA device.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tasksift.util import device as device_module
from tasksift.util.device import (
    DEVICE_FORMS,
    autocast,
    check_local,
    device_info,
    driver_device,
    engine_device,
    resolve_device,
    uses_bf16,
)
from tasksift.util.errors import InputError

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """Make torch report ``count`` CUDA devices (0: none)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("value", [None, "cpu", " CPU ", torch.device("cpu")])
def test_the_cpu_in_any_spelling_and_the_default(value: object) -> None:
    assert resolve_device(value) == torch.device("cpu")


def test_auto_takes_a_gpu_only_when_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu")
    _gpus(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_cuda_and_cuda_n_name_a_gpu_torch_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 2)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)


@pytest.mark.parametrize("value", ["cuda:x", "tpu", "", "cpu:1", "auto:0", "cuda:", "cuda:-1", "mps", 0, 1.5])
def test_what_is_not_a_device_is_refused_in_one_line(value: object) -> None:
    with pytest.raises(InputError) as err:
        resolve_device(value)
    line = err.value.one_line()
    assert "\n" not in line and line.startswith(f"--device {value!r} is not a device")
    assert DEVICE_FORMS in line


def test_cuda_without_cuda_names_the_option_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 0)
    for value in ("cuda", "cuda:0"):
        with pytest.raises(InputError) as err:
            resolve_device(value)
        line = err.value.one_line()
        assert line.startswith(f"--device {value}: torch sees no CUDA device") and "use --device cpu" in line


def test_a_gpu_number_beyond_those_torch_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 2)
    with pytest.raises(InputError, match=r"--device cuda:2: torch sees 2 CUDA devices \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")


def test_the_option_name_is_the_callers() -> None:
    with pytest.raises(InputError, match="^device 'tpu' is not a device"):
        resolve_device("tpu", option="device")


def test_the_cpu_runs_in_float32_without_autocast() -> None:
    cpu = torch.device("cpu")
    assert not uses_bf16(cpu) and device_info(cpu) == {"device": "cpu"}
    with autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_a_gpu_runs_with_the_local_and_ray_engines_only() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)  # a device object needs no GPU to exist
    for engine in (None, "local", SimpleNamespace(name="local"), "ray", SimpleNamespace(name="ray")):
        check_local(gpu, engine)  # ray: one worker per GPU, its cluster checked when a job starts
    for engine in ("ray", SimpleNamespace(name="dask"), None):
        check_local(cpu, engine)
    for engine in ("dask", SimpleNamespace(name="dask")):
        with pytest.raises(InputError, match="^--device cuda:0 runs the model on a GPU, but the dask engine "
                                             "computes on its workers' CPUs.*--engine local or ray"):
            check_local(gpu, engine)


def test_what_a_job_asks_the_workers_for() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert engine_device("auto", cpu) == engine_device(" Auto", gpu) == "auto"  # the cluster decides
    assert engine_device("cuda:1", gpu) == engine_device(gpu, gpu) == engine_device(None, gpu) == "cuda"
    assert engine_device("cpu", cpu) == engine_device(None, cpu) == engine_device(cpu, cpu) == "cpu"


def test_a_head_node_without_a_gpu_asks_its_ray_workers_for_theirs() -> None:
    cpu = torch.device("cpu")
    # on Ray the model runs on the workers: this process keeps the CPU, the request goes to them as named
    for request in ("cuda", "cuda:1", "auto", " CUDA "):
        assert driver_device(request, "ray") == driver_device(request, SimpleNamespace(name="ray")) == cpu
    assert engine_device("cuda", cpu) == engine_device("cuda:1", cpu) == "cuda"
    assert driver_device("cpu", "ray") == driver_device(None, "ray") == cpu
    with pytest.raises(InputError, match="^--device 'tpu' is not a device"):
        driver_device("tpu", "ray")  # the form is still checked here, before any work
    assert driver_device("cpu", "local") == cpu
    if not torch.cuda.is_available():  # here a GPU must be one torch sees
        with pytest.raises(InputError, match="torch sees no CUDA device here"):
            driver_device("cuda", "local")


def test_torch_is_imported_inside_the_functions_only() -> None:
    """util/ stays light: the module's own top level imports no torch (``TYPE_CHECKING`` aside)."""
    tree = ast.parse(Path(device_module.__file__).read_text(encoding="utf-8"))
    top = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    names = {alias.name for node in top for alias in node.names} | {getattr(node, "module", None) for node in top}
    assert "torch" not in names


# -- on a GPU ---------------------------------------------------------------------------------------------------
@needs_cuda
def test_gpu_cuda_resolves_and_is_described() -> None:
    gpu = resolve_device("cuda")
    assert gpu == torch.device("cuda", 0) == resolve_device("auto")
    info = device_info(gpu)
    assert info["device"] == "cuda:0" and info["name"] == torch.cuda.get_device_name(0)


@needs_cuda
def test_gpu_autocast_is_bfloat16_where_supported() -> None:
    gpu = resolve_device("cuda")
    a = torch.ones(4, 4, device=gpu)
    with autocast(gpu):
        product = a @ a
    assert product.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
