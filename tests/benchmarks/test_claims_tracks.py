"""``benchmarks/duplicates.py`` and ``benchmarks/general.py``: what their tables read from the runs (copies taken,
changes seed by seed, per-task and macro accuracy) on hand-made run folders, and the general task's cut-down copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import duplicates  # noqa: E402
import general  # noqa: E402
from tests.eval.taskgen.test_instruction import build_toy  # noqa: E402

SPEC = {"pool_dups": {"first_injected_line": 100, "seeds": [
    {"task": "a", "lines": [100, 110], "on_task": True}, {"task": "b", "lines": [110, 120], "on_task": False}]}}


def _eval(path: Path, seed: int, metrics: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": {str(seed): {"metrics": metrics}}}))


def _selection(path: Path, rows: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"row": rows, "weight": [1.0] * len(rows)}), path)


def test_copies_taken_counts_injected_rows_once_and_the_tasks_own(tmp_path: Path) -> None:
    _selection(tmp_path / "s.parquet", [3, 99, 100, 100, 105, 112, 119])
    assert duplicates.copies_taken(tmp_path / "s.parquet", SPEC) == (4, 2)


def test_duplicates_table_compares_each_seed_with_the_clean_pool(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    clean, runs, task = tmp_path / "clean", tmp_path / "runs", tmp_path / "tasks" / "t"
    monkeypatch.setattr(duplicates, "CLEAN", clean)
    task.mkdir(parents=True)
    (task / "task.json").write_text(json.dumps(SPEC))
    for seed, (c, d) in enumerate([(0.50, 0.48), (0.60, 0.61)]):
        _eval(clean / "t" / "knn" / f"seed-{seed}" / "eval.json", seed, {"accuracy": c})
        _eval(runs / "knn" / f"seed-{seed}" / "eval.json", seed, {"accuracy": d})
        _selection(runs / "knn" / f"seed-{seed}" / "selection.parquet", [1, 2, 100 + seed, 111])
    _eval(clean / "t" / "tsds" / "seed-0" / "eval.json", 0, {"accuracy": 0.5})  # no run with copies yet
    text, found = duplicates.task_table(task, runs, seeds=2)
    assert found == [{"method": "knn", "seeds": [0, 1], "clean": [0.5, 0.6], "dups": [0.48, 0.61],
                      "copies": [(2, 1), (2, 1)]}]
    row = next(line for line in text.splitlines() if line.startswith("| knn"))
    assert row == ("| knn | 2 | 0.5500 ± 0.0707 | 0.5450 ± 0.0919 | -0.0050 (-0.0200 / +0.0100) | 2 (1) / 2 (1) | "
                   "0.4800 / 0.6100 |")
    assert "Partial: random has 0 of 2 seeds; dsir has 0 of 2 seeds; tsds has 0 of 2 seeds." in text


def test_general_table_reads_macro_and_per_task_accuracy_against_random(tmp_path: Path) -> None:
    task, runs = tmp_path / "task", tmp_path / "runs"
    for seed, (r, s) in enumerate([(0.40, 0.45), (0.50, 0.48)]):
        _eval(general.row_dir(runs, "random") / "random" / f"seed-{seed}" / "eval.json", seed,
              {"macro_accuracy": r, "accuracy/x": r, "accuracy/y": r})
        _eval(general.row_dir(runs, "spice (MiniLM proxy)") / "spice" / f"seed-{seed}" / "eval.json", seed,
              {"macro_accuracy": s, "accuracy/x": s + 0.1, "accuracy/y": s - 0.1})
    _eval(task / "baselines" / "none" / "eval.json", 0, {"macro_accuracy": 0.3, "accuracy/x": 0.2, "accuracy/y": 0.4})
    assert general.row_dir(runs, "spice") == runs / "general"
    assert general.row_dir(runs, "spice (MiniLM proxy)") == runs / "general-spice-minilm"
    assert general.row_dir(runs, "less (per task)") == runs / "general-less-per-task"
    rows = general.collect(task, runs, seeds=2)
    assert list(rows) == ["none (no finetuning)", "random", "spice (MiniLM proxy)"]
    lines = general.table(rows, ["x", "y"], seeds=2).splitlines()
    assert lines[0].endswith("| x | y |")
    assert lines[2] == "| none (no finetuning) | 1 | 0.3000 ± 0.0000 | 0.3000 |  | 0.2000 | 0.4000 |"
    assert lines[4] == ("| spice (MiniLM proxy) | 2 | 0.4650 ± 0.0212 | 0.4500 / 0.4800 | +0.0150 (1 of 2 above) | "
                        "0.5650 | 0.3650 |")
    assert "the full-pool row is not measured yet" in lines[-1] and "tsds has 0 of 2 seeds" in lines[-1]


def test_general_cut_down_keeps_two_of_each_task_and_less_reads_the_targets_tasks(tmp_path: Path) -> None:
    build_toy(tmp_path / "built")
    source = tmp_path / "built" / "instruction" / "general"
    assert general.target_domains(source) == ["colors"] * 5 + ["docs"] * 5 + ["terms"] * 5
    small = general.cut_down(source, tmp_path / "small", 12)
    spec = json.loads((small / "task.json").read_text())
    assert spec["counts"]["pool"] == 12 and spec["counts"]["tasks"] == {"colors": 2, "docs": 2, "terms": 2}
    assert general.target_domains(small) == ["colors", "colors", "docs", "docs", "terms", "terms"]
    assert len((small / "pool.jsonl").read_text().splitlines()) == 12


def test_general_runs_only_the_rows_named_in_the_tables_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tasksift.eval

    ran: list[tuple[str, int]] = []
    monkeypatch.setattr(general, "run_row", lambda task, runs, row, seeds, budget, train: ran.append((row, seeds)))
    monkeypatch.setattr(general, "report", lambda args: {})
    monkeypatch.setattr(tasksift.eval, "evaluate", lambda *args, **kwargs: ran.append(("scored " + args[1], 1)))
    general.main(["--seeds", "2", "--no-full", "--rows", "fishersft", "random", "--task", str(tmp_path)])
    assert ran == [("scored none", 1), ("random", 1), ("fishersft", 1), ("random", 2), ("fishersft", 2)]
    ran.clear()
    general.main(["--seeds", "3", "--rows", "full pool", "--task", str(tmp_path)])
    assert ran == [("scored none", 1), ("scored full", 1)]
    ran.clear()
    general.main(["--seeds", "1", "--rows", "random", "--task", str(tmp_path)])  # the full pool only when named
    assert ran == [("scored none", 1), ("random", 1)]
    with pytest.raises(SystemExit):
        general.main(["--rows", "nonsense"])


def test_effective_rank_and_mean_cosine_reference_values() -> None:
    import numpy as np

    assert general.effective_rank(np.eye(4) * 3.0) == pytest.approx(4.0)
    assert general.effective_rank(np.array([[1.0, 2.0], [2.0, 4.0], [-3.0, -6.0]])) == pytest.approx(1.0)
    # two orthogonal directions with energies 1 and 3: p = (1/4, 3/4)
    assert general.effective_rank(np.array([[1.0, 0.0], [0.0, 3.0 ** 0.5]])) == pytest.approx(
        np.exp(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75))))
    # pairs (a, b) = 1, (a, c) = 0, (b, c) = 0; a zero row counts 0 against all
    rows = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 5.0]])
    assert general.mean_cosine(rows) == pytest.approx(1 / 3)
    assert general.mean_cosine(np.vstack([rows, np.zeros((1, 2))])) == pytest.approx(1 / 6)
    assert general.mean_cosine(rows[:1]) == 0.0


def test_general_explain_reads_each_selection_against_the_pools_gradients(tmp_path: Path) -> None:
    import numpy as np

    task, runs = tmp_path / "task", tmp_path / "runs"
    task.mkdir()
    pool = [{"task": "a", "input": "x" * n, "output": "y"} for n in (1, 2, 3)] + \
           [{"task": "b", "input": "", "output": "z" * n} for n in (10, 20, 30, 40, 50)]
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    (task / "task.json").write_text(json.dumps({"pool": "../pool.jsonl", "text_template": "{input}\n{output}"}))
    grads = np.array([[1, 0], [2, 0], [3, 0], [0, 4], [0, 5], [0, 6], [0, 7], [0, 8]], dtype=np.float32)
    path = general.row_dir(runs, "fishersft") / "fishersft" / "seed-0" / "selection.parquet"
    path.parent.mkdir(parents=True)
    reasons = [json.dumps({"gain": 1.0, "conflict": c}) for c in (0.0, 0.2, 0.0)]
    pq.write_table(pa.table({"row": [7, 6, 0], "reason": reasons}), path)
    _selection(general.row_dir(runs, "random") / "random" / "seed-1" / "selection.parquet", [1, 2])
    lines = general.explain(task, runs, seeds=2, grads=grads).splitlines()
    assert lines[4] == "| a | 38% | 3 | 2.00 | +1.000 | 1.0 |"
    assert lines[5] == "| b | 62% | 30 | 6.00 | +1.000 | 1.0 |"
    # norms sorted 1,2,3,4,...,8: row 7 (norm 8) has 7 of 8 below, row 6 has 6, row 0 has 0 -> median 6/8
    # random: rows 1 and 2, lengths 3 and 4, norm percentiles 1/8 and 2/8; rows in the table's order
    assert lines[9] == "| random | 1 | 100% | 0% | 4 | 0.19 |  |"
    assert lines[10] == "| fishersft | 0 | 33% | 67% | 40 | 0.75 | 1 of 3 |"
    assert len(lines) == 11


def test_general_explain_saves_the_gradient_summary_and_reads_it_back_for_the_same_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    task, runs, stored = tmp_path / "task", tmp_path / "runs", tmp_path / "pool-gradients.json"
    task.mkdir()
    pool = [{"task": "a", "input": "x" * n, "output": "y"} for n in (1, 2, 3)] + \
           [{"task": "b", "input": "", "output": "z" * n} for n in (10, 20, 30)]
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    (task / "task.json").write_text(json.dumps({"pool": "../pool.jsonl", "text_template": "{input}\n{output}"}))
    grads = np.array([[1, 0], [2, 1], [3, 0], [0, 4], [1, 5], [0, 6]], dtype=np.float32)
    _selection(general.row_dir(runs, "random") / "random" / "seed-0" / "selection.parquet", [1, 4])
    first = general.explain(task, runs, seeds=1, grads=grads, stored=stored)
    assert json.loads(stored.read_text())["norms"] == [1.0, 2.2361, 3.0, 4.0, 5.099, 6.0]

    def no_gradients(*args):
        raise AssertionError("the pool's gradients were computed again")

    monkeypatch.setattr(general, "pool_gradients", no_gradients)
    assert general.explain(task, runs, seeds=1, stored=stored) == first
    # another pool: the saved summary is not its own, so the gradients are needed
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool[::-1]))
    with pytest.raises(AssertionError, match="computed again"):
        general.explain(task, runs, seeds=1, stored=stored)
