"""The ``tasksift`` command line (typer).

Bad input ends with exit code 2 and one line on stderr that names the file (and line) and the fix; nothing
is left in the output directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tasksift.cli.common import (
    AddressOpt,
    CacheOpt,
    EngineOpt,
    IdFieldOpt,
    ModelOpt,
    PoolOpt,
    TargetOpt,
    TemplateOpt,
    TextFieldOpt,
    WorkersOpt,
    console,
    parse_params,
    user_errors,
)
from tasksift.cli.data import data_app
from tasksift.cli.eval import eval_command
from tasksift.cli.gradients import gradients_command
from tasksift.cli.retriever import retriever_app
from tasksift.util.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Select the training examples that serve your target task.")
app.add_typer(data_app, name="data")
app.add_typer(retriever_app, name="retriever")
app.command("eval")(eval_command)
app.command("gradients")(gradients_command)


@app.command()
def select(
    out: Annotated[Path, typer.Option("--out", help="Directory for selected records, selection.parquet and "
                                                    "manifest.json.")],
    pool: PoolOpt = None,
    target: TargetOpt = None,
    method: Annotated[str, typer.Option("--method", help="Selector name (see `tasksift methods`).")] = "tsds",
    budget: Annotated[str, typer.Option("--budget", help="A count (500) or a share of the pool (1%).")] = "1%",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    param: Annotated[list[str] | None, typer.Option("--param", help="Method parameter key=value; repeatable.")]
    = None,
    feature: Annotated[list[str] | None, typer.Option("--feature", help="Feature setting key=value for gradient "
                                                                        "methods (warmup_steps=8, precondition=less, "
                                                                        "proj_dim=1024, ...); repeatable.")]
    = None,
    text_field: TextFieldOpt = None,
    template: TemplateOpt = None,
    id_field: IdFieldOpt = None,
    pool_vectors: Annotated[Path | None, typer.Option("--pool-vectors", help=".npy rows aligned with the pool.")]
    = None,
    target_vectors: Annotated[Path | None, typer.Option("--target-vectors", help=".npy rows aligned with the "
                                                                                 "target.")] = None,
    index: Annotated[str, typer.Option("--index", help="auto | flat (exact) | ivf | hnsw")] = "auto",
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    from_manifest: Annotated[Path | None, typer.Option("--from-manifest", help="Repeat the run a manifest.json "
                                                                               "describes.")] = None,
) -> None:
    """Select examples of the pool for the target task and write them to --out."""
    from tasksift.api import select as run_select

    with user_errors(out):
        if from_manifest is not None:
            kwargs = _call_from_manifest(from_manifest)
        else:
            kwargs = {"pool": pool, "target": target, "pool_vectors": pool_vectors, "target_vectors": target_vectors,
                      "method": method, "budget": budget, "seed": seed, "text_field": text_field,
                      "template": template, "id_field": id_field, "model": model, "index": index,
                      "params": parse_params(param), "features": parse_params(feature)}
        params = kwargs.pop("params")
        selection = run_select(**kwargs, engine=engine, address=address, workers=workers, cache_dir=cache_dir,
                               out=out, progress=True, **params)
    print_summary(selection, out)


def _call_from_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        call = dict(manifest["call"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError("not a tasksift manifest with a 'call' section", path=path,
                         fix="pass the manifest.json that `tasksift select` wrote") from None
    for key in ("pool", "target", "pool_vectors", "target_vectors"):
        if call.get(key) == "<in memory>":
            raise InputError(f"the run's {key} was passed in memory, not as a file", path=path,
                             fix="rerun it from Python with the same data")
    return call


def print_summary(selection: Any, out: Path) -> None:
    m = selection.manifest
    table = Table(title=f"tasksift select: {m['method']}", show_header=False, box=None)
    table.add_row("pool / target", f"{m['counts']['pool']:,} / {m['counts']['target']:,} examples")
    table.add_row("budget", f"{m['budget']['requested']} -> {m['budget']['count']:,} "
                            f"({len(selection):,} distinct examples, total weight {selection.weights.sum():g})")
    if "index" in m:
        table.add_row("neighbour index", f"{m['index'].get('kind')} ({m['index'].get('metric')})")
    table.add_row("time", ", ".join(f"{k} {v:.2f}s" for k, v in m.get("timings", {}).items()))
    table.add_row("outputs", str(out))
    console.print(table)
    top = Table(title="top of the selection", show_lines=False)
    for col in ("rank", "id", "weight", "score", "reason"):
        top.add_column(col, overflow="fold")
    for r in range(min(5, len(selection))):
        top.add_row(str(r + 1), str(selection.ids[r]), f"{selection.weights[r]:g}", f"{selection.scores[r]:.4g}",
                    json.dumps(selection.reasons[r])[:80])
    console.print(top)


@app.command()
def embed(
    input_path: Annotated[Path, typer.Option("--in", help="Records to embed (any supported format).")],
    text_field: TextFieldOpt = None,
    template: TemplateOpt = None,
    id_field: IdFieldOpt = None,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Rows per cache shard (the unit of resume).")]
    = 4096,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the vectors to this .npy file.")] = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Embed records into the feature cache (resumable on either engine; a second run computes nothing)."""
    from tasksift.records import load_records
    from tasksift.engine import get_engine
    from tasksift.features import embed_texts

    with user_errors():
        records = load_records(input_path, text_field=text_field, template=template, id_field=id_field)
        runner = get_engine(engine, address=address, workers=workers)
        try:
            result = embed_texts(records.texts, model=model, cache_dir=cache_dir, batch_size=batch_size,
                                 shard_size=shard_size, progress=True, engine=runner)
        finally:
            runner.close()
        if out is not None:
            from tasksift.selection.writers import write_npy_atomic

            write_npy_atomic(out, result.matrix())
    info = result.info()
    console.print(f"embedded {len(records):,} records from {input_path}: {result.n_computed} shards computed, "
                  f"{result.n_reused} reused, {result.seconds:.1f}s; cache: {info.get('cache_dir', '')}"
                  + (f"; vectors: {out}" if out is not None else ""), soft_wrap=True)


