"""``tasksift retriever train``: finetune the bi-encoder on a retrieval task with each pruning strategy and record
quality against training steps.

For every pruning value (``none``, ``static``, ``dynamic``, ``infobatch``) and seed, the base model is finetuned
for exactly ``steps`` optimizer steps (same settings, same hard negatives) and scored on the task's test
queries over the corpus every ``eval_every`` steps and at the end. Step 0 is the base model, scored once.

Outputs (``OUT``; every file written atomically)::

    base.json                 the base model's test metrics (step 0 of every curve)
    <pruning>/seed-<s>.json   one run: its curve (step, examples seen, training seconds, metrics), final metrics,
                              training statistics and what the pruning did (kept pairs, passes and schedules)
    summary.json, summary.md  mean and std over seeds of the final metrics, the mean curves, and the steps
                              dynamic pruning needs to reach the final NDCG@10 of no pruning
    cache/                    the base model's vectors of the training queries and documents

A run whose file exists with the same ``key`` (task, subset, settings, model, steps, evaluation points) is
reused, so an interrupted command resumes at the first unfinished (pruning, seed).

The task may be cut down for a small machine, deterministically (a generator seeded with ``data_seed``):
``train_queries`` keeps that many distinct training queries with all their pairs; ``test_queries`` that many
test queries; ``corpus`` that many corpus documents, always including every relevant document of the kept test
queries. Nothing here is tuned on the test queries: they are only scored.

``device`` (``cpu`` by default) is where the encoders train and encode; it is recorded in ``summary.json`` and in
each run's file, not in their keys.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.eval.harness import make_settings
from tasksift.eval.metrics import mean_std, retrieval_metrics
from tasksift.eval.tasks import load_task
from tasksift.train import setup_torch
from tasksift.train.models import load_encoder
from tasksift.train.resolve import model_fingerprint, resolve_model
from tasksift.train.retriever import PairTrainer, retrieve
from tasksift.train.samplers import PRUNING
from tasksift.util.device import device_info, resolve_device
from tasksift.util.errors import InputError
from tasksift.util.io import atomic_path, write_json_atomic

#: the metrics of the summary table, the headline first
HEADLINE = ("ndcg@10", "recall@20", "recall@10", "recall@100")
RETRIEVAL_DEPTH = 100
SUMMARY_FILE = "summary.json"


def parse_pruning(value: str | Sequence[str]) -> list[str]:
    """``"none,dynamic"`` -> ``["none", "dynamic"]``, each checked."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if not names:
        raise InputError("no pruning given", fix=f"use one or more of {', '.join(PRUNING)}, comma-separated")
    for name in names:
        if name not in PRUNING:
            raise InputError(f"unknown pruning {name!r}", fix=f"use one of {', '.join(PRUNING)}")
    return list(dict.fromkeys(names))


def subset_task(train_queries: list[str], train_docs: list[str], test: Any, *, n_train: int | None,
                n_test: int | None, n_corpus: int | None, data_seed: int = 0) -> dict[str, Any]:
    """The (possibly reduced) training pairs and test side; see the module docstring."""
    for flag, value in (("--train-queries", n_train), ("--test-queries", n_test), ("--corpus", n_corpus)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value} must be at least 1", fix=f"leave {flag} out to keep the whole task")
    rng = np.random.default_rng(data_seed)
    rows = np.arange(len(train_queries))
    distinct = list(dict.fromkeys(train_queries))
    if n_train is not None and n_train < len(distinct):
        keep = {distinct[i] for i in rng.choice(len(distinct), size=n_train, replace=False)}
        rows = np.array([i for i, q in enumerate(train_queries) if q in keep], dtype=np.int64)
    t_rows = np.arange(len(test.queries))
    if n_test is not None and n_test < len(t_rows):
        t_rows = np.sort(rng.choice(len(t_rows), size=n_test, replace=False))
    relevant = [test.relevant[i] for i in t_rows]
    c_rows = np.arange(len(test.corpus))
    if n_corpus is not None and n_corpus < len(c_rows):
        needed = set().union(*relevant)
        must = [i for i, d in enumerate(test.corpus_ids) if d in needed]
        if len(must) > n_corpus:
            raise InputError(f"--corpus {n_corpus} is smaller than the {len(must)} relevant documents of the test "
                             "queries", fix=f"ask for at least {len(must)} documents or fewer test queries")
        others = np.setdiff1d(c_rows, must)
        fill = rng.choice(others, size=n_corpus - len(must), replace=False)
        c_rows = np.sort(np.concatenate([np.asarray(must, dtype=np.int64), fill]))
    return {"queries": [train_queries[i] for i in rows], "documents": [train_docs[i] for i in rows],
            "test_queries": [test.queries[i] for i in t_rows], "relevant": relevant,
            "corpus_ids": [test.corpus_ids[i] for i in c_rows], "corpus": [test.corpus[i] for i in c_rows]}


