"""``tasksift compare``: several methods on one task, the same budget and training, several seeds.

For every (method, seed) the selection is made with that seed and trained with that seed
(``OUT/<method>/seed-<s>/``: the selection files and its ``eval.json``); both steps resume, so an interrupted
comparison picks up at the first unfinished (method, seed). A selector that does not read the seed with its
parameters (``Selector.reads_seed``: less, fishersft, spice without windows) selects once: later seeds train a copy
of the first seed's selection, marked ``reused_from`` in its manifest. Rows for no finetuning (``none``) and
the full pool (``full``, by default one seed since it is the costly one: its seconds are in the table) come
from the task's shared baselines. ``comparison.json`` and ``comparison.md`` are rewritten after every finished
result; rows of other methods that an earlier comparison in the same folder ran with the same budget, seeds and
training are kept, so methods can be added to a comparison later.

Retrieval rows: ``opera-sp`` is a selector like any other (its budget is the share of pairs kept); ``opera-dp``
and ``infobatch`` select nothing: their rows train on the full pool with the retriever's ``pruning`` setting set
to ``dynamic`` or ``infobatch`` (``eval.json`` in ``OUT/<method>/seed-<s>/``).

``device`` is where features are computed and models train and score (``cpu`` by default); it is recorded with
the machine, not with the training settings, so rows finished on one device are kept by a comparison on another.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasksift.api import select
from tasksift.eval.harness import evaluate
from tasksift.eval.tasks import load_task
from tasksift.selectors import get
from tasksift.train.samplers import TRAINING_TIME
from tasksift.util.device import device_info, resolve_device
from tasksift.util.errors import InputError
from tasksift.util.io import atomic_path, write_json_atomic

#: methods that select nothing but prune while the retriever trains, and the training setting that does it


def _text_view(spec: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """How selectors read the task's pool records."""
    if spec.get("text_template"):
        return {"template": spec["text_template"]}
    if kind == "classification":
        return {"text_field": spec.get("text_field", "text")}
    if kind == "retrieval":
        return {"template": f"{{{spec.get('query_field', 'query')}}}\n{{{spec.get('doc_field', 'document')}}}"}
    return {"text_field": "text"}


def _finished_selection(run_dir: Path, call: Mapping[str, Any]) -> bool:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    done = manifest.get("call", {})
    return (run_dir / "selection.parquet").is_file() and all(done.get(k) == v for k, v in call.items())


def _reads_seed(method: str, params: Mapping[str, Any]) -> bool:
    """Whether ``method`` with ``params`` selects differently at different seeds (``Selector.reads_seed``)."""
    cls = get(method)
    names = set(cls.param_defaults()) - {"seed"}
    return cls(1, **{k: v for k, v in params.items() if k in names}).reads_seed()


