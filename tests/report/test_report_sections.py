"""The report's parts: reasons in words, the composition's field, the nearest target without a recorded one, and
the evaluation and comparison sections with their bar chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tasksift
from tasksift.cli.app import app
from tasksift.report import write_report
from tasksift.report.composition import explained
from tasksift.report.reasons import describe
from tasksift.util.errors import InputError
from tests.conftest import write_jsonl


@pytest.mark.parametrize(("method", "reason", "words"), [
    ("knn", {"target": 2, "similarity": 0.91234, "round": 1}, "a nearest neighbour of target #2 (similarity 0.912)"),
    ("tsds", {"target": 0, "distance": 0.5, "density": 3.0, "probability": 0.25},
     "target #0 sent it the most probability mass: distance 0.5, local density 3"),
    ("less", {"target": 1, "cosine": 0.3, "tasks": {"a": 0.3, "b": 0.1}}, "per task a 0.3, b 0.1"),
    ("spice", {"gain": 0.5, "conflict": 0.1, "cosine": 0.2, "step": 3, "window": 0}, "information gain 0.5 minus"),
    ("harp-c", {"leaf": 4, "parent": 1, "region": 2, "effect": {"loss": -0.02}, "measured": True,
                "estimate": "probe", "leaf_rank": 1, "in_prefix": True}, "leaf 4 (rank 1 by effect, measured"),
    ("dsir", {"log_importance": 2.5, "ngrams": 40}, "log importance weight 2.5 over 40 n-grams"),
    ("random", {"draw": 7}, "random draw #7"),
    ("opera-sp", {"cosine": 0.7, "query": "q1", "query_positives_kept": 2, "query_positives": 3}, "keeps 2 of 3"),
    ("someday", {"x": 1.5, "y": "z"}, "x 1.5, y z"),  # an unknown method: the generic rendering
    ("knn", {"round": 1}, "round 1"),  # a reason missing its sentence's fields: the generic rendering
])
def test_reasons_in_words(method: str, reason: dict, words: str) -> None:
    assert words in describe(method, reason)


def test_explained_variance_prefers_the_field_that_follows_the_vectors() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(["x", "y", "z"], 50)
    x = rng.normal(size=(150, 4)) + np.repeat(np.eye(4)[:3] * 5, 50, axis=0)
    assert explained(x, groups) > 0.8
    assert explained(x, rng.permutation(groups)) < 0.1
    assert explained(x, np.array(["one"] * 150)) == 0.0


@pytest.fixture()
def clustered(tmp_path: Path) -> Path:
    """A pool whose vectors form two clusters that follow ``domain``; ``label`` is noise."""
    rng = np.random.default_rng(1)
    domain = np.arange(80) % 2
    x = (rng.normal(size=(80, 5)) + domain[:, None] * 6).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", x[:4] + 0.01)
    pool = write_jsonl(tmp_path / "pool.jsonl", [
        {"text": f"example number {i}", "label": str(rng.integers(3)), "domain": f"d{domain[i]}"} for i in range(80)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": f"target text {i}"} for i in range(4)])
    out = tmp_path / "run"
    tasksift.select(pool, target, pool_vectors=tmp_path / "x.npy", target_vectors=tmp_path / "q.npy",
                    method="random", budget=10, out=out)
    return out


def test_composition_by_the_field_that_best_explains_the_pool(clustered: Path) -> None:
    page = write_report(clustered).read_text(encoding="utf-8")
    assert "By <b>domain</b>: it explains the most variance" in page
    assert "By <b>label</b>: chosen with --by" in write_report(clustered, by="label").read_text(encoding="utf-8")


def test_a_method_without_a_target_row_gets_the_nearest_target_by_vectors(clustered: Path) -> None:
    page = write_report(clustered).read_text(encoding="utf-8")
    x, q = np.load(clustered.parent / "x.npy"), np.load(clustered.parent / "q.npy")
    import pyarrow.parquet as pq

    first = pq.read_table(clustered / "selection.parquet").column("row")[0].as_py()
    a, b = x[first] / np.linalg.norm(x[first]), q / np.linalg.norm(q, axis=1, keepdims=True)
    nearest = int(np.argmax(b @ a))
    row = re.search(r"<tr><td>1</td>.*?</tr>", page, re.S).group(0)
    assert f"example number {first}</div>" in row and f"target text {nearest}</div>" in row
    assert "random draw #1" in row


def _eval(path: Path, mean: float, task_dir: Path | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    task = {"name": "toy", "dir": str(task_dir)} if task_dir else {"name": "toy"}
    path.joinpath("eval.json").write_text(json.dumps({
        "task": task, "metric": "accuracy", "seeds": [0, 1], "mean": {"accuracy": mean, "answer_loss": 1.2},
        "std": {"accuracy": 0.01, "answer_loss": 0.1}}), encoding="utf-8")


def test_eval_and_compare_folders_give_the_table_and_the_chart(clustered: Path, tmp_path: Path) -> None:
    task = tmp_path / "task"
    _eval(task / "baselines" / "full", 0.7)
    _eval(tmp_path / "ev", 0.6, task_dir=task)
    rows = {name: {"summary": {"accuracy": {"mean": m, "std": 0.02, "n": 2}}, "seeds": [0, 1],
                   "training_examples": [10, 10], "seconds": [3.0, 5.0]}
            for name, m in (("none", 0.4), ("random", 0.5), ("knn", 0.62), ("full", 0.7))}
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "comparison.json").write_text(json.dumps({
        "task": {"name": "toy"}, "budget": "10", "metric": "accuracy", "methods": ["random", "knn"],
        "rows": rows}), encoding="utf-8")
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(clustered), "--out", str(out), "--eval", str(tmp_path / "ev"),
                                      "--compare", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "<td>accuracy</td><td>0.6000</td><td>0.0100</td><td>2</td>" in page
    assert "<td>knn</td><td>2</td><td>0.6200 ± 0.0200</td><td>10</td><td>4</td>" in page
    charts = re.findall(r'<svg id="scores-chart".*?</svg>', page, re.S)
    assert len(charts) == 2
    # the eval's chart: the run (random, highlighted) against the task's full-pool baseline
    assert "<title>full pool: 0.7000</title>" in charts[0] and "<title>random: 0.6000 ± 0.0100</title>" in charts[0]
    # the comparison's chart: every row, with dashed lines at random and the full pool
    assert re.findall(r"<title>([^<:]+):", charts[1]) == [
        "no finetuning", "random", "knn", "full pool", "random", "full pool"]
    assert 'stroke-dasharray="4 3"' in charts[1] and "http://" not in page and "https://" not in page


def test_bad_eval_or_compare_folders_are_one_input_error(clustered: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="eval.json"):
        write_report(clustered, eval_dir=tmp_path / "missing")
    with pytest.raises(InputError, match="comparison.json"):
        write_report(clustered, compare_dir=tmp_path)
    (tmp_path / "comparison.json").write_text(json.dumps({"rows": [1, 2]}), encoding="utf-8")
    with pytest.raises(InputError, match="'rows' is not a JSON object"):
        write_report(clustered, compare_dir=tmp_path)
