"""``benchmarks/harp_gpu.py``: without a GPU it refuses in one line (exit code 2) and writes nothing; the cut-down
task copy; the reading rule on hand-made results; ``--cpu-smoke`` end to end with a tiny Llama on a hand-written
task (slow), stopped by its budget, resumed, and reused."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import harp_gpu  # noqa: E402
from harp import _rank_correlation, summarise  # noqa: E402
from tasksift.eval.tasks import load_task  # noqa: E402
from tests.benchmarks.conftest import assert_refuses_without_a_gpu  # noqa: E402
from tests.train.helpers import instruction_task, tiny_llama  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "cpu"])
def test_without_a_gpu_it_refuses_in_one_line(tmp_path: Path, device: str) -> None:
    assert_refuses_without_a_gpu("harp_gpu.py", device, tmp_path)


def test_the_cut_down_copy_keeps_a_seeded_subset_in_pool_order(tmp_path: Path) -> None:
    task = instruction_task(tmp_path)  # its pool is ../pool.jsonl, 12 rows
    pool = (tmp_path / "pool.jsonl").read_text(encoding="utf-8").splitlines()
    cut = harp_gpu.cut_task(task, tmp_path / "cut", {"pool": 5, "target": 1, "test": 2})
    kept = (cut / "pool.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(kept) == 5 and kept == [row for row in pool if row in kept]  # a subset, in the pool's order
    assert (cut / "test.jsonl").read_text(encoding="utf-8").splitlines() == \
        (task / "test.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    assert len((cut / "target.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    spec = json.loads((cut / "task.json").read_text(encoding="utf-8"))
    assert spec["pool"] == "pool.jsonl" and spec["prompt_template"] == "{instruction}\n{input}\n"
    loaded = load_task(cut)
    assert len(loaded.pool) == 5 and loaded.kind == "instruction"
    stamp = (cut / "pool.jsonl").stat().st_mtime_ns
    harp_gpu.cut_task(task, tmp_path / "cut", {"pool": 5, "target": 1, "test": 2})
    assert (cut / "pool.jsonl").stat().st_mtime_ns == stamp  # the same files: not rewritten


def _results(accuracy: dict[str, list[float]], probes: dict[str, int], signal: bool = True) -> dict[str, Any]:
    seeds = len(accuracy["random"])
    methods = {m: {"runs": {str(s): {"accuracy": a, "answer_loss": 1.0, "probes": probes.get(m, 0)}
                            for s, a in enumerate(accs)}} for m, accs in accuracy.items()}
    out = {"methods": list(harp_gpu.METHODS), "seeds": list(range(seeds)), "runs_dir": "unused",
           "tasks": {"t": {"none": 0.3, "methods": methods}}, "signal": {"t": {"ok": signal}}}
    return summarise(out)


PROBES = {"harp-exhaustive": 30, "harp-c": 4, "harp-e": 4}


def test_the_reading_rule_per_task_and_variant() -> None:
    out = _results({"harp-exhaustive": [0.50, 0.52], "harp-c": [0.50, 0.51], "harp-e": [0.46, 0.47],
                    "random": [0.40, 0.42]}, PROBES)
    v = harp_gpu.verdicts(out)["t"]
    # exhaustive gains +0.10 in each seed; harp-c +0.095 (95%), harp-e +0.055 (55%); 30 / 4 = 7.5x fewer probes
    assert v["claim"] == {"harp-c": "holds", "harp-e": "does not hold"}
    assert v["exhaustive_gains"] == pytest.approx([0.10, 0.10])
    rows = out["tasks"]["t"]["methods"]
    assert rows["harp-c"]["retention"] == pytest.approx(0.95) and rows["harp-e"]["retention"] == pytest.approx(0.55)
    assert rows["harp-c"]["probe_ratio"] == 7.5
    fewer = _results({"harp-exhaustive": [0.50], "harp-c": [0.50], "harp-e": [0.50], "random": [0.40]},
                     {"harp-exhaustive": 30, "harp-c": 5, "harp-e": 5})
    assert harp_gpu.verdicts(fewer)["t"]["claim"] == {"harp-c": "does not hold", "harp-e": "does not hold"}  # 6x


def test_the_claim_is_not_read_without_signal_a_gain_or_every_seed() -> None:
    good = {"harp-exhaustive": [0.50, 0.52], "harp-c": [0.50, 0.52], "harp-e": [0.50, 0.52], "random": [0.40, 0.42]}
    v = harp_gpu.verdicts(_results(good, PROBES, signal=False))["t"]
    assert set(v["claim"].values()) == {"not read"} and "no signal" in v["why"]
    one_loss = {**good, "harp-exhaustive": [0.50, 0.41]}  # beats random in seed 0 only
    v = harp_gpu.verdicts(_results(one_loss, PROBES))["t"]
    assert set(v["claim"].values()) == {"not read"} and "+0.1000, -0.0100" in v["why"]
    missing = _results(good, PROBES)
    del missing["tasks"]["t"]["methods"]["harp-e"]["runs"]["1"]
    v = harp_gpu.verdicts(missing)["t"]
    assert set(v["claim"].values()) == {"not read"} and v["why"].startswith("1 of 2 seeds")


def test_the_rank_correlation_of_leaf_effects_is_none_where_it_means_nothing() -> None:
    import numpy as np

    assert _rank_correlation(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 0.5, 0.2, 0.9])) == pytest.approx(0.8)
    assert _rank_correlation(np.array([0.1, 0.1, 0.1]), np.array([0.0, 0.5, 0.2])) is None  # HARP inferred one value
    assert _rank_correlation(np.array([0.1, 0.2]), np.array([0.2, 0.1])) is None  # under 3 leaves


@pytest.mark.slow
def test_the_cpu_smoke_run_stops_at_its_budget_resumes_and_writes_tables(tmp_path: Path, one_thread: Any) -> None:
    task, lm = instruction_task(tmp_path), tiny_llama(tmp_path / "llama")
    runs, results, doc = tmp_path / "runs", tmp_path / "harp.json", tmp_path / "results.md"
    doc.write_text("# Results\n\n## Another section\n\nits text\n", encoding="utf-8")
    args = ["--cpu-smoke", "--tasks", str(task), "--model", str(lm), "--runs", str(runs), "--results", str(results),
            "--doc", str(doc), "--budget", "50%", "--probe", "leaf_size=3", "--probe", "leaves_per_parent=2"]

    assert harp_gpu.main([*args, "--budget-s", "0"]) == 1  # the probes, one evaluation, then the budget is spent
    partial = json.loads(results.read_text(encoding="utf-8"))
    assert not partial["complete"] and partial["signal"]["fruit"]["leaves"] == 4
    entry = partial["tasks"]["fruit"]
    assert entry["none"] is not None and all(not m["runs"] for m in entry["methods"].values())
    assert "PARTIAL (stopped at the time budget" in doc.read_text(encoding="utf-8")

    assert harp_gpu.main(args) == 0
    out = json.loads(results.read_text(encoding="utf-8"))
    assert out["complete"] and out["mode"] == "cpu-smoke" and out["seeds"] == [0]
    assert out["harp_params"]["leaf_size"] == 3 and out["harp_params"]["probe_steps"] == 1
    methods = out["tasks"]["fruit"]["methods"]
    assert set(methods) == set(harp_gpu.METHODS) and all(m["seeds_done"] == 1 for m in methods.values())
    assert [methods[m]["probes"] for m in harp_gpu.METHODS] == [4, 2, 2, 0]
    assert methods["harp-c"]["probe_ratio"] == 2.0 and methods["harp-c"]["runs"]["0"]["probes_trained_now"] == 0
    assert all(0.0 <= m["runs"]["0"]["accuracy"] <= 1.0 for m in methods.values())
    manifest = json.loads((runs / "fruit" / "harp-c" / "seed-0" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["selected"] == 6 and manifest["device"] == {"device": "cpu"}  # 50% of 12 rows
    assert out["verdicts"]["fruit"]["seeds"] == 1
    text = doc.read_text(encoding="utf-8")
    assert "## Another section\n\nits text" in text and text.count(harp_gpu.HEADING) == 1
    assert "Status: complete (cpu-smoke, cpu," in text and "| harp-exhaustive | 1 |" in text

    evals = {p: json.loads(p.read_text(encoding="utf-8"))["runs"] for p in runs.glob("fruit/*/seed-0/eval.json")}
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("fruit/*/seed-0/manifest.json")}
    assert len(evals) == 4 and harp_gpu.main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no selection made again
    assert {p: json.loads(p.read_text(encoding="utf-8"))["runs"] for p in evals} == evals  # nor trained again
