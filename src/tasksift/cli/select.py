"""``tasksift select``: one selection into --out, or the run a manifest describes again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tasksift.api import select
from tasksift.cli.common import (
    AddressOpt,
    CacheOpt,
    DeviceOpt,
    EngineOpt,
    IdFieldOpt,
    ModelOpt,
    PoolOpt,
    SplitOpt,
    SubsetOpt,
    TargetOpt,
    TargetSplitOpt,
    TargetSubsetOpt,
    TemplateOpt,
    TextFieldOpt,
    TextViewOpt,
    WorkersOpt,
    console,
    user_errors,
)
from tasksift.selection.manifest import changed_inputs
from tasksift.util.errors import InputError
from tasksift.util.params import parse_assignments


def select_command(
    out: Annotated[Path, typer.Option("--out", help="Directory for selected records, selection.parquet and "
                                                    "manifest.json.")],
    pool: PoolOpt = None,
    target: TargetOpt = None,
    method: Annotated[str, typer.Option("--method", help="Selector name (see `tasksift methods`).")] = "tsds",
    budget: Annotated[str, typer.Option("--budget", help="A count (500) or a share of the pool (1%).")] = "1%",
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the selection (default 0).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Method parameter key=value; repeatable.")]
    = None,
    feature: Annotated[list[str] | None, typer.Option("--feature", help="Feature setting key=value for gradient "
                                                                        "methods (warmup_steps=8, precondition=less, "
                                                                        "proj_dim=1024, ...), or dtype=float16 to "
                                                                        "cache embeddings in float16; repeatable.")]
    = None,
    text_field: TextFieldOpt = None,
    template: TemplateOpt = None,
    id_field: IdFieldOpt = None,
    text_view: TextViewOpt = None,
    split: SplitOpt = None,
    subset: SubsetOpt = None,
    target_split: TargetSplitOpt = None,
    target_subset: TargetSubsetOpt = None,
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
                                                                               "describes (refused when its "
                                                                               "inputs changed).")] = None,
    allow_changed_inputs: Annotated[bool, typer.Option("--allow-changed-inputs", help="With --from-manifest: run "
                                                                                       "even if an input file "
                                                                                       "changed (the new manifest "
                                                                                       "records the new hashes).")]
    = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out even if it holds files that are "
                                                                "not a tasksift run.")] = False,
    device: DeviceOpt = "cpu",
    export: Annotated[list[str] | None, typer.Option("--export", help="Also write the chosen records for a trainer "
                                                                      "into --out/export: jsonl | parquet | hf | "
                                                                      "messages | alpaca | sharegpt; repeatable.")]
    = None,
    repeat_weights: Annotated[bool, typer.Option("--repeat-weights", help="In the --export files, write each "
                                                                          "example weight times (for trainers "
                                                                          "that ignore weights).")] = False,
) -> None:
    """Select examples of the pool for the target task and write them to --out."""
    with user_errors(out):
        if from_manifest is not None:
            kwargs = _call_from_manifest(from_manifest, allow_changed_inputs)
        else:
            kwargs = {"pool": _one_or_list(pool), "target": _one_or_list(target), "pool_vectors": pool_vectors,
                      "target_vectors": target_vectors, "method": method, "budget": budget, "text_field": text_field,
                      "template": template, "id_field": id_field, "text_view": text_view, "split": split,
                      "subset": subset, "target_split": target_split, "target_subset": target_subset,
                      "model": model, "index": index,
                      "params": parse_assignments(param, "--param"),
                      "features": parse_assignments(feature, "--feature"), "export": export,
                      "repeat_weights": repeat_weights}
            kwargs["seed"] = _one_seed(seed, kwargs["params"])
        params = kwargs.pop("params")
        selection = select(**kwargs, engine=engine, address=address, workers=workers, cache_dir=cache_dir,
                           out=out, overwrite=overwrite, progress=True, device=device, **params)
    print_summary(selection, out)


def _one_or_list(values: list[str] | None) -> str | list[str] | None:
    """One ``--pool`` (a file, glob, folder or hub id) as given; several as the list of files."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def _one_seed(seed: int | None, params: dict[str, Any]) -> Any:
    """The seed is one setting: ``--seed N`` or ``--param seed=N``, refused when both are given differently."""
    if "seed" not in params:
        return 0 if seed is None else seed
    given = params.pop("seed")
    if seed is not None and str(seed) != str(given).strip():
        raise InputError(f"--seed {seed} and --param seed={given} disagree", fix="give the seed once, with --seed")
    return given


#: what the ``call`` section of a manifest must hold, with the type of each value
_CALL_FIELDS = {"method": str, "budget": str, "seed": int, "params": dict}


def _call_from_manifest(path: Path, allow_changed: bool) -> dict[str, Any]:
    """The arguments of the run ``path`` describes, after checking that its input files are unchanged."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError("not a readable JSON manifest", path=path,
                         fix="pass the manifest.json that `tasksift select` wrote") from None
    call = manifest.get("call") if isinstance(manifest, dict) else None
    if not isinstance(call, dict):
        raise InputError("not a tasksift manifest: it has no 'call' section", path=path,
                         fix="pass the manifest.json that `tasksift select` wrote")
    for key, kind in _CALL_FIELDS.items():
        if not isinstance(call.get(key), kind) or isinstance(call.get(key), bool):
            raise InputError(f"the manifest's call has no valid {key!r} ({kind.__name__})", path=path,
                             fix="pass a manifest.json that `tasksift select` wrote, unedited")
    if not isinstance(manifest.get("inputs", {}), dict):
        raise InputError("the manifest's 'inputs' is not an object", path=path,
                         fix="pass a manifest.json that `tasksift select` wrote, unedited")
    for key in ("pool", "target", "pool_vectors", "target_vectors"):
        value = call.get(key)
        if value is not None and not isinstance(value, str) and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise InputError(f"the manifest's call.{key} is not a path", path=path,
                             fix="pass a manifest.json that `tasksift select` wrote, unedited")
        if call.get(key) == "<in memory>":
            raise InputError(f"the run's {key} was passed in memory, not as a file", path=path,
                             fix="rerun it from Python with the same data")
    changed = changed_inputs(manifest)
    if changed and not allow_changed:
        raise InputError(f"input changed since the run: {', '.join(changed)}", path=path,
                         fix="restore the file, or pass --allow-changed-inputs to select from it as it is now")
    known = ("pool", "target", "pool_vectors", "target_vectors", "method", "budget", "seed", "text_field",
             "template", "id_field", "text_view", "split", "subset", "target_split", "target_subset", "model",
             "index", "params", "features", "export", "repeat_weights")
    return {k: call.get(k) for k in known if k in call or k in ("params", "features")} | {
        "params": dict(call.get("params") or {}), "features": dict(call.get("features") or {})}


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
