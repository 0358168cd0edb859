"""``--device`` on every command that runs a model: a device that cannot be used is one line and exit code 2,
before any work; ``--device cpu`` is the default. The GPU test skips without CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tasksift.cli.app import app
from tests.conftest import write_jsonl

runner = CliRunner()
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    records = write_jsonl(tmp_path / "pool.jsonl", [{"text": f"row {i}"} for i in range(4)])
    return {
        "embed": ["embed", "--in", str(records)],
        "gradients": ["gradients", "--in", str(records)],
        "select": ["select", "--pool", str(records), "--target", str(records), "--out", str(tmp_path / "run")],
        "eval": ["eval", "--task", str(tmp_path / "task"), "--selection", "full"],
        "compare": ["compare", "--task", str(tmp_path / "task")],
        "retriever train": ["retriever", "train", "--task", str(tmp_path / "task")],
    }


@no_cuda
@pytest.mark.parametrize("command", ["embed", "gradients", "select", "eval", "compare", "retriever train"])
@pytest.mark.parametrize(("device", "said"), [
    ("cuda", "--device cuda: torch sees no CUDA device here (use --device cpu, or auto"),
    ("cuda:1", "--device cuda:1: torch sees no CUDA device here"),
    ("cuda:x", "--device 'cuda:x' is not a device (use auto, cpu, cuda or cuda:N"),
    ("tpu", "--device 'tpu' is not a device"),
], ids=["cuda", "cuda:1", "cuda:x", "tpu"])
def test_a_device_that_cannot_be_used_is_one_line(tmp_path: Path, command: str, device: str, said: str) -> None:
    result = runner.invoke(app, [*_commands(tmp_path)[command], "--device", device])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tasksift: error: {said}"), lines
    assert not (tmp_path / "run").exists()


def test_select_records_the_device_in_the_manifest(tmp_path: Path) -> None:
    pool = tmp_path / "x.npy"
    np.save(pool, np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32))
    np.save(tmp_path / "q.npy", np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32))
    outs = {}
    for name, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        out = tmp_path / name
        result = runner.invoke(app, ["select", "--pool-vectors", str(pool), "--target-vectors",
                                     str(tmp_path / "q.npy"), "--method", "knn", "--budget", "5", "--out", str(out),
                                     *extra])
        assert result.exit_code == 0, result.output
        outs[name] = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert outs["default"]["device"] == outs["cpu"]["device"] == {"device": "cpu"}
    assert "device" not in outs["cpu"]["call"]  # where it ran is not what it selects


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_embed_on_the_gpu_fills_the_cpu_cache(tmp_path: Path) -> None:
    records = write_jsonl(tmp_path / "pool.jsonl", [{"text": f"row number {i}"} for i in range(8)])
    args = ["embed", "--in", str(records), "--cache-dir", str(tmp_path / "cache")]
    first = runner.invoke(app, [*args, "--device", "cuda"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, [*args, "--device", "cpu"])
    assert again.exit_code == 0 and "0 shards computed, 1 reused" in again.output


@pytest.mark.parametrize("command", ["embed", "gradients"])
@pytest.mark.parametrize(("device", "asked"), [("cuda", "cuda"), ("cuda:1", "cuda"), ("auto", "auto"),
                                               ("cpu", "cpu")])
def test_on_ray_the_workers_are_asked_for_the_device_as_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              command: str, device: str, asked: str) -> None:
    """A head node without a GPU starts a job for its cluster's GPUs: the workers get the device as named (auto
    too, which this machine alone would resolve to its CPU), and the engine checks the cluster when it starts."""
    from tasksift.util.errors import InputError

    class Recorder:  # an engine named ray that says what the job asks its workers for, and stops
        name = "ray"

        def featurize(self, job: object) -> None:
            raise InputError(f"workers asked for {job.factory.device}")  # type: ignore[attr-defined]

        def close(self) -> None:
            pass

    monkeypatch.setattr(f"tasksift.cli.{command}.get_engine", lambda *args, **kwargs: Recorder())
    result = runner.invoke(app, [*_commands(tmp_path)[command], "--engine", "ray", "--device", device,
                                 "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == f"tasksift: error: workers asked for {asked}"