def _reuse_seed_free(out_dir: Path, method: str, call: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """For a selector that does not read the seed (:func:`_reads_seed`), put an earlier seed's finished
    selection in this seed's folder instead of selecting again; ``False`` when there is none to reuse.

    The copy's manifest says where it came from (``reused_from``) and carries this seed, so the folder reads
    as what ``tasksift select`` with this seed would have written; the files are replaced whole."""
    seed = int(call["seed"])
    if seed == 0 or _reads_seed(method, params):
        return False
    for earlier in range(seed):
        src = out_dir / method / f"seed-{earlier}"
        if not _finished_selection(src, {**call, "seed": earlier}):
            continue
        dst = out_dir / method / f"seed-{seed}"
        dst.mkdir(parents=True, exist_ok=True)
        for path in sorted(src.iterdir()):
            if path.is_file() and path.name not in ("eval.json", "manifest.json") and not path.name.startswith("."):
                with atomic_path(dst / path.name) as tmp:
                    tmp.write_bytes(path.read_bytes())
        manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
        manifest["seed"] = seed
        manifest["call"] = {**manifest.get("call", {}), "seed": seed}
        if isinstance(manifest.get("params"), dict) and "seed" in manifest["params"]:
            manifest["params"]["seed"] = seed
        manifest["reused_from"] = {
            "seed": earlier,
            "why": f"{method} with these parameters does not read the seed: it selects the same records at "
                   f"every seed, so seed {earlier}'s selection is trained again at seed {seed}",
        }
        write_json_atomic(dst / "manifest.json", manifest)
        return True
    return False


def _summary(metric_runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    names = [k for k, v in metric_runs[0].items() if isinstance(v, int | float)] if metric_runs else []
    for name in names:
        values = [float(r[name]) for r in metric_runs if name in r]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        out[name] = {"mean": mean, "std": std, "n": len(values)}
    return out


def compare(task_dir: str | Path, methods: Sequence[str], budget: str, *, seeds: int = 3, full_seeds: int = 1,
            include_full: bool = True, include_none: bool = True, out: str | Path | None = None,
            params: Mapping[str, Mapping[str, Any]] | None = None, model: str | None = None,
            epochs: int | None = None, max_steps: int | None = None, settings: Mapping[str, Any] | None = None,
            cache_dir: str | Path | None = None, progress: bool = True, device: Any = None) -> dict[str, Any]:
    """Run the comparison and return what ``comparison.json`` holds.

    ``settings``: training settings besides ``epochs`` / ``max_steps`` (e.g. ``max_length``), the same for every
    row. Seeds are the outer loop, so an interrupted comparison has every method at its first seeds. ``device``:
    where features, training and scoring run (module docstring)."""
    where = resolve_device(device)
    task = load_task(task_dir)
    for method in methods:
        if method in TRAINING_TIME:  # OPERA's dynamic pruning and InfoBatch: the full pool, pruned while training
            if task.kind != "retrieval":
                raise InputError(f"{method!r} prunes a retriever's training; the task is a {task.kind} task",
                                 fix="compare it on a retrieval task")
            continue
        get(method)
    params = {m: dict(p) for m, p in (params or {}).items()}
    unknown = set(params) - set(methods)
    if unknown:
        raise InputError(f"parameters given for {sorted(unknown)}, which are not among the compared methods")
    if seeds < 1:
        raise InputError(f"--seeds {seeds} must be at least 1")
    out_dir = Path(out) if out is not None else task.dir / "compare" / f"budget-{budget.replace('%', 'pct')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = task.path("target", "target.jsonl")
    view = _text_view(task.spec, task.kind)
    train = {"model": model, "epochs": epochs, "max_steps": max_steps, "settings": dict(settings or {}) or None,
             "progress": progress, "device": where}
    result: dict[str, Any] = {
        "task": task.info(), "budget": budget, "seeds": list(range(seeds)), "metric": task.metric,
        "methods": list(methods), "params": params,
        "training": {k: v for k, v in train.items() if k not in ("progress", "device")},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), **device_info(where)},
        "rows": {},
    }
    _keep_earlier_rows(out_dir, result)

    def record(name: str, runs: list[dict[str, Any]]) -> None:
        result["rows"][name] = {
            "summary": _summary([r["metrics"] for r in runs]),
            "seeds": [r["seed"] for r in runs],
            "training_examples": [r.get("training_examples") for r in runs],
            "seconds": [r["seconds"] for r in runs],
        }
        _write(out_dir, result)

    if include_none:
        res = evaluate(task.dir, "none", seeds=1, **train)
        record("none", [_run_of(res, s) for s in res["seeds"]])
    runs_of: dict[str, list[dict[str, Any]]] = {method: [] for method in methods}
    for seed in range(seeds):
        for method in methods:
            runs = runs_of[method]
            run_dir = out_dir / method / f"seed-{seed}"
            call = {"method": method, "budget": str(budget), "seed": seed}
            t0 = time.perf_counter()
            if method in TRAINING_TIME:
                pruned = {**train, "settings": {**(train["settings"] or {}), "pruning": TRAINING_TIME[method]}}
                res = evaluate(task.dir, "full", seeds=[seed], out=run_dir, **pruned)
                runs.append({**_run_of(res, seed), "select_seconds": 0.0})
                record(method, runs)
                continue
            if not _finished_selection(run_dir, call) and not _reuse_seed_free(out_dir, method, call,
                                                                                params.get(method, {})):
                select(task.pool.path, target, method=method, budget=budget, seed=seed, cache_dir=cache_dir,
                       out=run_dir, progress=progress, device=where, **view, **params.get(method, {}))
            select_seconds = time.perf_counter() - t0
            res = evaluate(task.dir, run_dir, seeds=[seed], **train)
            run = _run_of(res, seed)
            run["select_seconds"] = round(select_seconds, 3)
            runs.append(run)
            record(method, runs)
    if include_full:
        res = evaluate(task.dir, "full", seeds=full_seeds, **train)
        record("full", [_run_of(res, s) for s in res["seeds"]])
    return result


