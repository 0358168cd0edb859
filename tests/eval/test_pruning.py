"""``tasksift retriever train``: task subsets, evaluation points, curves and summaries; the command end to end on a
tiny glossary task (slow: it finetunes MiniLM); opera-sp through ``tasksift.select``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from tasksift.cli.app import app
from tasksift.eval.pruning import (
    evaluation_steps,
    markdown_summary,
    mean_curve,
    parse_pruning,
    steps_to_reach,
    subset_task,
    summarize,
)
from tasksift.util.errors import InputError
from tests.train.helpers import classification_task, retrieval_task

runner = CliRunner()


def curve(values: list[float], every: int = 10) -> list[dict]:
    return [{"step": i * every, "train_seconds": float(i), "metrics": {"ndcg@10": v, "recall@20": v}}
            for i, v in enumerate(values)]


def test_evaluation_steps_and_pruning_names() -> None:
    assert evaluation_steps(100, 25) == [25, 50, 75, 100]
    assert evaluation_steps(10, 4) == [4, 8, 10]
    assert evaluation_steps(7, 0) == [7]
    assert parse_pruning("none, dynamic,none") == ["none", "dynamic"]
    with pytest.raises(InputError, match="unknown pruning"):
        parse_pruning("none,sometimes")
    with pytest.raises(InputError, match="at least 1"):
        evaluation_steps(0, 1)


def test_steps_to_reach_and_mean_curves() -> None:
    c = curve([0.5, 0.6, 0.7, 0.65])
    assert steps_to_reach(c, 0.6) == 10
    assert steps_to_reach(c, 0.69) == 20
    assert steps_to_reach(c, 0.8) is None
    mean = mean_curve([{"curve": curve([0.5, 0.6])}, {"curve": curve([0.5, 0.8])}])
    assert [p["step"] for p in mean] == [0, 10]
    assert mean[1]["metrics"]["ndcg@10"] == pytest.approx(0.7)
    assert mean[1]["std"]["ndcg@10"] == pytest.approx(np.std([0.6, 0.8], ddof=1))


def test_summary_reports_the_steps_dynamic_pruning_needs(tmp_path: Path) -> None:
    for name, runs in {"none": ([0.5, 0.6, 0.7], [0.5, 0.62, 0.7]), "dynamic": ([0.5, 0.7, 0.72],
                                                                                  [0.5, 0.66, 0.71])}.items():
        (tmp_path / name).mkdir()
        for seed, values in enumerate(runs):
            c = curve(values)
            record = {"curve": c, "metrics": c[-1]["metrics"], "train_seconds": 2.0,
                      "train": {"examples_seen": 40}, "pruning_info": {"kind": name}}
            (tmp_path / name / f"seed-{seed}.json").write_text(json.dumps(record), encoding="utf-8")
    base = {"metrics": {"ndcg@10": 0.5, "recall@20": 0.5}}
    summary = summarize(tmp_path, ["none", "dynamic"], 2, base)
    reach = summary["dynamic_reaches_none"]
    assert reach["target_ndcg@10"] == pytest.approx(0.7)
    assert reach["dynamic_mean_curve"] == 20  # mean curve: 0.5, 0.68, 0.715
    assert reach["dynamic_per_seed"] == [10, 20]
    assert reach["share_of_none"] == pytest.approx(1.0)
    assert summary["rows"]["none"]["mean"]["ndcg@10"] == pytest.approx(0.7)
    text = markdown_summary(summary)
    assert "| base model (no finetuning) | - | 0.5000" in text
    assert "dynamic pruning (OPERA-DP) | 2 |" in text


def test_subset_keeps_the_relevant_documents() -> None:
    test = SimpleNamespace(queries=[f"t{i}" for i in range(6)], relevant=[{f"d{i}"} for i in range(6)],
                           corpus_ids=[f"d{i}" for i in range(20)], corpus=[f"doc {i}" for i in range(20)])
    queries = ["a", "a", "b", "c", "d"]
    docs = ["1", "2", "3", "4", "5"]
    out = subset_task(queries, docs, test, n_train=2, n_test=3, n_corpus=8, data_seed=0)
    assert len(set(out["queries"])) == 2 and len(out["queries"]) == len(out["documents"])
    if "a" in out["queries"]:
        assert out["queries"].count("a") == 2  # a kept query keeps all its pairs
    assert len(out["test_queries"]) == 3 and len(out["corpus"]) == 8
    assert set().union(*out["relevant"]) <= set(out["corpus_ids"])
    assert out == subset_task(queries, docs, test, n_train=2, n_test=3, n_corpus=8, data_seed=0)
    with pytest.raises(InputError, match="relevant documents"):
        subset_task(queries, docs, test, n_train=None, n_test=None, n_corpus=3)
    with pytest.raises(InputError, match="--train-queries 0 must be at least 1"):
        subset_task(queries, docs, test, n_train=0, n_test=None, n_corpus=None)


def test_the_command_refuses_a_task_that_is_not_retrieval(tmp_path: Path) -> None:
    task = classification_task(tmp_path)
    result = runner.invoke(app, ["retriever", "train", "--task", str(task), "--steps", "2", "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "not a retrieval task" in result.output or "not a retrieval task" in (result.stderr or "")


@pytest.mark.slow
def test_retriever_train_writes_curves_and_resumes(tmp_path: Path) -> None:
    task = retrieval_task(tmp_path)
    out = tmp_path / "out"
    args = ["retriever", "train", "--task", str(task), "--pruning", "none,dynamic", "--steps", "2", "--seeds", "1",
            "--eval-every", "1", "--param", "batch_size=4", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = json.loads((out / "dynamic" / "seed-0.json").read_text(encoding="utf-8"))
    assert [p["step"] for p in run["curve"]] == [0, 1, 2]
    assert run["curve"][0]["metrics"] == json.loads((out / "base.json").read_text(encoding="utf-8"))["metrics"]
    assert set(run["metrics"]) == {"ndcg@10", "recall@10", "recall@20", "recall@100"}
    assert run["train"]["steps"] == 2 and run["settings"]["pruning"] == "dynamic"
    assert run["pruning_info"]["passes"][0]["x"] == 2.0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["rows"]) == {"base", "none", "dynamic"}
    assert "dynamic_mean_curve" in summary["dynamic_reaches_none"]
    assert (out / "summary.md").is_file()
    stamp = (out / "none" / "seed-0.json").stat().st_mtime_ns
    assert runner.invoke(app, args).exit_code == 0  # a finished run is reused, not retrained
    assert (out / "none" / "seed-0.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_opera_sp_through_select(tmp_path: Path) -> None:
    import tasksift

    task = retrieval_task(tmp_path)
    sel = tasksift.select(task / "pool.jsonl", method="opera-sp", budget="50%", out=tmp_path / "run")
    assert len(sel) == 5
    assert list(sel.scores) == sorted(sel.scores, reverse=True)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["opera"]["queries_dropped"] == 5  # one positive per query: half the queries drop out
    assert manifest["features"]["kind"] == "pair embeddings"
