"""The retrieval track: files, disjoint query splits, determinism, and the BBC task from the installed package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasksift.eval.taskgen.retrieval import Pair, RetrievalSource, bbc_retrieval, build_retrieval_task
from tasksift.eval.taskgen.sources import bbc_news
from tasksift.util.errors import InputError
from tests.eval.taskgen.helpers import read_jsonl, tree_bytes


def toy_retrieval() -> RetrievalSource:
    pairs = [Pair(f"q{q}", f"query {q}?", f"document {q}.{k} answers query {q}") for q in range(40)
             for k in range(1 + q % 3)]
    pairs.append(Pair("q0", "query 0?", "document 0.0 answers query 0"))  # a repeated pair counts once
    return RetrievalSource("toy", "pkg-toy", pairs, n_target=3, n_test=10,
                           extra_documents=[f"filler {i}" for i in range(5)] + ["document 1.0 answers query 1"])


def test_retrieval_task_files(tmp_path: Path) -> None:
    counts = build_retrieval_task(tmp_path, toy_retrieval(), seed=0, built_from={"pkg-toy": "1"})
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
        build_retrieval_task(tmp_path / name, toy_retrieval(), seed=seed)
    a, b, c = (tree_bytes(tmp_path / x) for x in "abc")
    assert a == b and a != c


def test_retrieval_task_refuses_too_few_queries(tmp_path: Path) -> None:
    spec = RetrievalSource("tiny", "p", [Pair(str(i), str(i), f"d{i}") for i in range(13)], n_target=3, n_test=10)
    with pytest.raises(InputError, match="13 queries cannot give 3 target and 10 test"):
        build_retrieval_task(tmp_path, spec)


def test_bbc_retrieval_from_the_installed_package(tmp_path: Path) -> None:
    counts = build_retrieval_task(tmp_path, bbc_retrieval(bbc_news()))
    assert counts["test_queries"] == 300 and counts["target_queries"] == 20
    assert counts["corpus"] > 2000 and counts["pool_pairs"] > 1500
