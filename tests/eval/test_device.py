"""``device=`` in ``evaluate``, ``compare`` and ``train_with_pruning``: the CPU spelled out is the default, the
device is recorded but not part of any key, a device that cannot be used is refused before any work; on a GPU
(skipped without one) every track trains and scores there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tasksift.eval.compare import compare
from tasksift.eval.harness import evaluate
from tasksift.eval.pruning import train_with_pruning
from tasksift.util.errors import InputError
from tests.eval.test_compare import classification_task
from tests.train.helpers import instruction_task, retrieval_task

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")


def _fresh_store(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """A training store of its own, so that the run trains rather than loads a kept training."""
    monkeypatch.setenv("TASKSIFT_CACHE", str(path))


def test_evaluate_on_the_cpu_spelled_out_is_the_default(tmp_path: Path, tiny_llama_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    task = instruction_task(tmp_path)
    common = {"seeds": [0], "model": tiny_llama_dir, "max_steps": 2, "settings": {"batch_size": 2},
              "progress": False}
    _fresh_store(monkeypatch, tmp_path / "store-a")
    default = evaluate(task, "full", out=tmp_path / "a", **common)
    _fresh_store(monkeypatch, tmp_path / "store-b")
    spelled = evaluate(task, "full", out=tmp_path / "b", device="cpu", **common)
    assert spelled["runs"]["0"]["metrics"] == default["runs"]["0"]["metrics"]
    assert spelled["runs"]["0"]["train"]["mean_loss"] == default["runs"]["0"]["train"]["mean_loss"]
    assert spelled["key"] == default["key"]  # the device is not part of the key
    saved = json.loads((tmp_path / "b" / "eval.json").read_text(encoding="utf-8"))
    assert saved["device"] == {"device": "cpu"} and saved["runs"]["0"]["device"] == "cpu"


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:x", "tpu"])
def test_a_device_that_cannot_be_used_is_refused_before_any_work(tmp_path: Path, device: str) -> None:
    task = instruction_task(tmp_path)
    calls = [lambda: evaluate(task, "full", out=tmp_path / "e", device=device, progress=False),
             lambda: compare(task, ["random"], "50%", out=tmp_path / "c", device=device, progress=False),
             lambda: train_with_pruning(task, "none", steps=1, out=tmp_path / "p", device=device, progress=False)]
    for call in calls:
        with pytest.raises(InputError, match=f"^--device '?{device}"):
            call()
    assert not any((tmp_path / name).exists() for name in ("e", "c", "p"))
    assert not (task / "baselines").exists()


def test_compare_records_the_device_with_the_machine(tmp_path: Path) -> None:
    task = classification_task(tmp_path)
    result = compare(task, ["random"], "50%", seeds=1, out=tmp_path / "cmp", max_steps=1, include_full=False,
                     progress=False, device="cpu")
    assert result["machine"]["device"] == "cpu" and "device" not in result["training"]
    saved = json.loads((tmp_path / "cmp" / "random" / "seed-0" / "manifest.json").read_text(encoding="utf-8"))
    assert saved["device"] == {"device": "cpu"}
    # rows finished under one device spelling are kept by a comparison that gives another
    later = compare(task, ["knn"], "50%", seeds=1, out=tmp_path / "cmp", max_steps=1, include_full=False,
                    progress=False)
    assert later["methods"] == ["random", "knn"]


# -- on a GPU ---------------------------------------------------------------------------------------------------
@needs_cuda
def test_gpu_every_track_evaluates_on_the_gpu(tmp_path: Path, tiny_llama_dir: Path) -> None:
    ins = evaluate(instruction_task(tmp_path / "i"), "full", seeds=[0], model=tiny_llama_dir, max_steps=2,
                   out=tmp_path / "ei", device="cuda", progress=False)
    cls = evaluate(classification_task(tmp_path / "c"), "full", seeds=[0], max_steps=2, out=tmp_path / "ec",
                   device="cuda", progress=False)
    ret = evaluate(retrieval_task(tmp_path / "r"), "full", seeds=[0], max_steps=1, settings={"batch_size": "4"},
                   out=tmp_path / "er", device="auto", progress=False)
    for result in (ins, cls, ret):
        assert result["device"]["device"] == "cuda:0" and result["runs"]["0"]["device"] == "cuda:0"
        assert result["score"] is not None and result["runs"]["0"]["train"]["steps"] > 0


@needs_cuda
def test_gpu_retriever_train_records_the_device(tmp_path: Path) -> None:
    summary = train_with_pruning(retrieval_task(tmp_path), "none", steps=1, seeds=1, out=tmp_path / "p",
                                 settings={"batch_size": 4}, device="cuda", progress=False)
    assert summary["machine"]["device"] == "cuda:0"
    run = json.loads((tmp_path / "p" / "none" / "seed-0.json").read_text(encoding="utf-8"))
    assert run["device"] == "cuda:0"
