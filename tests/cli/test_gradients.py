"""`tasksift gradients`: fills the cache, resumes, and takes its settings as --feature key=value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tasksift.cli.gradients import gradients_command
from tasksift.features.gradients import gradient_features
from tests.features.gradients.helpers import LLAMA_TEXTS
from tests.train.helpers import tiny_llama


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("grad-llama") / "tiny")


def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.command(name="gradients")(gradients_command)
    app.command(name="noop")(lambda: None)  # two commands, so "gradients" is addressed by name as in cli.py
    return app


def test_cli_fills_the_cache_and_resumes(llama_dir: Path, tmp_path: Path) -> None:
    records = tmp_path / "pool.jsonl"
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in LLAMA_TEXTS), encoding="utf-8")
    out = tmp_path / "g.npy"
    args = ["gradients", "--in", str(records), "--model", str(llama_dir), "--feature", "proj_dim=16",
            "--feature", "shard_size=2", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    runner = CliRunner()
    first = runner.invoke(cli_app(), args)
    assert first.exit_code == 0, first.output
    assert "3 shards computed, 0 reused" in first.output
    assert np.load(out).shape == (5, 16)
    again = runner.invoke(cli_app(), args)
    assert again.exit_code == 0 and "0 shards computed, 3 reused" in again.output
    # the command's settings are the Python API's: the same cache entry
    python = gradient_features(LLAMA_TEXTS, model=llama_dir, proj_dim=16, shard_size=2, cache_dir=tmp_path / "cache",
                               progress=False)
    assert python.n_computed == 0
    np.testing.assert_array_equal(python.matrix(), np.load(out))


@pytest.mark.parametrize(("feature", "needles"), [
    ("precondition=adam", ["warm-up"]),
    ("depth=3", ["no parameter 'depth'"]),
    ("proxy_lr=0.1", ["no parameter 'proxy_lr'"]),
    ("proj_dim=1.5", ["proj_dim='1.5'", "whole number"]),
    ("projection=sparse", ["projection='sparse'", "rademacher, gaussian"]),
    ("lora_r", ["is not key=value"]),
])
def test_bad_feature_settings_are_one_line_errors(tmp_path: Path, feature: str, needles: list[str]) -> None:
    records = tmp_path / "pool.jsonl"
    records.write_text(json.dumps({"text": "a"}) + "\n", encoding="utf-8")
    bad = CliRunner().invoke(cli_app(), ["gradients", "--in", str(records), "--feature", feature])
    assert bad.exit_code == 2
    assert all(needle in bad.output for needle in needles), bad.output


def test_target_modules_name_the_layers(llama_dir: Path, tmp_path: Path) -> None:
    records = tmp_path / "pool.jsonl"
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in LLAMA_TEXTS), encoding="utf-8")
    args = ["gradients", "--in", str(records), "--model", str(llama_dir), "--feature", "params=linear",
            "--target-module", "o_proj", "--feature", "proj_dim=8", "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(cli_app(), args)
    assert result.exit_code == 0 and "1 shards computed" in result.output, result.output
    python = gradient_features(LLAMA_TEXTS, model=llama_dir, params="linear", target_modules=["o_proj"], proj_dim=8,
                               cache_dir=tmp_path / "cache", progress=False)
    assert python.n_computed == 0
