import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
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
    assert [name for name, _ in images] == ["scores", "weights", "composition"]
    assert all(len(data) > 1000 for _, data in images)
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    # knn from the first three pool rows' neighbourhoods: the composition table names both sources.
    assert "<td>a</td>" in page and "<td>b</td>" in page
    assert "No evaluation yet" in page
    # the map is inline SVG whose points carry their text: 60 pool points, 9 selected, 3 targets
    svg = re.search(r'<svg id="map".*?</svg>', page).group(0)
    assert svg.count("<circle") == 60 + 9 + 3 + 3  # and three legend dots
    assert "<title>selected #1, pool row 0: t0</title>" in svg and "<title>target #2: q2</title>" in svg


def test_each_selected_example_sits_beside_its_target_and_reason(run_dir: Path) -> None:
    page = write_report(run_dir).read_text(encoding="utf-8")
    table = re.search(r'<table id="examples">.*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td><td>(.*?)</td>.*?<div class=\"why\">(.*?)</div>", table, re.S)
    assert len(rows) == 9
    rank, chosen, target, why = rows[0]
    # q = x[:3] + 0.01: pool row t follows target t, at distance 0.01 * sqrt(6)
    assert rank == "1" and '<div class="text">t0</div>' in chosen and '<div class="text">q0</div>' in target
    assert why.startswith("a nearest neighbour of target #0 (distance 0.0245), taken in round 1")
    assert 'class="search" type="search" data-table="examples"' in page


def test_report_cli_and_bad_run_dir(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").stat().st_size > 10_000
    with pytest.raises(InputError, match="manifest.json"):
        write_report(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no field 'genre'"):
        write_report(run_dir, by="genre")


def _dom(url: str, profile: Path) -> str:
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    path = write_report(run_dir)
    dom = _dom(path.as_uri(), tmp_path / "profile")
    assert re.search(r'<body data-images-ok="3" data-images-total="3"', dom), dom[:500]
    # the rendered page holds the selected examples' texts, in the table and on the map's points
    rows = pq.read_table(run_dir / "selection.parquet").column("row").to_pylist()
    texts = [f"t{r}" for r in rows]
    assert all(f'<div class="text">{t}</div>' in dom for t in texts)
    assert f"<title>selected #1, pool row {rows[0]}: {texts[0]}</title>" in dom
    # the search box filters the table: an address ending in #q=WORDS fills it on load
    query = texts[-1]
    dom = _dom(path.as_uri() + f"#q={query}", tmp_path / "profile")
    shown = sum(query in t for t in texts)
    assert re.search(rf'<table id="examples" data-shown="{shown}">', dom), dom[:500]
    assert f"{shown} of 9 rows" in dom and dom.count('style="display: none;"') == 9 - shown


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
