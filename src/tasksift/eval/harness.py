"""Finetune a small model on a selection and score it on the task's held-out test set, over several seeds.

:func:`evaluate` is the one entry point (``tasksift eval`` calls it):

1. load and check the task directory (:func:`tasksift.eval.tasks.load_task`);
2. turn the selection into training rows: a run directory's ``selection.parquet`` (each row repeated by its
   weight, a training count), ``"full"`` (every pool row once) or ``"none"`` (no finetuning: the base model);
3. for each seed: finetune the track's model the same way for every selection (same settings), score the test
   set, record the metrics, steps, examples seen and seconds;
4. write ``eval.json`` (atomically) after every finished seed, so an interrupted evaluation resumes at the
   next unfinished seed. A stored seed is reused only when everything that decides its result is unchanged
   (task files, selection, model files, settings): the ``key`` in ``eval.json`` hashes them.

Tracks: ``instruction`` (SmolLM2-135M-Instruct + LoRA, option log-likelihood accuracy, ``accuracy_norm`` and
``answer_loss``), ``classification`` (MiniLM + linear head, accuracy), ``retrieval`` (MiniLM bi-encoder,
NDCG@10 and Recall@10/20/100). With ``"none"`` the instruction and retrieval scores do not depend on the seed,
so only the first seed runs.

``eval.json`` goes into the selection's run directory; for ``"full"`` and ``"none"`` (results that belong to the
task, shared by every comparison on it) into ``<task>/baselines/<full|none>/``; ``out`` overrides both.

``device`` (``cpu`` by default, ``auto``, ``cuda``, ``cuda:N``) is where the models train and score; it is
recorded in ``eval.json`` (for the call and for each seed) but is not part of its key, so seeds finished on one
device are kept by a run on another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.eval.metrics import accuracy, group_accuracies, mean_std, option_metrics, retrieval_metrics
from tasksift.eval.tasks import Task, load_task, selection_rows
from tasksift.selection.manifest import versions
from tasksift.train import (
    ClassifierSettings,
    LMSettings,
    RetrieverSettings,
    build_classifier,
    finetune_classifier,
    finetune_lm,
    load_causal_lm,
    load_encoder,
    predict_logits,
    resolve_encoder,
    resolve_lm,
    retrieve,
    score_options,
    setup_torch,
)
from tasksift.train.resolve import model_fingerprint
from tasksift.train.retriever import PairTrainer
from tasksift.train.store import RunStore, eval_set_key, run_key
from tasksift.util.device import device_info, resolve_device
from tasksift.util.errors import InputError
from tasksift.util.io import write_json_atomic
from tasksift.util.params import convert_params, from_type_hints

#: the file the harness writes
EVAL_FILE = "eval.json"
#: how deep the retrieval ranking goes (the largest recall cut-off)
RETRIEVAL_DEPTH = 100


def settings_class(kind: str) -> type:
    """The settings dataclass of a track."""
    return {"instruction": LMSettings, "classification": ClassifierSettings, "retrieval": RetrieverSettings}[kind]


def make_settings(kind: str, *, epochs: int | None = None, max_steps: int | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Any:
    """The track's default settings with ``epochs``, ``max_steps`` and ``overrides`` applied.

    Override values may be strings (from the command line); they are converted to the field's type.
    """
    cls = settings_class(kind)
    declared = from_type_hints(cls)
    values = convert_params(f"{kind} training", declared, overrides or {})
    for field in dataclasses.fields(cls):
        if typing.get_origin(typing.get_type_hints(cls)[field.name]) is tuple and values.get(field.name) is not None:
            values[field.name] = tuple(values[field.name])
    if epochs is not None:
        values["epochs"] = int(epochs)
    if max_steps is not None:
        values["max_steps"] = int(max_steps)
    if values.get("epochs", 1) < 0 or (values.get("max_steps") is not None and values["max_steps"] < 0):
        raise InputError("epochs and max_steps cannot be negative")
    return cls(**values)


def evaluate(task_dir: str | Path, selection: str | Path | None = None, *, seeds: Sequence[int] | int = (0,),
             model: str | Path | None = None, epochs: int | None = None, max_steps: int | None = None,
             settings: Mapping[str, Any] | None = None, out: str | Path | None = None, resume: bool = True,
             progress: bool = True, device: Any = None) -> dict[str, Any]:
    """Finetune on ``selection`` and score on the task's test set, once per seed; the result (also in eval.json).

    ``selection``: a run directory, ``"full"`` or ``None`` (every pool row once) or ``"none"`` (no finetuning).
    ``seeds``: seed values, or a count n meaning seeds 0..n-1. ``model``: the model to start from (default: the
    track's, see the module docstring). ``epochs`` / ``max_steps`` / ``settings``: training settings (the same
    for every selection of a comparison). ``resume``: reuse seeds a previous run with the same key finished.
    ``device``: where the models run (module docstring).

    The result holds ``runs`` (per seed: metrics, training statistics, seconds), ``mean`` and ``std`` (sample
    standard deviation) of each metric over the seeds, and ``score`` (the mean of the task's metric).
    """
    t0 = time.perf_counter()
    where = resolve_device(device)
    seed_list = _seed_list(seeds)
    task = load_task(task_dir)
    rows, sel_info = selection_rows(task, selection)
    track_settings = make_settings(task.kind, epochs=epochs, max_steps=max_steps, overrides=settings)
    model_name, model_path = _resolve_model(task.kind, model, progress)
    seed_independent = rows is None and task.kind != "classification"
    if seed_independent:
        seed_list = seed_list[:1]
    out_dir = _out_dir(task, selection, sel_info, out)
    result = {
        "task": task.info(),
        "selection": sel_info,
        "model": {"name": model_name, "path": str(model_path), "fingerprint": _model_fingerprint(model_path)},
        "settings": track_settings.to_dict(),
        "seeds": seed_list,
        "seed_independent": seed_independent,
        "metric": task.metric,
        "device": device_info(where),
    }
    # what decides a seed's result, by content (moving the task or the run directory keeps it)
    decides = {"task": task.fingerprint(), "selection": sel_info.get("sha256", sel_info["kind"]),
               "model": result["model"]["fingerprint"], "settings": result["settings"]}
    result["key"] = hashlib.sha256(json.dumps(decides, sort_keys=True, default=str).encode()).hexdigest()
    runs = _stored_runs(out_dir / EVAL_FILE, result["key"]) if resume else {}
    runs = {s: runs[s] for s in map(str, seed_list) if s in runs}
    todo = [s for s in seed_list if str(s) not in runs]
    if todo:
        setup_torch()
        track = _TRACKS[task.kind](task, model_path, track_settings, progress, where)
        data = task.training_data(rows) if rows is not None else None
        for seed in todo:
            runs[str(seed)] = track.run(seed, data)
            _report(progress, task, seed, runs[str(seed)])
            _write(out_dir, _finish(result, runs, seed_list), complete=len(runs) == len(seed_list))
    result = _finish(result, runs, seed_list)
    # the work of every seed (some may come from an earlier, interrupted call), and this call's own time
    result["seconds"] = round(sum(float(r.get("seconds", 0.0)) for r in result["runs"].values()), 3)
    result["call_seconds"] = round(time.perf_counter() - t0, 3)
    written = _write(out_dir, result, complete=True)
    # where the file is, for the caller; not stored in it (a path of this machine means nothing on another)
    return {**written, "eval_file": str(out_dir / EVAL_FILE)}


def _seed_list(seeds: Sequence[int] | int) -> list[int]:
    if isinstance(seeds, int | np.integer):
        if seeds < 1:
            raise InputError(f"--seeds {seeds} must be at least 1")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out or len(set(out)) != len(out):
        raise InputError(f"seeds {out} must be distinct and at least one")
    return out


def _resolve_model(kind: str, model: str | Path | None, progress: bool) -> tuple[str, Path]:
    return resolve_lm(model, progress=progress) if kind == "instruction" else resolve_encoder(model)


def _model_fingerprint(path: Path) -> str:
    return model_fingerprint(path)


def _out_dir(task: Task, selection: str | Path | None, sel_info: dict[str, Any], out: str | Path | None) -> Path:
    if out is not None:
        return Path(out).expanduser()
    if sel_info["kind"] == "run":
        return Path(str(selection)).expanduser()
    return task.dir / "baselines" / sel_info["kind"]


def _stored_runs(path: Path, key: str) -> dict[str, Any]:
    """Finished seeds of an earlier evaluation with the same key (nothing if the file is absent or stale)."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict) or stored.get("key") != key or not isinstance(stored.get("runs"), dict):
        return {}
    return stored["runs"]


def _finish(result: dict[str, Any], runs: dict[str, Any], seed_list: list[int]) -> dict[str, Any]:
    """The result with the runs of the requested seeds, each metric's mean and std over them, and steps."""
    chosen = [runs[str(s)] for s in seed_list if str(s) in runs]
    names = list(chosen[0]["metrics"]) if chosen else []
    mean, std = {}, {}
    for name in names:
        mean[name], std[name] = mean_std([r["metrics"][name] for r in chosen])
    steps = [r["train"]["steps"] if r["train"] else 0 for r in chosen]
    return {**result, "runs": {str(s): runs[str(s)] for s in seed_list if str(s) in runs}, "mean": mean,
            "std": std, "score": mean.get(result["metric"]), "steps": steps}


def _write(out_dir: Path, record: dict[str, Any], complete: bool) -> dict[str, Any]:
    """Write ``eval.json`` (atomically) with the completeness flag and package versions; the record written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {**record, "complete": complete,
              "versions": versions(("peft", "accelerate"))}
    write_json_atomic(out_dir / EVAL_FILE, record)
    return record


def _report(progress: bool, task: Task, seed: int, run: dict[str, Any]) -> None:
    if not progress:
        return
    from rich.console import Console

    metrics = ", ".join(f"{k} {v:.4f}" for k, v in run["metrics"].items())
    steps = run["train"]["steps"] if run["train"] else 0
    Console(stderr=True).print(f"{task.name} seed {seed}: {metrics} ({steps} steps, {run['seconds']:.1f}s)")


# ---------------------------------------------------------------------------------------------------------
# Tracks: one model family each; ``run(seed, data)`` trains (unless data is None) and scores the test set
# ---------------------------------------------------------------------------------------------------------
class _Track(ABC):
    def __init__(self, task: Task, model_path: Path, settings: Any, progress: bool, device: Any) -> None:
        self.task = task
        self.model_path = model_path
        self.settings = settings
        self.progress = progress
        self.device = device
        self.test = task.test_data()

    def run(self, seed: int, data: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        scorer, stats = self.train(seed, data)
        t1 = time.perf_counter()
        metrics = self.score(scorer)
        t2 = time.perf_counter()
        return {"seed": seed, "metrics": metrics, "train": stats.to_dict() if stats is not None else None,
                "train_seconds": round(t1 - t0, 3), "eval_seconds": round(t2 - t1, 3),
                "seconds": round(t2 - t0, 3), "device": str(self.device)}

    @abstractmethod
    def train(self, seed: int, data: Any) -> tuple[Any, Any]:
        """``(model to score, TrainStats or None)``; ``data`` None means no finetuning."""

    @abstractmethod
    def score(self, model: Any) -> dict[str, float]:
        """The test-set metrics of ``model``."""


class _InstructionTrack(_Track):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.base, self.tokenizer = load_causal_lm(self.model_path)
        self.base.to(self.device)  # each finetuning trains a copy of it where it is
        self._store: Any = None  # the training store of the model last trained; None for the base model

        grouped = [self.test.groups] if self.test.groups else []
        self._eval_set = eval_set_key(self.test.prompts, self.test.options, self.test.correct, *grouped)

    def train(self, seed: int, data: Any) -> tuple[Any, Any]:
        self._store = None
        if data is None:
            return self.base, None

        key = run_key(_model_fingerprint(self.model_path), self.settings.to_dict(), seed,
                      [data.prompts, data.answers])
        self._store = RunStore(key)
        return finetune_lm(self.base, self.tokenizer, data.prompts, data.answers, self.settings, seed=seed,
                           progress=self.progress, desc=f"finetune seed {seed}", store=self._store)

    def score(self, model: Any) -> dict[str, float]:
        store = self._store
        kept = store.scores(self._eval_set) if store is not None else None
        if kept is not None:  # this training was scored on this test set before (under another selection)
            return kept
        sums, counts = score_options(model, self.tokenizer, self.test.prompts, self.test.options, self.settings,
                                     progress=self.progress)
        metrics = option_metrics(sums, counts, self.test.correct)
        if self.test.groups:
            metrics.update(group_accuracies(sums, self.test.correct, self.test.groups))
        if store is not None:
            store.save_scores(self._eval_set, metrics)
        return metrics


class _ClassificationTrack(_Track):
    def train(self, seed: int, data: Any) -> tuple[Any, Any]:
        model, self.tokenizer = build_classifier(self.model_path, len(self.task.spec["labels"]), seed=seed,
                                                 device=self.device)
        if data is None:
            return model, None
        stats = finetune_classifier(model, self.tokenizer, data.texts, data.labels, self.settings, seed=seed,
                                    progress=self.progress, desc=f"finetune seed {seed}")
        return model, stats

    def score(self, model: Any) -> dict[str, float]:
        logits = predict_logits(model, self.tokenizer, self.test.texts, self.settings, progress=self.progress)
        return {"accuracy": accuracy(np.argmax(logits, axis=1), self.test.labels)}


class _RetrievalTrack(_Track):
    def train(self, seed: int, data: Any) -> tuple[Any, Any]:
        if data is None:
            encoder, self.tokenizer = load_encoder(self.model_path, normalize=True)
            return encoder.to(self.device), None
        # hard negatives, base cosines and pruning as `tasksift retriever train` does; mined once for all seeds
        if getattr(self, "_trainer_of", None) is not data:
            self._trainer_of = data
            self._trainer = PairTrainer(self.model_path, data.queries, data.documents, self.settings,
                                        progress=self.progress, device=self.device)
        run = self._trainer.run(seed, desc=f"finetune seed {seed}")
        self.tokenizer = run.tokenizer
        return run.encoder, run.stats

    def score(self, encoder: Any) -> dict[str, float]:
        ranked = retrieve(encoder, self.tokenizer, self.test.corpus, self.test.queries, RETRIEVAL_DEPTH,
                          self.settings, progress=self.progress)
        ids = self.test.corpus_ids
        ranked_ids = [[ids[j] for j in row if j >= 0] for row in ranked]
        return retrieval_metrics(ranked_ids, self.test.relevant)


_TRACKS: dict[str, type[_Track]] = {"instruction": _InstructionTrack, "classification": _ClassificationTrack,
                                    "retrieval": _RetrievalTrack}
