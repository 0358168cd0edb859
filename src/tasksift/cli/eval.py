"""``tasksift eval`` and ``tasksift compare``: finetune a small model on selections and score it on the task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tasksift.cli.common import CacheOpt, DeviceOpt, console, user_errors
from tasksift.eval import evaluate
from tasksift.eval.compare import compare as run_compare
from tasksift.eval.compare import markdown_table
from tasksift.util.errors import InputError
from tasksift.util.params import parse_assignments


def eval_command(
    task: Annotated[Path, typer.Option("--task", help="Task directory (task.json, pool, test.jsonl, ...).")],
    selection: Annotated[str, typer.Option("--selection", help="A `tasksift select` run directory, 'full' (the "
                                                               "whole pool once) or 'none' (no finetuning).")],
    model: Annotated[str | None, typer.Option("--model", help="Model to finetune: a Hugging Face directory (or a "
                                                              ".gguf for instruction tasks). Default: "
                                                              "SmolLM2-135M-Instruct / all-MiniLM-L6-v2.")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Number of seeds (0..N-1); mean and spread over them.")] = 3,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Passes over the training examples.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many optimizer steps.")]
    = None,
    param: Annotated[list[str] | None, typer.Option("--train", "--param", help="Training setting key=value, e.g. "
                                                                    "lr=1e-4; repeatable (as in compare).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for eval.json (default: the run directory, "
                                                           "or <task>/baselines/<full|none>).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore seeds an earlier run finished.")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Finetune on the selection and score the task's test set; resumes an interrupted evaluation."""
    with user_errors():
        result = evaluate(task, selection, seeds=seeds, model=model, epochs=epochs, max_steps=max_steps,
                          settings=parse_assignments(param, "--train"), out=out, resume=not fresh, progress=True,
                          device=device)
    print_eval(result)


def print_eval(result: dict[str, Any]) -> None:
    """One table: each metric's mean +- std over the seeds, then one column per seed; steps and seconds."""
    sel = result["selection"]
    what = sel.get("path") or sel["kind"]
    table = Table(title=f"tasksift eval: {result['task']['name']} ({result['task']['kind']}) on {what}")
    seeds = list(result["runs"])
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    for seed in seeds:
        table.add_column(f"seed {seed}", justify="right")
    for name, mean in result["mean"].items():
        label = f"{name} *" if name == result["metric"] else name
        table.add_row(label, f"{mean:.4f} ± {result['std'][name]:.4f}",
                      *(f"{result['runs'][s]['metrics'][name]:.4f}" for s in seeds))
    train = [result["runs"][s]["train"] for s in seeds]
    table.add_row("steps", "", *(str(t["steps"]) if t else "0" for t in train))
    table.add_row("examples seen", "", *(str(t["examples_seen"]) if t else "0" for t in train))
    table.add_row("seconds (train + eval)", "",
                  *(f"{result['runs'][s]['train_seconds']:.1f} + {result['runs'][s]['eval_seconds']:.1f}"
                    for s in seeds))
    console.print(table)
    console.print(f"training examples per epoch: {sel['training_examples']:,} ({sel['distinct_examples']:,} "
                  f"distinct); model: {result['model']['name']}; results: {result['eval_file']}", soft_wrap=True)


def compare_command(
    task: Annotated[Path, typer.Option("--task", help="A task directory (see docs/task-format.md).")],
    methods_: Annotated[str, typer.Option("--methods", help="Comma-separated selectors.")] = "random,knn,dsir,tsds",
    budget: Annotated[str, typer.Option("--budget")] = "2%",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per method (selection and training).")] = 3,
    full_seeds: Annotated[int, typer.Option("--full-seeds", help="Seeds for the full-pool row.")] = 1,
    full: Annotated[bool, typer.Option("--full/--no-full", help="Include the full-pool row.")] = True,
    out: Annotated[Path | None, typer.Option("--out", help="Default: TASK/compare/budget-<budget>.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="method.key=value, e.g. tsds.alpha=0.01")]
    = None,
    model: Annotated[str | None, typer.Option("--model", help="Model to finetune (default: the track's).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    train: Annotated[list[str] | None, typer.Option("--train", help="Training setting key=value for every row, "
                                                                    "e.g. max_length=128 or lr=1e-4.")] = None,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Select with each method and seed, finetune, score; write comparison.json and comparison.md."""
    with user_errors():
        names = [m.strip() for m in methods_.split(",") if m.strip()]
        per_method: dict[str, dict[str, Any]] = {}
        for key, value in parse_assignments(param, "--param").items():
            method, dot, name = key.partition(".")
            if not dot or not name:
                raise InputError(f"--param {key}={value} does not name its method",
                                 fix="write it as method.key=value, e.g. tsds.alpha=0.01")
            per_method.setdefault(method, {})[name] = value
        result = run_compare(task, names, budget, seeds=seeds, full_seeds=full_seeds, include_full=full, out=out,
                             params=per_method, model=model, epochs=epochs, max_steps=max_steps,
                             settings=parse_assignments(train, "--train"), cache_dir=cache_dir, device=device)
    console.print(markdown_table(result), soft_wrap=True)
