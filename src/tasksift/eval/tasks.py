"""Task directories: load one, check it, and turn a selection into training data.

A task directory holds ``task.json`` and jsonl files::

    task.json      {"name", "kind": "instruction" | "classification" | "retrieval", "metric", ...per kind}
    pool.jsonl     the candidate pool (``"pool"`` in task.json may name another path, relative to the directory)
    test.jsonl     held-out test items (``"test"`` may name another path)
    target.jsonl   the few target examples the selectors see (not read by the evaluation)
    corpus.jsonl   retrieval only: ``{"doc_id", "document"}`` (``"corpus"`` may name another path)

Per kind (defaults in brackets):

- ``instruction``: ``prompt_template`` [``"{instruction}\\n{input}\\n"``], ``answer_field`` [``output``],
  ``options_field`` [``options``], ``text_template`` (the selectors' text view; not used here). Test records
  also hold the options, a list of at least two distinct strings that includes the right answer. Metric
  ``accuracy``; with ``group_field`` (a field of every test record naming its group, as the general track's
  ``task``), also each group's accuracy (``accuracy/<group>``) and their mean, ``macro_accuracy``, which may
  then be the metric.
- ``classification``: ``text_field`` [``text``], ``label_field`` [``label``], ``labels`` (required, the label
  values in a fixed order). Metric ``accuracy``.
- ``retrieval``: ``query_field`` [``query``], ``doc_field`` [``document``]; pool records are positive pairs
  ``{"query_id", "query", "doc_id", "document"}``; test records ``{"query_id", "query", "relevant": [doc_id,
  ...]}``. Metric ``ndcg@10``.

Every problem raises :class:`~tasksift.util.errors.InputError` naming the file and what to fix. Record files are read
with :func:`tasksift.data.load_records` (so their errors name the line); a per-record problem found here names
the record by its 0-based position (``record 3``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.records import RecordSet, load_records
from tasksift.train.common import expand_counts
from tasksift.util.errors import InputError

KINDS = ("instruction", "classification", "retrieval")
METRIC_OF_KIND = {"instruction": "accuracy", "classification": "accuracy", "retrieval": "ndcg@10"}
DEFAULTS: dict[str, dict[str, Any]] = {
    "instruction": {"prompt_template": "{instruction}\n{input}\n", "answer_field": "output",
                    "options_field": "options", "text_template": "{instruction}\n{input}\n{output}"},
    "classification": {"text_field": "text", "label_field": "label"},
    "retrieval": {"query_field": "query", "doc_field": "document"},
}
#: ``evaluate``'s selection values that are not a run directory
FULL, NONE = "full", "none"


@dataclass
class InstructionData:
    """(prompt, answer) training pairs, or test items with their options and the right option's index."""

    prompts: list[str]
    answers: list[str]
    options: list[list[str]] = field(default_factory=list)
    correct: list[int] = field(default_factory=list)
    #: each test item's group (``group_field``), or empty
    groups: list[str] = field(default_factory=list)


@dataclass
class ClassificationData:
    texts: list[str]
    labels: np.ndarray


@dataclass
class RetrievalData:
    """Training pairs (queries[i], documents[i]); the test side adds the corpus and relevant doc ids."""

    queries: list[str]
    documents: list[str] = field(default_factory=list)
    corpus_ids: list[str] = field(default_factory=list)
    corpus: list[str] = field(default_factory=list)
    relevant: list[set[str]] = field(default_factory=list)


