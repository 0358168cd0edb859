"""Fixtures of the benchmark tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread for the smoke runs (``TASKSIFT_THREADS=1``), the thread count restored after."""
    before = torch.get_num_threads()
    monkeypatch.setenv("TASKSIFT_THREADS", "1")
    yield
    torch.set_num_threads(before)


def assert_refuses_without_a_gpu(script: str, device: str, tmp_path: Path) -> None:
    """``benchmarks/<script> --device <device>`` on a machine without CUDA: exit 2, one line on stderr naming
    ``--cpu-smoke``, nothing on stdout, and no results, doc or runs written."""
    results, doc = tmp_path / "r.json", tmp_path / "doc.md"
    done = subprocess.run([sys.executable, str(BENCH / script), "--device", device, "--results", str(results),
                           "--doc", str(doc), "--runs", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: --device ") and "--cpu-smoke" in lines[0]
    assert not results.exists() and not doc.exists() and not (tmp_path / "runs").exists()
