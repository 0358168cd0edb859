"""``benchmarks/outofcore.py``: its pool generator, size parser and selection comparison, and (slow) a whole run
at a tiny size, whose memory-mapped and float16 runs must finish and the mapped one select as in memory."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "outofcore.py"
_spec = importlib.util.spec_from_file_location("outofcore", SCRIPT)
assert _spec is not None and _spec.loader is not None
outofcore = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(outofcore)


def test_the_pool_is_written_block_by_block_and_a_shorter_pool_is_its_prefix(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outofcore, "BLOCK", 7)
    outofcore.generate(tmp_path / "long.npy", 30, 5)
    outofcore.generate(tmp_path / "short.npy", 12, 5)
    outofcore.prefix(tmp_path / "long.npy", tmp_path / "cut.npy", 12)
    long, short = np.load(tmp_path / "long.npy"), np.load(tmp_path / "short.npy")
    assert long.shape == (30, 5) and long.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(long, axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(long[:12], short) and np.array_equal(np.load(tmp_path / "cut.npy"), short)


def test_sizes_and_selection_comparisons() -> None:
    assert outofcore.parse_size("1G") == 1 << 30 and outofcore.parse_size("512m") == 512 << 20
    assert outofcore.parse_size("none") is None and outofcore.parse_size("1000") == 1000
    a = {"rows": [1, 2, 3], "weights": [2.0, 1.0, 1.0]}
    b = {"rows": [3, 1, 4], "weights": [1.0, 1.0, 2.0]}
    assert outofcore.overlap(a, a) == 1.0 and outofcore.overlap(a, b) == 0.5
    assert outofcore.same(a, dict(a)) and not outofcore.same(a, b)


@pytest.mark.slow
def test_a_tiny_run_selects_the_same_memory_mapped_as_in_memory(tmp_path: Path) -> None:
    limit = "400M" if os.geteuid() == 0 and (outofcore.CGROUP_ROOT / "cgroup.procs").exists() else "none"
    done = subprocess.run([sys.executable, str(SCRIPT), "--rows", "6000", "--reference-rows", "4000", "--dim", "16",
                           "--targets", "6", "--budget", "2%", "--limit", limit, "--float16", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "outofcore.json").read_text())
    for method in ("knn", "tsds"):
        assert report["runs"][f"{method}/memory-mapped"]["verdict"] == "same as in memory"
        assert "shared with float32" in report["runs"][f"{method}/float16, memory-mapped"]["verdict"]
    assert report["runs"]["tsds/memory-mapped"]["index"]["memory_mapped"]
    assert "| knn | memory-mapped | 6,000 |" in done.stdout