@dataclass
class Task:
    """A loaded, checked task directory. ``pool`` is the pool's RecordSet in the selectors' text view."""

    dir: Path
    spec: dict[str, Any]
    pool: RecordSet
    _views: dict[str, RecordSet] = field(default_factory=dict, repr=False)
    _test: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def kind(self) -> str:
        return str(self.spec["kind"])

    @property
    def metric(self) -> str:
        return str(self.spec["metric"])

    def path(self, key: str, default: str) -> Path:
        """A file the spec names (relative to the task directory), or its default name."""
        return (self.dir / str(self.spec.get(key, default))).resolve()

    def fingerprint(self) -> str:
        """sha256 over task.json and the bytes of the pool, test (and corpus) files."""
        digest = hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode())
        digest.update(self.pool.file_sha256.encode())
        for name in ("test", "corpus"):
            view = self._views.get(name)
            if view is not None:
                digest.update(view.file_sha256.encode())
        return digest.hexdigest()

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "metric": self.metric, "dir": str(self.dir),
                "pool": str(self.pool.path), "pool_rows": len(self.pool), "fingerprint": self.fingerprint()}

    # -- training data -------------------------------------------------------------------------------------
    def training_data(self, rows: np.ndarray) -> InstructionData | ClassificationData | RetrievalData:
        """The training examples at pool positions ``rows`` (repeats kept: they are the weights)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.kind == "instruction":
            prompts, answers = self._pool_view("prompt"), self._pool_view("answer")
            return InstructionData([prompts.texts[r] for r in rows], [answers.texts[r] for r in rows])
        if self.kind == "classification":
            texts, labels = self._pool_view("text"), self._pool_view("label")
            return ClassificationData([texts.texts[r] for r in rows],
                                      self._label_indices([labels.texts[r] for r in rows], labels))
        queries, docs = self._pool_view("query"), self._pool_view("document")
        return RetrievalData([queries.texts[r] for r in rows], [docs.texts[r] for r in rows])

    def test_data(self) -> InstructionData | ClassificationData | RetrievalData:
        """The held-out test items (read and checked once)."""
        if self._test is None:
            self._test = {"instruction": self._instruction_test, "classification": self._classification_test,
                          "retrieval": self._retrieval_test}[self.kind]()
        return self._test

    def check(self) -> None:
        """Read every view of the pool the kind trains on, and the test data, so a bad file fails now."""
        roles = {"instruction": ("prompt", "answer"), "classification": ("text", "label"),
                 "retrieval": ("query", "document")}[self.kind]
        for role in roles:
            self._pool_view(role)
        if self.kind == "classification":
            labels = self._pool_view("label")
            self._label_indices(labels.texts, labels)
        self.test_data()

    # -- helpers -------------------------------------------------------------------------------------------
    def _pool_view(self, role: str) -> RecordSet:
        key = f"pool:{role}"
        if key not in self._views:
            self._views[key] = load_records(self.pool.path, **self._view_args(role))
        return self._views[key]

    def _view_args(self, role: str) -> dict[str, Any]:
        s = self.spec
        return {"prompt": {"template": s.get("prompt_template")}, "answer": {"text_field": s.get("answer_field")},
                "text": {"text_field": s.get("text_field")}, "label": {"text_field": s.get("label_field")},
                "query": {"text_field": s.get("query_field")},
                "document": {"text_field": s.get("doc_field")}}[role]

    def _load(self, name: str, role: str, **extra: Any) -> RecordSet:
        path = self.path(name, f"{name}.jsonl")
        if not path.exists():
            raise InputError(f"the task has no {name} file", path=path,
                             fix=f"write {name}.jsonl into {self.dir} or name it in task.json as \"{name}\"")
        view = load_records(path, **self._view_args(role), **extra)
        self._views.setdefault(name, view)
        return view

    def _label_indices(self, values: list[str], view: RecordSet) -> np.ndarray:
        index = {str(label): i for i, label in enumerate(self.spec["labels"])}
        out = np.empty(len(values), dtype=np.int64)
        for i, value in enumerate(values):
            if value not in index:
                raise InputError(f"record {i} has label {value!r}, which is not in task.json's labels "
                                 f"{list(index)}", path=view.path, fix="add the label to \"labels\" or fix the record")
            out[i] = index[value]
        return out

    def _instruction_test(self) -> InstructionData:
        prompts = self._load("test", "prompt")
        answers = load_records(prompts.path, **self._view_args("answer"))
        records = prompts.take(np.arange(len(prompts)))
        field_name = self.spec["options_field"]
        data = InstructionData(prompts.texts, answers.texts)
        for i, (rec, answer) in enumerate(zip(records, answers.texts, strict=True)):
            opts = rec.get(field_name)
            if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(o, str) and o.strip() for o in opts):
                raise InputError(f"record {i} has no list of at least two non-empty string options in '{field_name}'",
                                 path=prompts.path, fix="give every test record its candidate answers")
            if len(set(opts)) != len(opts):
                raise InputError(f"record {i} repeats an option", path=prompts.path, fix="list each option once")
            if answer not in opts:
                raise InputError(f"record {i}: its answer {answer[:60]!r} is not among its options",
                                 path=prompts.path, fix="include the right answer in the options")
            data.options.append(list(opts))
            data.correct.append(opts.index(answer))
        group_field = self.spec.get("group_field")
        if group_field is not None:
            for i, rec in enumerate(records):
                group = rec.get(group_field)
                if not isinstance(group, str) or not group:
                    raise InputError(f"record {i} has no group name in '{group_field}'", path=prompts.path,
                                     fix=f"give every test record its group in '{group_field}', or drop "
                                         "\"group_field\" from task.json")
                data.groups.append(group)
        return data

    def _classification_test(self) -> ClassificationData:
        texts = self._load("test", "text")
        labels = load_records(texts.path, **self._view_args("label"))
        return ClassificationData(texts.texts, self._label_indices(labels.texts, labels))

    def _retrieval_test(self) -> RetrievalData:
        corpus = self._load("corpus", "document", id_field="doc_id")
        queries = self._load("test", "query")
        known = set(corpus.ids)
        relevant = []
        for i, rec in enumerate(queries.take(np.arange(len(queries)))):
            rel = rec.get("relevant")
            if not isinstance(rel, list) or not rel:
                raise InputError(f"record {i} has no non-empty list 'relevant' of doc_ids", path=queries.path,
                                 fix="list the relevant documents' doc_id values")
            missing = [str(d) for d in rel if str(d) not in known]
            if missing:
                raise InputError(f"record {i} names doc_id {missing[0]!r}, which is not in the corpus",
                                 path=queries.path, fix=f"add it to {corpus.path.name} or drop it")
            relevant.append({str(d) for d in rel})
        return RetrievalData(queries.texts, corpus_ids=corpus.ids, corpus=corpus.texts, relevant=relevant)


def load_task(task_dir: str | Path) -> Task:
    """Read ``task.json``, fill the defaults of its kind, load the pool and check every file the kind needs."""
    root = Path(task_dir).expanduser()
    spec_path = root / "task.json"
    if not root.is_dir():
        raise InputError("the task directory does not exist", path=root, fix="pass --task a task directory")
    if not spec_path.is_file():
        raise InputError("the task directory has no task.json", path=root,
                         fix='write task.json with {"name", "kind", "metric", ...} (see the eval docs)')
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read task.json as JSON: {exc}", path=spec_path, fix="write one JSON object") from exc
    if not isinstance(spec, dict):
        raise InputError("task.json is not a JSON object", path=spec_path, fix='write {"name": ..., "kind": ...}')
    spec = _check_spec(spec, spec_path)
    pool_path = (root / str(spec.get("pool", "pool.jsonl"))).resolve()
    if not pool_path.exists():
        raise InputError(f"the task's pool file {spec.get('pool', 'pool.jsonl')!r} does not exist", path=pool_path,
                         fix="set \"pool\" in task.json to the pool's path relative to the task directory")
    # the selectors' text view of the pool; for classification and retrieval it is also a training view
    view, role = {"instruction": ({"template": spec.get("text_template")}, "text view"),
                  "classification": ({"text_field": spec.get("text_field")}, "text"),
                  "retrieval": ({"text_field": spec.get("query_field")}, "query")}[spec["kind"]]
    pool = load_records(pool_path, **view)
    task = Task(dir=root.resolve(), spec=spec, pool=pool, _views={f"pool:{role}": pool})
    task.check()
    return task


def _check_spec(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    for key in ("name", "kind"):
        if key not in spec:
            raise InputError(f"task.json has no \"{key}\"", path=path,
                             fix='give "name" and "kind" (instruction, classification or retrieval)')
    kind = spec["kind"]
    if kind not in KINDS:
        raise InputError(f"unknown task kind {kind!r}", path=path, fix=f"use one of {', '.join(KINDS)}")
    out = {**DEFAULTS[kind], **spec}
    out.setdefault("metric", METRIC_OF_KIND[kind])
    if kind == "instruction" and out.get("group_field") is not None and not isinstance(out["group_field"], str):
        raise InputError("task.json's \"group_field\" must be a field name", path=path, fix='e.g. "task"')
    grouped = kind == "instruction" and out.get("group_field") is not None
    if out["metric"] != METRIC_OF_KIND[kind] and not (grouped and out["metric"] == "macro_accuracy"):
        raise InputError(f"metric {out['metric']!r} does not fit a {kind} task", path=path,
                         fix=f"use \"metric\": \"{METRIC_OF_KIND[kind]}\"")
    if kind == "classification":
        labels = out.get("labels")
        if not isinstance(labels, list) or len(labels) < 2:
            raise InputError("a classification task needs \"labels\": a list of at least two label values",
                             path=path, fix='e.g. "labels": ["ham", "spam"]')
        if len({str(v) for v in labels}) != len(labels):
            raise InputError("task.json's labels repeat a value", path=path, fix="list each label once")
    return out


def selection_rows(task: Task, selection: str | Path | None) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Pool positions to train on (each repeated by its count), or ``None`` for no finetuning; and a summary.

    ``None`` or ``"full"``: every pool row once; ``"none"``: no finetuning; otherwise a selection run
    directory (``selection.parquet`` + ``manifest.json``) made on this task's pool.
    """
    if selection is None or str(selection) == FULL:
        rows = np.arange(len(task.pool), dtype=np.int64)
        return rows, {"kind": FULL, "distinct_examples": len(rows), "training_examples": len(rows)}
    if str(selection) == NONE:
        return None, {"kind": NONE, "distinct_examples": 0, "training_examples": 0}
    run_dir = Path(selection).expanduser()
    table_path = run_dir / "selection.parquet"
    if not table_path.is_file():
        raise InputError("not a selection run directory (no selection.parquet)", path=run_dir,
                         fix="pass the --out directory of `tasksift select`, or 'full' or 'none'")
    import pyarrow.parquet as pq


    try:
        table = pq.read_table(table_path, columns=["row", "weight"])
    except Exception as exc:  # noqa: BLE001 - any unreadable table is the user's file
        raise InputError(f"cannot read the selection table: {exc}", path=table_path,
                         fix="rerun `tasksift select`") from exc
    rows = table.column("row").to_numpy().astype(np.int64)
    weights = table.column("weight").to_numpy().astype(np.float64)
    manifest = _read_manifest(run_dir)
    _check_same_pool(task, manifest, run_dir)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(task.pool)):
        raise InputError(f"the selection names pool row {int(rows.max())}, but the task's pool has "
                         f"{len(task.pool)} rows", path=table_path, fix="select on this task's pool")
    expanded = expand_counts(rows, weights)
    digest = hashlib.sha256(rows.tobytes() + weights.tobytes()).hexdigest()
    return expanded, {"kind": "run", "path": str(run_dir.resolve()), "method": manifest.get("method"),
                      "budget": manifest.get("budget"), "distinct_examples": int(len(rows)),
                      "training_examples": int(len(expanded)), "sha256": digest}


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the selection's manifest: {exc}", path=path, fix="rerun `tasksift select`") \
            from exc
    return manifest if isinstance(manifest, dict) else {}


def _check_same_pool(task: Task, manifest: dict[str, Any], run_dir: Path) -> None:
    """A selection whose manifest names another pool file (by content) cannot be trained on this task."""
    pool_info = (manifest.get("inputs") or {}).get("pool") or {}
    sha = pool_info.get("sha256")
    if sha and sha != task.pool.file_sha256:
        raise InputError(f"the selection was made on another pool ({pool_info.get('path')}) than the task's "
                         f"{task.pool.path}", path=run_dir, fix="select with --pool set to the task's pool file")
    rows = (manifest.get("counts") or {}).get("pool")
    if sha is None and rows is not None and int(rows) != len(task.pool):
        raise InputError(f"the selection was made on a pool of {rows} rows, the task's has {len(task.pool)}",
                         path=run_dir, fix="select on this task's pool")
