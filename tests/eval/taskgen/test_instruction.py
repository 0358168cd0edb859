"""The instruction track on toy tasks: answer options, near-duplicates, the files' format, determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasksift.eval.taskgen.examples import Example, SourceTask
from tasksift.eval.taskgen.instruction import (
    N_DISTRACTORS,
    answer_options,
    build_instruction_track,
    near_copies,
    near_copy,
)
from tasksift.util.errors import InputError
from tests.eval.taskgen.helpers import levenshtein, read_jsonl, tree_bytes


def toy_tasks() -> list[SourceTask]:
    """A label task (with a conflicting and a repeated input), a definition task, a task grouped by document."""
    colors = [Example(f"colour sample number {i} looks like this", ("red", "blue")[i % 2], f"c{i}")
              for i in range(120)]
    colors += [Example("colour sample number 0 looks like this", "blue", "c0"),  # conflicts: both dropped
               Example("colour sample number 1 looks like this", "blue", "c1")]  # repeats: one kept
    terms = [Example(f"term {i}", f"the meaning of term {i}, in a few words", f"t{i}") for i in range(100)]
    docs = [Example(f"document {d} paragraph {p} says something", ("essay", "story", "memo")[d % 3], f"d{d}")
            for d in range(40) for p in range(6)]
    return [SourceTask("colors", "pkg-colors", "Which colour?", colors, ("blue", "red")),
            SourceTask("terms", "pkg-terms", "Define the term.", terms),
            SourceTask("docs", "pkg-docs", "Which kind of text?", docs, ("essay", "memo", "story"), per_group=2)]


TOY = {"n_target": 5, "n_test": 20, "pool_per_source": 60, "n_dups": 30, "n_dup_seeds": 2,
       "built_from": {"pkg-colors": "1.0", "pkg-terms": "2.0", "pkg-docs": "3.0"}}


def build_toy(out: Path, seed: int = 0) -> dict[str, Any]:
    return build_instruction_track(out, toy_tasks(), seed=seed, classification={"colors": "colors"}, **TOY)


def test_answer_options() -> None:
    label = SourceTask("l", "p", "?", [Example("a", "yes", "a")], ("no", "yes"))
    assert answer_options(label, ["yes", "no"], np.random.default_rng(0)) == [["no", "yes"], ["no", "yes"]]
    definition = SourceTask("d", "p", "?", [Example("a", "x", "a")])
    outputs = [f"answer {i}" for i in range(8)] + ["Answer 0"]  # the same answer, other case: never a distractor
    options = answer_options(definition, outputs, np.random.default_rng(0))
    for right, opts in zip(outputs, options, strict=True):
        assert len(opts) == 1 + N_DISTRACTORS and opts.count(right) == 1
        assert len({o.lower() for o in opts}) == len(opts)
        assert set(opts) <= set(outputs)
    assert options == answer_options(definition, outputs, np.random.default_rng(0))
    with pytest.raises(ValueError, match="too few distinct test answers"):
        answer_options(definition, ["a", "b", "A"], np.random.default_rng(0))


def test_near_copy_makes_small_seeded_edits() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    copies = [near_copy(text, np.random.default_rng(i), 2) for i in range(50)]
    assert all(1 <= levenshtein(text, c) <= 4 for c in copies if c != text)
    assert sum(c != text for c in copies) >= 45
    assert copies == [near_copy(text, np.random.default_rng(i), 2) for i in range(50)]


def test_near_copies_are_distinct_from_each_other_and_the_original() -> None:
    record = {"instruction": "?", "input": "ab", "output": "a", "source": "p", "task": "t"}
    copies = near_copies(record, 60, np.random.default_rng(0))
    assert len(copies) == 60 and len({c["input"] for c in copies} | {"ab"}) == 61
    assert all(c["output"] == "a" and c["task"] == "t" for c in copies)


def test_instruction_track_files_sizes_and_disjointness(tmp_path: Path) -> None:
    summary = build_toy(tmp_path)
    root = tmp_path / "instruction"
    pool = read_jsonl(root / "pool.jsonl")
    # colors: 119 usable, 25 held out -> 60; terms: 100 - 25 -> 60; docs: 25 paragraphs from 13 documents, the
    # other 27 documents' 162 paragraphs -> 60
    assert summary["pool"] == len(pool) == 180
    assert summary["sources"] == {"pkg-colors": 60, "pkg-docs": 60, "pkg-terms": 60}
    assert [r["task"] for r in pool] != sorted(r["task"] for r in pool)  # shuffled, not blocks
    assert all(set(r) == {"instruction", "input", "output", "source", "task"} for r in pool)
    pool_inputs = {r["input"] for r in pool}
    for name in ("colors", "terms", "docs"):
        tdir = root / name
        spec = json.loads((tdir / "task.json").read_text())
        target, test = read_jsonl(tdir / "target.jsonl"), read_jsonl(tdir / "test.jsonl")
        assert (len(target), len(test)) == (5, 20)
        assert spec["counts"] == {"pool": 180, "pool_from_source": 60, "pool_dups": 210, "target": 5, "test": 20,
                                  "options_per_test": len(test[0]["options"])}
        assert spec["pool"] == "../pool.jsonl" and spec["kind"] == "instruction" and spec["metric"] == "accuracy"
        assert spec["text_template"] == "{instruction}\n{input}\n{output}"
        assert spec["built_from"] == TOY["built_from"]
        assert {r["task"] for r in target + test} == {name}
        held = [r["input"] for r in target + test]
        assert len(set(held)) == 25 and not set(held) & pool_inputs
        for r in test:
            assert r["options"].count(r["output"]) == 1
        if name == "docs":  # a held-out document gives nothing to the pool, and at most 2 paragraphs
            held_docs = [r["input"].split(" paragraph")[0] for r in target + test]
            assert not set(held_docs) & {r["input"].split(" paragraph")[0] for r in pool if r["task"] == "docs"}
            assert max(held_docs.count(d) for d in held_docs) <= 2
            assert not {d for d in held_docs[:5]} & set(held_docs[5:])  # target and test documents differ
    assert read_jsonl(root / "colors" / "test.jsonl")[0]["options"] == ["blue", "red"]
    assert "colour sample number 0 looks like this" not in pool_inputs | {
        r["input"] for r in read_jsonl(root / "colors" / "test.jsonl")}


def test_pool_dups_holds_the_pool_and_the_recorded_near_copies(tmp_path: Path) -> None:
    build_toy(tmp_path)
    root = tmp_path / "instruction"
    pool, dups = read_jsonl(root / "pool.jsonl"), read_jsonl(root / "pool-dups.jsonl")
    spec = json.loads((root / "terms" / "task.json").read_text())["pool_dups"]
    assert dups[: len(pool)] == pool
    assert spec["pool"] == "../pool-dups.jsonl" and spec["injected"] == 30 == len(dups) - len(pool)
    assert spec["first_injected_line"] == len(pool)
    assert len(spec["seeds"]) == 2 and len({s["task"] for s in spec["seeds"]}) == 2
    covered = []
    for seed in spec["seeds"]:
        assert seed["on_task"] == (seed["task"] == "terms")
        original = pool[seed["pool_line"]]
        assert original["task"] == seed["task"]
        start, stop = seed["lines"]
        assert stop - start == seed["copies"] == 15
        copies = dups[start:stop]
        covered.extend(range(start, stop))
        assert len({json.dumps(c) for c in copies}) == 15
        for copy in copies:
            changed = [k for k in original if copy[k] != original[k]]
            assert len(changed) == 1 and changed[0] in ("input", "output")
            assert levenshtein(copy[changed[0]], original[changed[0]]) in range(1, 7)
    assert covered == list(range(len(pool), len(dups)))


def test_instruction_track_is_byte_identical_for_a_seed(tmp_path: Path) -> None:
    build_toy(tmp_path / "a")
    build_toy(tmp_path / "b")
    build_toy(tmp_path / "c", seed=1)
    a, b, c = (tree_bytes(tmp_path / x) for x in "abc")
    assert a == b
    assert sorted(a) == sorted(c) and a["instruction/pool.jsonl"] != c["instruction/pool.jsonl"]
    assert a["instruction/terms/test.jsonl"] != c["instruction/terms/test.jsonl"]


def test_classification_task_shares_the_split(tmp_path: Path) -> None:
    summary = build_toy(tmp_path)
    cdir = tmp_path / "classification" / "colors"
    spec = json.loads((cdir / "task.json").read_text())
    assert spec["kind"] == "classification" and spec["labels"] == ["blue", "red"]
    assert (spec["text_field"], spec["label_field"]) == ("text", "label")
    inst = tmp_path / "instruction" / "colors"
    for part in ("target", "test"):
        assert [(r["text"], r["label"]) for r in read_jsonl(cdir / f"{part}.jsonl")] == [
            (r["input"], r["output"]) for r in read_jsonl(inst / f"{part}.jsonl")]
    pool = read_jsonl(cdir / "pool.jsonl")
    assert len(pool) == 119 - 25 == summary["classification"]["colors"]["pool"]  # not capped at 60
    held = {r["text"] for r in read_jsonl(cdir / "test.jsonl") + read_jsonl(cdir / "target.jsonl")}
    assert not held & {r["text"] for r in pool}


def test_instruction_track_refuses_a_task_too_small(tmp_path: Path) -> None:
    small = SourceTask("small", "p", "?", [Example(f"x{i}", "y", f"x{i}") for i in range(10)], ("y",))
    with pytest.raises(InputError, match="task small"):
        build_instruction_track(tmp_path, [small], n_target=5, n_test=5)


def test_general_task_takes_a_few_targets_of_every_task_and_the_union_of_their_tests(tmp_path: Path) -> None:
    from tasksift.eval.taskgen.instruction import N_GENERAL_TARGET
    from tasksift.eval.tasks import load_task

    summary = build_toy(tmp_path)
    root = tmp_path / "instruction"
    general = root / "general"
    spec = json.loads((general / "task.json").read_text())
    target, test = read_jsonl(general / "target.jsonl"), read_jsonl(general / "test.jsonl")
    names = ["colors", "docs", "terms"]  # the tasks in name order
    assert N_GENERAL_TARGET == 10 and len(target) == 3 * 5  # each toy task has only 5 targets
    assert target == [r for n in names for r in read_jsonl(root / n / "target.jsonl")[:N_GENERAL_TARGET]]
    assert test == [r for n in names for r in read_jsonl(root / n / "test.jsonl")]
    assert spec["metric"] == "macro_accuracy" and spec["group_field"] == "task" and spec["pool"] == "../pool.jsonl"
    assert spec["counts"] == {"pool": 180, "target": 15, "test": 60, "tasks": {n: 20 for n in names}}
    assert summary["general"]["test"] == 60
    task = load_task(general)
    data = task.test_data()
    assert data.groups == [r["task"] for r in test] and task.metric == "macro_accuracy"


def test_duplicates_tasks_read_pool_dups_with_the_tasks_own_target_and_test(tmp_path: Path) -> None:
    from tasksift.eval.tasks import load_task

    summary = build_toy(tmp_path)
    assert summary["dups"]["terms"] == {"path": "instruction-dups/terms", "pool": 210}
    spec = json.loads((tmp_path / "instruction-dups" / "terms" / "task.json").read_text())
    clean = json.loads((tmp_path / "instruction" / "terms" / "task.json").read_text())
    assert spec["name"] == "terms-dups" and spec["counts"]["pool"] == 210
    assert spec["pool_dups"]["seeds"] == clean["pool_dups"]["seeds"]
    task = load_task(tmp_path / "instruction-dups" / "terms")
    assert len(task.pool) == 210
    assert task.test_data().prompts == load_task(tmp_path / "instruction" / "terms").test_data().prompts
