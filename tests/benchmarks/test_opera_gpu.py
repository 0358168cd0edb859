"""``benchmarks/opera_gpu.py``: without a GPU it refuses in one line (exit code 2) and writes nothing; the reading
rule on hand-made curves; the time budget; ``--cpu-smoke`` end to end on a tiny glossary task (slow: it finetunes
MiniLM 8 times), stopped by its budget, resumed, and reused."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import opera_gpu  # noqa: E402
from preset_gpu import Budget, OutOfTime  # noqa: E402
from tests.benchmarks.conftest import assert_refuses_without_a_gpu  # noqa: E402
from tests.train.helpers import retrieval_task  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_without_a_gpu_it_refuses_in_one_line(tmp_path: Path, device: str) -> None:
    assert_refuses_without_a_gpu("opera_gpu.py", device, tmp_path)


def _summary(none: list[float], dynamic: list[float], std: float = 0.006, every: int = 40) -> dict[str, Any]:
    def curve(values: list[float]) -> list[dict[str, Any]]:
        return [{"step": i * every, "metrics": {"ndcg@10": v}} for i, v in enumerate(values)]

    return {"curves": {"none": curve(none), "dynamic": curve(dynamic)},
            "rows": {"none": {"std": {"ndcg@10": std}}, "dynamic": {"std": {"ndcg@10": std}}}}


RISING = [0.50, 0.55, 0.58, 0.60, 0.62, 0.63, 0.635, 0.64, 0.64]  # T = 320: 0.62 at T/2, 0.635 at 3T/4


def test_the_claim_holds_when_dynamic_reaches_the_final_value_by_half_the_steps() -> None:
    v = opera_gpu.verdict(_summary(RISING, [0.50, 0.58, 0.62, 0.64, 0.645, 0.65, 0.65, 0.65, 0.65]))
    assert v["claim"] == "holds" and v["dynamic_reaches_at"] == 120
    assert (v["steps"], v["half_step"], v["late_step"]) == (320, 160, 240)
    assert v["flattened"] and v["room_at_half"] and v["target_ndcg@10"] == 0.64


def test_the_claim_does_not_hold_when_dynamic_gets_there_later() -> None:
    v = opera_gpu.verdict(_summary(RISING, [0.50, 0.52, 0.55, 0.58, 0.60, 0.62, 0.63, 0.64, 0.645]))
    assert v["claim"] == "does not hold" and v["dynamic_reaches_at"] == 280
    assert v["dynamic_at_half"] == 0.60 and "at step 280" in v["why"]


def test_the_claim_is_not_read_when_no_pruning_still_rises_or_was_flat_by_half() -> None:
    still_rising = [0.50, 0.52, 0.54, 0.56, 0.58, 0.59, 0.60, 0.62, 0.64]
    v = opera_gpu.verdict(_summary(still_rising, still_rising))
    assert v["claim"] == "not read" and not v["flattened"] and "too few steps" in v["why"]
    flat_early = [0.50, 0.64, 0.64, 0.64, 0.64, 0.64, 0.64, 0.64, 0.64]
    v = opera_gpu.verdict(_summary(flat_early, flat_early))
    assert v["claim"] == "not read" and v["flattened"] and not v["room_at_half"] and "no speed-up" in v["why"]
    assert opera_gpu.verdict({"curves": {}, "rows": {}})["claim"] == "not read"


def test_the_budget_stops_a_unit_that_would_end_past_it() -> None:
    now = [0.0]
    budget = Budget(10, clock=lambda: now[0])
    budget.check("run")  # the first unit of a kind always runs
    now[0] = 4.0
    budget.done("run")
    budget.check("run")  # 4 s spent + 4 s expected <= 10
    now[0] = 7.0
    budget.done("run")
    assert budget.longest == {"run": 4.0}
    budget.check("evaluation")  # another kind: nothing known of it yet
    with pytest.raises(OutOfTime, match="would end past the 10 s budget"):
        budget.check("run")  # 7 + 4 > 10


@pytest.mark.slow
def test_the_cpu_smoke_run_stops_at_its_budget_resumes_and_writes_curves(tmp_path: Path, one_thread: Any) -> None:
    task = retrieval_task(tmp_path)
    runs, results, doc = tmp_path / "runs", tmp_path / "opera.json", tmp_path / "results.md"
    doc.write_text("# Results\n\n## Another section\n\nits text\n", encoding="utf-8")
    args = ["--cpu-smoke", "--task", str(task), "--runs", str(runs), "--results", str(results), "--doc", str(doc)]

    assert opera_gpu.main([*args, "--budget-s", "0"]) == 1  # one run, then the budget is spent
    partial = json.loads(results.read_text(encoding="utf-8"))
    assert not partial["complete"] and (partial["runs_done"], partial["runs_planned"]) == (1, 8)
    assert set(partial["summary"]["rows"]) == {"base", "none"}
    assert "PARTIAL: 1 of 8 runs finished" in doc.read_text(encoding="utf-8")
    first = (runs / "none" / "seed-0.json").stat().st_mtime_ns

    assert opera_gpu.main(args) == 0
    report = json.loads(results.read_text(encoding="utf-8"))
    assert report["complete"] and report["mode"] == "cpu-smoke" and report["device"] == {"device": "cpu"}
    assert (report["runs_done"], report["runs_planned"]) == (8, 8)
    assert (runs / "none" / "seed-0.json").stat().st_mtime_ns == first  # kept, not trained again
    summary = report["summary"]
    assert list(summary["curves"]) == ["none", "static", "dynamic", "infobatch"]
    for curve in summary["curves"].values():  # 4 steps scored every 2: the base model, step 2, step 4
        assert [p["step"] for p in curve] == [0, 2, 4]
        assert all(0.0 <= p["metrics"]["ndcg@10"] <= 1.0 for p in curve)
    assert all(summary["rows"][name]["seeds"] == 2 for name in opera_gpu.PRUNING)
    base = json.loads((runs / "base.json").read_text(encoding="utf-8"))["metrics"]["ndcg@10"]
    assert all(c[0]["metrics"]["ndcg@10"] == base for c in summary["curves"].values())
    assert report["verdict"]["steps"] == 4 and report["verdict"]["half_step"] == 2
    text = doc.read_text(encoding="utf-8")
    assert "## Another section\n\nits text" in text and text.count(opera_gpu.HEADING) == 1
    assert "Status: complete (cpu-smoke, cpu," in text and "| none | " in text and "| step 4 |" in text

    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/seed-*.json")}
    assert len(stamps) == 8 and opera_gpu.main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/seed-*.json")} == stamps
