import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tasksift
from tasksift.cli.app import app
from tasksift.report import write_report
from tasksift.util.errors import InputError
from tests.conftest import write_jsonl


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6)).astype(np.float32)
    q = x[:3] + 0.01
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    pool = write_jsonl(tmp_path / "pool.jsonl",
                       [{"text": f"t{i}", "source": "a" if i < 20 else "b"} for i in range(60)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": f"q{i}"} for i in range(3)])
    out = tmp_path / "run"
    tasksift.select(pool, target, pool_vectors=tmp_path / "x.npy", target_vectors=tmp_path / "q.npy",
                    method="knn", budget=9, metric="l2", out=out)
    return out


def test_report_is_self_contained_with_every_figure(run_dir: Path) -> None:
    path = write_report(run_dir)
    page = path.read_text(encoding="utf-8")
    images = re.findall(r'<img alt="(\w+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [name for name, _ in images] == ["map", "scores", "weights", "composition"]
    assert all(len(data) > 1000 for _, data in images)
    assert "http://" not in page and "https://" not in page
    # knn from the first three pool rows' neighbourhoods: the composition table names both sources.
    assert "<td>a</td>" in page and "<td>b</td>" in page
    assert "No evaluation yet" in page


def test_report_cli_and_bad_run_dir(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").stat().st_size > 10_000
    with pytest.raises(InputError, match="manifest.json"):
        write_report(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no field 'genre'"):
        write_report(run_dir, by="genre")


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    path = write_report(run_dir)
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert re.search(r'<body data-images-ok="4" data-images-total="4"', dom), dom[:500]


def test_training_report_draws_the_quality_curves(tmp_path: Path) -> None:
    import json

    from tasksift.eval.pruning import summarize
    from tasksift.util.io import write_json_atomic

    base = {"metrics": {"ndcg@10": 0.5, "recall@20": 0.6}}
    for name, final in (("none", 0.6), ("dynamic", 0.65)):
        (tmp_path / name).mkdir()
        for seed in range(2):
            curve = [{"step": s, "train_seconds": s / 10, "metrics": {"ndcg@10": 0.5 + (final - 0.5) * s / 20,
                                                                     "recall@20": 0.6}} for s in (0, 10, 20)]
            (tmp_path / name / f"seed-{seed}.json").write_text(json.dumps(
                {"curve": curve, "metrics": curve[-1]["metrics"], "train_seconds": 2.0,
                 "train": {"examples_seen": 80}}), encoding="utf-8")
    summary = {**summarize(tmp_path, ["none", "dynamic"], 2, base), "steps": 20, "task": {"name": "toy"}}
    write_json_atomic(tmp_path / "summary.json", summary)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    images = re.findall(r'<img alt="([\w@]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [name for name, _ in images] == ["ndcg@10", "recall@20"]
    assert all(len(data) > 1000 for _, data in images)
    assert "<td>dynamic</td>" in page and "reaches it at step 20." in page  # 0.575 at 10, 0.65 at 20
