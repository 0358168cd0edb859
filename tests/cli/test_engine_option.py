"""``--engine`` / ``--address`` on the command line: one-line errors when Ray is missing or misused."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tasksift.cli.app import app
from tests.conftest import write_jsonl

runner = CliRunner()


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": f"pool example {i}"} for i in range(10)])
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))
    np.save(tmp_path / "q.npy", np.ones((1, 4), dtype=np.float32))
    return {"pool": pool, "x": tmp_path / "x.npy", "q": tmp_path / "q.npy", "out": tmp_path / "run"}


def one_line_failure(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["select", "embed", "gradients"])
def test_engine_ray_without_ray_names_the_extra(files, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    args = {"select": ["select", "--pool-vectors", files["x"], "--target-vectors", files["q"], "--method", "knn",
                       "--budget", "2", "--out", files["out"]],
            "embed": ["embed", "--in", files["pool"]],
            "gradients": ["gradients", "--in", files["pool"]]}[command]
    result = runner.invoke(app, [str(a) for a in [*args, "--engine", "ray"]])
    one_line_failure(result, "--engine ray needs Ray", "pip install 'tasksift[ray]'")
    assert not files["out"].exists()


def test_address_without_the_ray_engine_is_refused(files) -> None:
    result = runner.invoke(app, ["embed", "--in", str(files["pool"]), "--address", "auto"])
    one_line_failure(result, "--address", "--engine ray")


def test_unknown_engine_is_refused(files) -> None:
    result = runner.invoke(app, ["embed", "--in", str(files["pool"]), "--engine", "dask"])
    one_line_failure(result, "unknown engine 'dask'")