def evaluation_steps(steps: int, eval_every: int) -> list[int]:
    """Steps after which the model is scored: every ``eval_every`` steps and the last one."""
    if steps < 1:
        raise InputError(f"--steps {steps} must be at least 1")
    every = eval_every if eval_every > 0 else steps
    return sorted({*range(every, steps + 1, every), steps})


def steps_to_reach(curve: Sequence[dict[str, Any]], target: float, metric: str = "ndcg@10") -> int | None:
    """The first evaluation step whose ``metric`` is at least ``target`` (``None`` if none is)."""
    for point in curve:
        if point["metrics"][metric] >= target - 1e-12:
            return int(point["step"])
    return None


def mean_curve(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The curve averaged over runs, point by point (runs share their evaluation steps)."""
    if not runs:
        return []
    out = []
    for points in zip(*(r["curve"] for r in runs), strict=True):
        names = list(points[0]["metrics"])
        out.append({"step": points[0]["step"],
                    "metrics": {n: float(np.mean([p["metrics"][n] for p in points])) for n in names},
                    "std": {n: mean_std([p["metrics"][n] for p in points])[1] for n in names},
                    "train_seconds": float(np.mean([p["train_seconds"] for p in points]))})
    return out


class _Scorer:
    """Scores an encoder on the (reduced) test queries over the (reduced) corpus."""

    def __init__(self, data: dict[str, Any], settings: Any) -> None:
        self.data = data
        self.settings = settings

    def __call__(self, encoder: Any, tokenizer: Any) -> dict[str, float]:
        ranked = retrieve(encoder, tokenizer, self.data["corpus"], self.data["test_queries"], RETRIEVAL_DEPTH,
                          self.settings, progress=False)
        ids = self.data["corpus_ids"]
        return retrieval_metrics([[ids[j] for j in row if j >= 0] for row in ranked], self.data["relevant"])


def train_with_pruning(task_dir: str | Path, pruning: str | Sequence[str], *, steps: int, seeds: int = 3,
                       out: str | Path, eval_every: int = 0, model: str | None = None,
                       settings: dict[str, Any] | None = None, train_queries: int | None = None,
                       test_queries: int | None = None, corpus: int | None = None, data_seed: int = 0,
                       progress: bool = True, log: Callable[[str], None] | None = None,
                       device: Any = None) -> dict[str, Any]:
    """Run every (pruning, seed) not finished yet and return the summary (also in ``OUT/summary.json``);
    ``device``: where the encoders run (module docstring)."""
    where = resolve_device(device)
    names = parse_pruning(pruning)
    if seeds < 1:
        raise InputError(f"--seeds {seeds} must be at least 1")
    task = load_task(task_dir)
    if task.kind != "retrieval":
        raise InputError(f"the task is a {task.kind} task, not a retrieval task", path=task.dir,
                         fix="pass a task directory with \"kind\": \"retrieval\" (tasksift data build writes some "
                             "under retrieval/)")
    overrides = dict(settings or {})
    if "pruning" in overrides or "max_steps" in overrides:
        raise InputError("set pruning and steps with --pruning and --steps, not as training settings")
    base_settings = make_settings("retrieval", max_steps=steps, overrides=overrides)
    checkpoints = evaluation_steps(steps, eval_every)
    _, model_path = resolve_model(model)
    pool = task.training_data(np.arange(len(task.pool)))
    data = subset_task(pool.queries, pool.documents, task.test_data(), n_train=train_queries, n_test=test_queries,
                       n_corpus=corpus, data_seed=data_seed)
    out_dir = Path(out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda message: None)
    threads = setup_torch()
    scorer = _Scorer(data, base_settings)
    described = {"task": task.fingerprint(), "subset": {"train_queries": train_queries, "test_queries": test_queries,
                                                        "corpus": corpus, "data_seed": data_seed},
                 "model": model_fingerprint(model_path), "evaluation_steps": checkpoints}
    sizes = {"train_pairs": len(data["queries"]), "train_queries": len(set(data["queries"])),
             "test_queries": len(data["test_queries"]), "corpus": len(data["corpus"])}

    base_key = _key({**described, "settings": {"max_length": base_settings.max_length}})
    base = _stored(out_dir / "base.json", base_key)
    if base is None:
        t0 = time.perf_counter()
        encoder, tokenizer = load_encoder(model_path, normalize=True)
        base = {"key": base_key, "metrics": scorer(encoder.to(where), tokenizer),
                "seconds": round(time.perf_counter() - t0, 2)}
        write_json_atomic(out_dir / "base.json", base)
    say(f"base model: {_fmt(base['metrics'])}")

    trainers = {name: PairTrainer(model_path, data["queries"], data["documents"],
                                  make_settings("retrieval", max_steps=steps, overrides={**overrides, "pruning": name}),
                                  progress=progress, cache_dir=out_dir / "cache", device=where) for name in names}
    # seeds outer: an interrupted command has every pruning at its first seeds
    for seed in range(seeds):
        for name, trainer in trainers.items():
            run_settings = trainer.settings
            path = out_dir / name / f"seed-{seed}.json"
            key = _key({**described, "settings": run_settings.to_dict(), "seed": seed})
            if _stored(path, key) is not None:
                continue
            record = _one_run(trainer, seed, checkpoints, scorer, base["metrics"])
            record.update(key=key, pruning=name, seed=seed, settings=run_settings.to_dict(), device=str(where))
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, record)
            say(f"{name} seed {seed}: {_fmt(record['metrics'])} ({record['train']['steps']} steps, "
                f"{record['train_seconds']:.0f}s training)")
    summary = summarize(out_dir, names, seeds, base)
    summary.update(task=task.info(), sizes=sizes, steps=steps, evaluation_steps=checkpoints,
                   settings={k: v for k, v in base_settings.to_dict().items() if k != "pruning"},
                   model=str(model_path), machine={"platform": platform.platform(), "threads": threads,
                                                   "python": platform.python_version(), **device_info(where)})
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    with atomic_path(out_dir / "summary.md") as tmp:
        tmp.write_text(markdown_summary(summary), encoding="utf-8")
    return summary


def _one_run(trainer: Any, seed: int, checkpoints: list[int], scorer: _Scorer,
             base_metrics: dict[str, float]) -> dict[str, Any]:
    curve = [{"step": 0, "examples_seen": 0, "train_seconds": 0.0, "metrics": base_metrics}]
    wanted = set(checkpoints)
    clock = {"eval": 0.0, "start": time.perf_counter()}

    def on_step(encoder: Any, tokenizer: Any, stats: Any) -> None:
        if stats.steps not in wanted:
            return
        t0 = time.perf_counter()
        metrics = scorer(encoder, tokenizer)
        trained = t0 - clock["start"] - clock["eval"]
        clock["eval"] += time.perf_counter() - t0
        curve.append({"step": stats.steps, "examples_seen": stats.examples_seen,
                      "train_seconds": round(trained, 3), "metrics": metrics})

    run = trainer.run(seed, on_step=on_step, desc=f"{trainer.settings.pruning} seed {seed}")
    if curve[-1]["step"] != run.stats.steps:  # a sampler that ran dry before the last checkpoint
        t0 = time.perf_counter()
        curve.append({"step": run.stats.steps, "examples_seen": run.stats.examples_seen,
                      "train_seconds": round(t0 - clock["start"] - clock["eval"], 3),
                      "metrics": scorer(run.encoder, run.tokenizer)})
    return {"curve": curve, "metrics": curve[-1]["metrics"], "train": run.stats.to_dict(),
            "train_seconds": curve[-1]["train_seconds"], "eval_seconds": round(clock["eval"], 3),
            "pruning_info": run.pruning}


def summarize(out_dir: Path, names: Sequence[str], seeds: int, base: dict[str, Any]) -> dict[str, Any]:
    """Mean and std of the final metrics per pruning, mean curves, and dynamic pruning's steps to match none."""
    rows: dict[str, Any] = {"base": {"seeds": 0, "mean": base["metrics"], "std": {}, "train_seconds": 0.0}}
    curves: dict[str, Any] = {}
    runs_of: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        runs = []
        for seed in range(seeds):
            path = out_dir / name / f"seed-{seed}.json"
            if path.is_file():
                runs.append(json.loads(path.read_text(encoding="utf-8")))
        if not runs:
            continue
        runs_of[name] = runs
        metrics = list(runs[0]["metrics"])
        stats = {m: mean_std([r["metrics"][m] for r in runs]) for m in metrics}
        rows[name] = {"seeds": len(runs), "mean": {m: s[0] for m, s in stats.items()},
                      "std": {m: s[1] for m, s in stats.items()},
                      "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
                      "examples_seen": float(np.mean([r["train"]["examples_seen"] for r in runs])),
                      "pruning": runs[0].get("pruning_info", {})}
        curves[name] = mean_curve(runs)
    reach: dict[str, Any] = {}
    if "none" in runs_of and "dynamic" in runs_of:
        target = rows["none"]["mean"]["ndcg@10"]
        steps_total = curves["none"][-1]["step"]
        reached = steps_to_reach(curves["dynamic"], target)
        reach = {"target_ndcg@10": target, "steps_of_none": steps_total, "dynamic_mean_curve": reached,
                 "dynamic_per_seed": [steps_to_reach(r["curve"], target) for r in runs_of["dynamic"]],
                 "share_of_none": reached / steps_total if reached is not None else None}
    return {"rows": rows, "curves": curves, "dynamic_reaches_none": reach}


def markdown_summary(summary: dict[str, Any]) -> str:
    """The results table: base model and each pruning, final metrics as mean ± std over seeds."""
    header = ["training", "seeds", *[f"{m}" for m in HEADLINE], "train s / seed", "pairs seen / seed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    labels = {"base": "base model (no finetuning)", "none": "no pruning", "static": "static pruning (OPERA-SP)",
              "dynamic": "dynamic pruning (OPERA-DP)", "infobatch": "InfoBatch"}
    for name, row in summary["rows"].items():
        cells = [labels.get(name, name), str(row["seeds"]) if row["seeds"] else "-"]
        for m in HEADLINE:
            mean = row["mean"].get(m)
            std = row["std"].get(m)
            cells.append("" if mean is None else f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
        cells.append(f"{row['train_seconds']:.0f}" if row["seeds"] else "-")
        cells.append(f"{row['examples_seen']:,.0f}" if row["seeds"] else "-")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    reach = summary.get("dynamic_reaches_none") or {}
    if reach:
        got = reach["dynamic_mean_curve"]
        per_seed = ", ".join(str(s) if s is not None else "not reached" for s in reach["dynamic_per_seed"])
        text += (f"\nNo pruning ends at NDCG@10 {reach['target_ndcg@10']:.4f} after {reach['steps_of_none']} steps; "
                 + (f"dynamic pruning's mean curve reaches it at step {got} ({reach['share_of_none']:.0%} of the "
                    "steps)" if got is not None else "dynamic pruning's mean curve does not reach it")
                 + f"; per seed: {per_seed}"
                 + " (evaluation points only).\n")
    return text


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _stored(path: Path, key: str) -> dict[str, Any] | None:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) and stored.get("key") == key else None


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{m} {metrics[m]:.4f}" for m in HEADLINE if m in metrics)