@app.command()
def methods() -> None:
    """List the selectors with their parameters and defaults."""
    from tasksift.selectors import available

    table = Table(title="tasksift methods")
    for col in ("method", "reads", "what it does", "parameters (defaults)"):
        table.add_column(col, overflow="fold")
    for name, cls in available().items():
        params = ", ".join(f"{k}={v!r}" for k, v in cls.param_defaults().items())
        table.add_row(name, cls.needs, cls.summary, params)
    console.print(table)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Where the demo writes its data and selection.")]
    = Path("tasksift-demo"),
    method: Annotated[str, typer.Option("--method")] = "knn",
    budget: Annotated[str, typer.Option("--budget")] = "5%",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    cache_dir: CacheOpt = None,
) -> None:
    """Build a small real pool (BBC News + chatterbot answers), select for a few tech articles, report."""
    from tasksift.cli.demo import run_demo

    with user_errors():
        run_demo(out, method=method, budget=budget, seed=seed, cache_dir=cache_dir, console=console)


@app.command()
def compare(
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
) -> None:
    """Select with each method and seed, finetune, score; write comparison.json and comparison.md."""
    from tasksift.eval.compare import compare as run_compare
    from tasksift.eval.compare import markdown_table

    with user_errors():
        names = [m.strip() for m in methods_.split(",") if m.strip()]
        per_method: dict[str, dict[str, Any]] = {}
        for key, value in parse_params(param).items():
            method, dot, name = key.partition(".")
            if not dot or not name:
                raise InputError(f"--param {key}={value} does not name its method",
                                 fix="write it as method.key=value, e.g. tsds.alpha=0.01")
            per_method.setdefault(method, {})[name] = value
        result = run_compare(task, names, budget, seeds=seeds, full_seeds=full_seeds, include_full=full, out=out,
                             params=per_method, model=model, epochs=epochs, max_steps=max_steps,
                             settings=parse_params(train), cache_dir=cache_dir)
    console.print(markdown_table(result), soft_wrap=True)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A directory written by `tasksift select --out`.")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML file (default RUN_DIR/report.html).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Pool field for the composition chart (default: "
                                                        "source, task or label).")] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Write a self-contained HTML report: map, score and weight histograms, composition, evaluation."""
    from tasksift.report import write_report

    with user_errors():
        path = write_report(run_dir, out, by=by, cache_dir=cache_dir)
    console.print(f"report: {path}", soft_wrap=True)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    app()


if __name__ == "__main__":
    main()