def _keep_earlier_rows(out_dir: Path, result: dict[str, Any]) -> None:
    """Carry over the rows of methods an earlier comparison in ``out_dir`` ran with the same task, budget, seeds
    and training, so that comparing more methods later adds them to the same table instead of replacing it.
    An earlier comparison with other settings is replaced."""
    try:
        earlier = json.loads((out_dir / "comparison.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    same = all(earlier.get(k) == result[k] for k in ("budget", "seeds", "metric", "training")) and \
        (earlier.get("task") or {}).get("fingerprint") == result["task"].get("fingerprint")
    if not same:
        return
    methods = result["methods"]
    kept = [m for m in earlier.get("methods", []) if m not in methods]
    result["methods"] = [*kept, *methods]
    result["params"] = {**{m: p for m, p in (earlier.get("params") or {}).items() if m in kept}, **result["params"]}
    result["rows"] = {m: row for m, row in (earlier.get("rows") or {}).items() if m in kept}


def run_cost_seconds(run: Mapping[str, Any]) -> float:
    """What one seed's run of an ``eval.json`` cost, not how long the call took: the training's own seconds
    (every resumed part of it, also when a kept training was loaded rather than trained in this call) plus the
    scoring (near zero when a kept training's scores on the same test set were read back)."""
    train = run.get("train") or {}
    if train.get("seconds") is not None and run.get("eval_seconds") is not None:
        return round(float(train["seconds"]) + float(run["eval_seconds"]), 3)
    return float(run.get("seconds", 0.0))


def _run_of(result: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """One seed's row entry; ``seconds`` by :func:`run_cost_seconds`."""
    run = result["runs"][str(seed)]
    return {"seed": seed, "metrics": run["metrics"], "seconds": run_cost_seconds(run),
            "training_examples": result["selection"].get("training_examples"),
            "steps": (run.get("train") or {}).get("steps", 0)}


def markdown_table(result: Mapping[str, Any]) -> str:
    rows = result["rows"]
    metric = result["metric"]
    names = []
    for row in rows.values():
        for name in row["summary"]:
            if name not in names:
                names.append(name)
    names.sort(key=lambda n: (n != metric, n))
    header = ["method", "seeds", *[f"{n} (mean ± std)" for n in names], "training examples", "seconds / seed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = [m for m in ("none",) if m in rows] + [m for m in result["methods"] if m in rows]
    order += [m for m in ("full",) if m in rows]
    for name in order:
        row = rows[name]
        cells = [name, str(len(row["seeds"]))]
        for n in names:
            s = row["summary"].get(n)
            cells.append(f"{s['mean']:.4f} ± {s['std']:.4f}" if s else "")
        examples = [e for e in row["training_examples"] if e is not None]
        cells.append(f"{sum(examples) / len(examples):,.0f}" if examples else "")
        cells.append(f"{sum(row['seconds']) / len(row['seconds']):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write(out_dir: Path, result: dict[str, Any]) -> None:
    write_json_atomic(out_dir / "comparison.json", result)
    task = result["task"]
    text = (f"# {task['name']}: budget {result['budget']}, metric {result['metric']}\n\n"
            + markdown_table(result))
    with atomic_path(out_dir / "comparison.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
