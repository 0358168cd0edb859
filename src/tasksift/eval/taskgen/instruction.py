"""The instruction track (``OUT/instruction``): one shared, shuffled pool of instruction / response records from
every source, ``pool-dups.jsonl`` (the same pool plus near-copies of a few pool records, the TSDS robustness
setting), and one task per source with a target set (the few examples a selector may see) and a test set
(never shown to a selector) whose records carry the answer options. A label task can also be written as a
classification task (``OUT/classification/<name>``) with the same target and test examples.

Two more views of the same files: the ``general`` task (``OUT/instruction/general``: the first
:data:`N_GENERAL_TARGET` target examples of every task, and the union of their test sets, each item naming its
task, scored per task and by the macro average), and the duplicates track (``OUT/instruction-dups/<task>``: each
task with ``pool-dups.jsonl`` as its pool, the same target and test files).

Examples that share a group never straddle pool, target and test. The format is docs/task-format.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.eval.taskgen.examples import (
    N_TARGET,
    N_TEST,
    Example,
    SourceTask,
    named_rng,
    norm_key,
    split_heldout,
)
from tasksift.util.errors import InputError
from tasksift.util.io import write_json_atomic, write_jsonl_atomic

#: most pool records one source contributes to the shared instruction pool
POOL_PER_SOURCE = 2500
N_DUPS = 1000
N_DUP_SEEDS = 5
N_DISTRACTORS = 3
#: target examples of each task in the general task's target set
N_GENERAL_TARGET = 10

TEXT_TEMPLATE = "{instruction}\n{input}\n{output}"
PROMPT_TEMPLATE = "{instruction}\n{input}\n"


def answer_options(task: SourceTask, outputs: Sequence[str], rng: np.random.Generator) -> list[list[str]]:
    """The options of each test record: all label words for a label task; else the record's answer and
    :data:`N_DISTRACTORS` different answers of other test records, in a random order."""
    if task.labels is not None:
        return [list(task.labels) for _ in outputs]
    keys = [norm_key(o) for o in outputs]
    options = []
    for i, right in enumerate(outputs):
        chosen: list[int] = []
        taken = {keys[i]}
        for j in rng.permutation(len(outputs)):
            if keys[int(j)] not in taken:
                chosen.append(int(j))
                taken.add(keys[int(j)])
                if len(chosen) == N_DISTRACTORS:
                    break
        if len(chosen) < N_DISTRACTORS:
            raise ValueError(f"task {task.name}: too few distinct test answers for {N_DISTRACTORS} distractors")
        candidates = [right] + [outputs[j] for j in chosen]
        options.append([candidates[int(j)] for j in rng.permutation(len(candidates))])
    return options


def near_copy(text: str, rng: np.random.Generator, n_edits: int) -> str:
    """``text`` with ``n_edits`` random character edits (substitute, delete, insert, swap neighbours)."""
    chars = list(text)
    for _ in range(n_edits):
        op = int(rng.integers(4))
        pos = int(rng.integers(max(len(chars), 1)))
        letter = chr(ord("a") + int(rng.integers(26)))
        if op == 0 and chars:
            chars[pos] = letter if chars[pos] != letter else chr(ord(letter) % 26 + ord("a"))
        elif op == 1 and len(chars) > 1:
            del chars[pos]
        elif op == 3 and pos + 1 < len(chars) and chars[pos] != chars[pos + 1]:
            chars[pos], chars[pos + 1] = chars[pos + 1], chars[pos]
        else:
            chars.insert(pos, letter)
    return "".join(chars)


def _record(task: SourceTask, ex: Example) -> dict[str, Any]:
    return {"instruction": task.instruction, "input": ex.input, "output": ex.output, "source": task.source,
            "task": task.name}


def near_copies(seed_record: dict[str, Any], n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` distinct near-copies of a record: 1-3 character edits to its longer field of input and output."""
    edit = "input" if len(seed_record["input"]) >= len(seed_record["output"]) else "output"
    seen = {seed_record[edit]}
    out = []
    while len(out) < n:
        text = near_copy(seed_record[edit], rng, 1 + int(rng.integers(3)) + len(out) // 500)
        if text not in seen:
            seen.add(text)
            out.append({**seed_record, edit: text})
    return out


@dataclass
class _TaskSplit:
    task: SourceTask
    target: list[Example]
    test: list[Example]
    pool: list[Example]


def _split_task(task: SourceTask, seed: int, n_target: int, n_test: int, pool_per_source: int | None) -> _TaskSplit:
    rng = named_rng(seed, "instruction", task.name)
    try:
        target_i, test_i, rest_i = split_heldout([ex.group for ex in task.examples], rng, n_target, n_test,
                                                 task.per_group)
    except ValueError as err:
        raise InputError(f"task {task.name}: {err}", fix="use smaller target / test sizes") from None
    held_inputs = {norm_key(task.examples[i].input) for i in target_i + test_i}
    rest_i = [i for i in rest_i if norm_key(task.examples[i].input) not in held_inputs]
    if pool_per_source is not None and len(rest_i) > pool_per_source:
        rest_i = [rest_i[int(j)] for j in np.sort(rng.choice(len(rest_i), pool_per_source, replace=False))]
    if not rest_i:
        raise InputError(f"task {task.name}: no examples left for the pool", fix="use smaller target / test sizes")
    ex = task.examples
    return _TaskSplit(task, [ex[i] for i in target_i], [ex[i] for i in test_i], [ex[i] for i in rest_i])


def build_instruction_track(out_dir: Path, tasks: Sequence[SourceTask], *, seed: int = 0,
                            built_from: dict[str, str] | None = None, n_target: int = N_TARGET,
                            n_test: int = N_TEST, pool_per_source: int | None = POOL_PER_SOURCE,
                            n_dups: int = N_DUPS, n_dup_seeds: int = N_DUP_SEEDS,
                            classification: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the instruction track under ``out_dir/instruction`` and return its counts.

    ``classification`` maps a label task's name to the name of a classification task written with the same
    split under ``out_dir/classification/<name>`` (its pool holds every remaining example of the source).
    """
    if len({t.name for t in tasks}) != len(tasks):
        raise ValueError("two instruction tasks share a name")
    built_from = dict(sorted((built_from or {}).items()))
    root = Path(out_dir) / "instruction"
    root.mkdir(parents=True, exist_ok=True)
    splits = [_split_task(t, seed, n_target, n_test, pool_per_source) for t in sorted(tasks, key=lambda t: t.name)]

    pool = [_record(s.task, ex) for s in splits for ex in s.pool]
    order = named_rng(seed, "instruction", "pool").permutation(len(pool))
    pool = [pool[int(i)] for i in order]
    seeds, copies = _pool_dups(pool, [s.task.name for s in splits], seed, n_dups, n_dup_seeds)

    n_pool = write_jsonl_atomic(root / "pool.jsonl", pool)
    n_pool_dups = write_jsonl_atomic(root / "pool-dups.jsonl", pool + copies)
    per_source: dict[str, int] = {}
    for r in pool:
        per_source[r["source"]] = per_source.get(r["source"], 0) + 1

    summary: dict[str, Any] = {"pool": n_pool, "pool_dups": n_pool_dups, "injected": len(copies),
                               "sources": dict(sorted(per_source.items())), "tasks": {}}
    pool_dups = {"pool": "../pool-dups.jsonl", "injected": len(copies), "first_injected_line": n_pool}
    for s in splits:
        counts = _write_task(root / s.task.name, s, seed, built_from, {"pool": n_pool, "pool_dups": n_pool_dups},
                             {**pool_dups, "seeds": [{**d, "on_task": d["task"] == s.task.name} for d in seeds]})
        summary["tasks"][s.task.name] = {"source": s.task.source, "path": f"instruction/{s.task.name}", **counts}

    summary["general"] = _write_general(root / "general", splits, seed, built_from, n_pool)
    summary["dups"] = {s.task.name: _write_dups_task(Path(out_dir) / "instruction-dups" / s.task.name, s.task.name)
                       for s in splits}
    if classification:
        summary["classification"] = {}
        for s in splits:
            if s.task.name in classification:
                name = classification[s.task.name]
                summary["classification"][name] = _write_classification(
                    Path(out_dir) / "classification" / name, name, s, seed,
                    {s.task.source: built_from.get(s.task.source, "")})
    return summary


def _pool_dups(pool: list[dict[str, Any]], names: list[str], seed: int, n_dups: int,
               n_dup_seeds: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The near-copies appended to the pool in ``pool-dups.jsonl``: one pool record of each of ``n_dup_seeds``
    random tasks is copied, ``n_dups`` copies in all. Returns what was copied where, and the copies."""
    dup_rng = named_rng(seed, "instruction", "pool-dups")
    seed_tasks = sorted(dup_rng.choice(len(names), min(n_dup_seeds, len(names)), replace=False).tolist())
    seeds: list[dict[str, Any]] = []
    copies: list[dict[str, Any]] = []
    for k, t in enumerate(seed_tasks):
        lines = [i for i, r in enumerate(pool) if r["task"] == names[t]]
        line = lines[int(dup_rng.integers(len(lines)))]
        n = n_dups // len(seed_tasks) + (1 if k < n_dups % len(seed_tasks) else 0)
        start = len(pool) + len(copies)
        copies.extend(near_copies(pool[line], n, dup_rng))
        seeds.append({"pool_line": line, "task": names[t], "copies": n, "lines": [start, start + n]})
    return seeds, copies


def _write_task(tdir: Path, split: _TaskSplit, seed: int, built_from: dict[str, str], pools: dict[str, int],
                pool_dups: dict[str, Any]) -> dict[str, Any]:
    """Write one source's target, test and ``task.json``; return its counts."""
    task = split.task
    test_outputs = [ex.output for ex in split.test]
    options = answer_options(task, test_outputs, named_rng(seed, "instruction", task.name, "options"))
    tdir.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(tdir / "target.jsonl", (_record(task, ex) for ex in split.target))
    write_jsonl_atomic(tdir / "test.jsonl", ({**_record(task, ex), "options": opts}
                                             for ex, opts in zip(split.test, options, strict=True)))
    counts = {"pool": pools["pool"], "pool_from_source": len(split.pool), "pool_dups": pools["pool_dups"],
              "target": len(split.target), "test": len(split.test),
              "options_per_test": len(options[0]) if options else 0}
    spec: dict[str, Any] = {
        "name": task.name, "kind": "instruction", "metric": "accuracy", "source": task.source, "seed": seed,
        "counts": counts, "built_from": built_from,
        "pool": "../pool.jsonl", "target": "target.jsonl", "test": "test.jsonl",
        "text_template": TEXT_TEMPLATE, "prompt_template": PROMPT_TEMPLATE,
        "answer_field": "output", "options_field": "options", "instruction": task.instruction,
    }
    if task.labels is not None:
        spec["labels"] = list(task.labels)
    spec["pool_dups"] = pool_dups
    write_json_atomic(tdir / "task.json", spec)
    return counts


def _write_classification(tdir: Path, name: str, split: _TaskSplit, seed: int,
                          built_from: dict[str, str]) -> dict[str, Any]:
    task = split.task
    if task.labels is None:
        raise ValueError(f"task {task.name} has no labels: it cannot be a classification task")
    held = {norm_key(ex.input) for ex in split.target + split.test}
    groups = {ex.group for ex in split.target + split.test}
    # Every example of the source that is not held out (the instruction pool holds at most POOL_PER_SOURCE).
    pool = [ex for ex in task.examples if ex.group not in groups and norm_key(ex.input) not in held]
    order = named_rng(seed, "classification", name).permutation(len(pool))
    pool = [pool[int(i)] for i in order]
    tdir.mkdir(parents=True, exist_ok=True)
    counts = {
        "pool": write_jsonl_atomic(tdir / "pool.jsonl", ({"text": ex.input, "label": ex.output} for ex in pool)),
        "target": write_jsonl_atomic(tdir / "target.jsonl",
                                     ({"text": ex.input, "label": ex.output} for ex in split.target)),
        "test": write_jsonl_atomic(tdir / "test.jsonl", ({"text": ex.input, "label": ex.output} for ex in split.test)),
    }
    write_json_atomic(tdir / "task.json", {
        "name": name, "kind": "classification", "metric": "accuracy", "source": task.source, "seed": seed,
        "counts": counts, "built_from": built_from, "pool": "pool.jsonl", "target": "target.jsonl",
        "test": "test.jsonl", "text_field": "text", "label_field": "label", "labels": list(task.labels),
        "same_split_as": f"instruction/{task.name}",
    })
    return {"source": task.source, "path": f"classification/{name}", "same_split_as": f"instruction/{task.name}",
            **counts}


def _write_general(tdir: Path, splits: Sequence[_TaskSplit], seed: int, built_from: dict[str, str],
                   n_pool: int) -> dict[str, Any]:
    """The general task: a few target examples of every task, the union of their test sets (each item keeps its
    ``task``), scored per task and by the macro average. Reads the tasks' files just written."""
    tdir.mkdir(parents=True, exist_ok=True)
    target: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for s in splits:
        target.extend(_record(s.task, ex) for ex in s.target[:N_GENERAL_TARGET])
        test.extend(_read_jsonl(tdir.parent / s.task.name / "test.jsonl"))
    counts = {"pool": n_pool, "target": write_jsonl_atomic(tdir / "target.jsonl", target),
              "test": write_jsonl_atomic(tdir / "test.jsonl", test),
              "tasks": {s.task.name: len(s.test) for s in splits}}
    write_json_atomic(tdir / "task.json", {
        "name": "general", "kind": "instruction", "metric": "macro_accuracy", "group_field": "task",
        "source": "all", "seed": seed, "counts": counts, "built_from": built_from,
        "pool": "../pool.jsonl", "target": "target.jsonl", "test": "test.jsonl",
        "text_template": TEXT_TEMPLATE, "prompt_template": PROMPT_TEMPLATE, "answer_field": "output",
        "options_field": "options",
    })
    return {"path": "instruction/general", **counts}


def _write_dups_task(tdir: Path, name: str) -> dict[str, Any]:
    """The task ``name`` with ``pool-dups.jsonl`` as its pool (its own task.json, the same target and test)."""
    spec = _read_json(tdir.parent.parent / "instruction" / name / "task.json")
    spec.update(name=f"{name}-dups", pool="../../instruction/pool-dups.jsonl",
                target=f"../../instruction/{name}/target.jsonl", test=f"../../instruction/{name}/test.jsonl",
                same_split_as=f"instruction/{name}")
    spec["counts"] = {**spec["counts"], "pool": spec["counts"]["pool_dups"]}
    spec["pool_dups"] = {**spec["pool_dups"], "pool": spec["pool"]}
    tdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(tdir / "task.json", spec)
    return {"path": f"instruction-dups/{name}", "pool": spec["counts"]["pool"]}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
