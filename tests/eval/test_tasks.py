"""Task directories: the documented format loads; each broken piece gives one line naming the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasksift.eval.tasks import load_task, selection_rows
from tasksift.selectors.base import Selection
from tasksift.util.errors import InputError
from tests.train.helpers import (
    FRUITS,
    classification_task,
    instruction_task,
    retrieval_task,
    write_jsonl,
)


def _spec(task: Path) -> dict:
    return json.loads((task / "task.json").read_text())


def _set_spec(task: Path, **changes) -> None:
    spec = {**_spec(task), **changes}
    (task / "task.json").write_text(json.dumps({k: v for k, v in spec.items() if v is not None}))


def test_instruction_task_loads_with_its_pool_outside_the_directory(tmp_path: Path) -> None:
    task = load_task(instruction_task(tmp_path))
    assert task.kind == "instruction" and task.metric == "accuracy"
    assert task.pool.path == (tmp_path / "pool.jsonl").resolve()
    train = task.training_data(np.array([0, 0, 3]))
    assert train.prompts[0] == "What colour is the fruit?\napple\n" and train.prompts[1] == train.prompts[0]
    assert train.answers == ["red", "red", list(FRUITS.values())[3]]
    test = task.test_data()
    assert len(test.prompts) == 6 and test.options[0][test.correct[0]] == test.answers[0]


def test_pool_inside_the_directory_and_defaults(tmp_path: Path) -> None:
    root = instruction_task(tmp_path, pool_in_dir=True)
    _set_spec(root, metric=None, prompt_template=None, answer_field=None, options_field=None, text_template=None)
    task = load_task(root)
    assert task.metric == "accuracy" and task.spec["prompt_template"] == "{instruction}\n{input}\n"


def test_classification_and_retrieval_tasks_load(tmp_path: Path) -> None:
    c = load_task(classification_task(tmp_path))
    assert c.test_data().labels.tolist() == [1, 0, 1, 0]  # labels in task.json order: neg, pos
    r = load_task(retrieval_task(tmp_path))
    test = r.test_data()
    assert test.relevant[2] == {"d5", "d9", "d7"} and len(test.corpus) == len(test.corpus_ids) == 12


@pytest.mark.parametrize("breakage, message", [
    (lambda t: (t / "task.json").unlink(), "no task.json"),
    (lambda t: (t / "task.json").write_text("{not json"), "cannot read task.json"),
    (lambda t: _set_spec(t, kind="regression"), "unknown task kind"),
    (lambda t: _set_spec(t, metric="ndcg@10"), "does not fit"),
    (lambda t: _set_spec(t, pool="../missing.jsonl"), "pool file"),
    (lambda t: (t / "test.jsonl").unlink(), "no test file"),
    (lambda t: _set_spec(t, prompt_template="{instruction}\n{question}\n"), "no field 'question'"),
    (lambda t: _set_spec(t, metric="macro_accuracy"), "does not fit"),  # only with a group_field
    (lambda t: _set_spec(t, group_field=["task"]), "must be a field name"),
    (lambda t: _set_spec(t, group_field="family"), "record 0 has no group name in 'family'"),
])
def test_broken_instruction_tasks(tmp_path: Path, breakage, message: str) -> None:
    root = instruction_task(tmp_path)
    breakage(root)
    with pytest.raises(InputError, match=message) as info:
        load_task(root)
    assert "\n" not in info.value.one_line() and str(tmp_path) in info.value.one_line()


def test_answer_must_be_among_the_options(tmp_path: Path) -> None:
    root = instruction_task(tmp_path)
    rows = [json.loads(line) for line in (root / "test.jsonl").read_text().splitlines()]
    rows[2]["options"] = ["purple", "orange"]
    write_jsonl(root / "test.jsonl", rows)
    with pytest.raises(InputError, match="record 2: its answer .* is not among its options"):
        load_task(root)
    for bad in ("red", ["red"], ["red", ""], ["red", 3]):
        rows[2]["options"] = bad
        write_jsonl(root / "test.jsonl", rows)
        with pytest.raises(InputError, match="record 2 has no list of at least two non-empty string options"):
            load_task(root)


def test_unknown_label_and_missing_labels(tmp_path: Path) -> None:
    root = classification_task(tmp_path)
    rows = [json.loads(line) for line in (root / "pool.jsonl").read_text().splitlines()]
    rows[5]["label"] = "meh"
    write_jsonl(root / "pool.jsonl", rows)
    with pytest.raises(InputError, match="record 5 has label 'meh'"):
        load_task(root)
    _set_spec(root, labels=None)
    with pytest.raises(InputError, match="needs \"labels\""):
        load_task(root)


def test_relevant_documents_must_be_in_the_corpus(tmp_path: Path) -> None:
    root = retrieval_task(tmp_path)
    rows = [json.loads(line) for line in (root / "test.jsonl").read_text().splitlines()]
    rows[1]["relevant"] = ["d2", "nope"]
    write_jsonl(root / "test.jsonl", rows)
    with pytest.raises(InputError, match="record 1 names doc_id 'nope'"):
        load_task(root)
    (root / "corpus.jsonl").unlink()
    with pytest.raises(InputError, match="no corpus file"):
        load_task(root)


def _save_run(task, run_dir: Path, rows: list[int], weights: list[float], sha: str | None = None) -> Path:
    selection = Selection(indices=np.array(rows), weights=np.array(weights), scores=np.zeros(len(rows)),
                          reasons=[{} for _ in rows],
                          manifest={"method": "hand", "counts": {"pool": len(task.pool)},
                                    "inputs": {"pool": {"path": str(task.pool.path),
                                                        "sha256": sha or task.pool.file_sha256}}})
    selection.save(run_dir, task.pool)
    return run_dir


def test_selection_rows_honour_weights_and_check_the_pool(tmp_path: Path) -> None:
    task = load_task(instruction_task(tmp_path))
    run = _save_run(task, tmp_path / "run", [3, 0, 7], [2.0, 1.0, 3.0])
    rows, info = selection_rows(task, run)
    assert sorted(rows.tolist()) == [0, 3, 3, 7, 7, 7]
    assert info["distinct_examples"] == 3 and info["training_examples"] == 6 and info["method"] == "hand"
    full, info = selection_rows(task, "full")
    assert full.tolist() == list(range(len(task.pool))) and info["kind"] == "full"
    assert selection_rows(task, "none")[0] is None
    other = _save_run(task, tmp_path / "other", [1], [1.0], sha="0" * 64)
    with pytest.raises(InputError, match="made on another pool"):
        selection_rows(task, other)
    with pytest.raises(InputError, match="not a selection run directory"):
        selection_rows(task, tmp_path / "nowhere")


def test_a_grouped_instruction_task_names_each_test_items_group(tmp_path: Path) -> None:
    root = instruction_task(tmp_path)
    rows = [json.loads(line) for line in (root / "test.jsonl").read_text().splitlines()]
    write_jsonl(root / "test.jsonl", [{**r, "family": "ab"[i % 2]} for i, r in enumerate(rows)])
    _set_spec(root, group_field="family", metric="macro_accuracy")
    task = load_task(root)
    assert task.metric == "macro_accuracy" and task.test_data().groups == ["a", "b", "a", "b", "a", "b"]
