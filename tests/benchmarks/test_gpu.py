"""``benchmarks/gpu.py``: without a GPU it refuses in one line (exit code 2); ``--cpu-smoke`` runs every part on
the CPU at a cut-down size and writes its table (slow: each part starts a process of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "cpu", "tpu"])
def test_without_a_gpu_it_refuses_in_one_line(tmp_path: Path, device: str) -> None:
    done = _run("--device", device, "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu.py: error: ") and "--cpu-smoke" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_cpu_smoke_run_writes_every_part(tmp_path: Path) -> None:
    done = _run("--cpu-smoke", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text(encoding="utf-8"))
    assert report["mode"] == "cpu-smoke" and report["device"] == {"device": "cpu"}
    assert {name: part["status"] for name, part in report["parts"].items()} == dict.fromkeys(
        ("embed", "gradients", "train", "search"), "done")
    parts = [row["part"] for row in report["rows"]]
    for wanted in ("embeddings (MiniLM)", "per-example gradients (MiniLM LoRA, raw)",
                   "per-example gradients (SmolLM2-shape LoRA, response only, raw)",
                   "gradient features (cached path)", "instruction track: LoRA training",
                   "instruction track: option scoring", "knn selection (search on the CPU)",
                   "tsds selection (search on the CPU)"):
        assert wanted in parts
    assert all(row["rate"] > 0 for row in report["rows"])
    table = (tmp_path / "gpu.md").read_text(encoding="utf-8")
    assert table.startswith("# GPU check: cpu (cpu-smoke)") and "| tsds selection" in table
