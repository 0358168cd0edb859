"""``tasksift gradients``: fill the feature cache with per-example gradient features (registered in cli.py).

Registered with ``app.command(name="gradients")(gradients_command)``. A second run with the same settings
computes nothing; a killed run resumes at the shard it was computing (the cache of ``tasksift embed``).
For LESS, compute the pool with ``--warmup-steps N --precondition less`` (or ``adam``) and the target with the
same warm-up (``--warmup-in POOL --warmup-steps N``, no ``--precondition``): both then start from the same
warmed-up proxy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tasksift.cli.common import (
    AddressOpt,
    CacheOpt,
    EngineOpt,
    IdFieldOpt,
    TemplateOpt,
    TextFieldOpt,
    WorkersOpt,
    console,
    user_errors,
)


def gradients_command(
    input_path: Annotated[Path, typer.Option("--in", help="Records to take gradients of (any supported format).")],
    text_field: TextFieldOpt = None,
    template: TemplateOpt = None,
    id_field: IdFieldOpt = None,
    model: Annotated[str | None, typer.Option("--model", help="Proxy model: minilm (default), smollm2, a Hugging "
                                                              "Face causal-LM or encoder directory, or a .gguf.")]
    = None,
    kind: Annotated[str, typer.Option("--kind", help="auto | causal-lm | encoder")] = "auto",
    params: Annotated[str, typer.Option("--params", help="lora (adapters) | linear (named linear layers)")] = "lora",
    target_module: Annotated[list[str] | None, typer.Option("--target-module", help="Layer name (end of its dotted "
                                                                                    "name); repeatable.")] = None,
    lora_r: Annotated[int, typer.Option("--lora-r")] = 8,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha")] = 16,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens kept per text.")] = 128,
    dim: Annotated[int, typer.Option("--dim", help="Random projection width (0: raw gradients).")] = 1024,
    projection: Annotated[str, typer.Option("--projection", help="rademacher | gaussian")] = "rademacher",
    seed: Annotated[int, typer.Option("--seed", help="Seeds the projection, the LoRA init and the warm-up.")] = 0,
    warmup_steps: Annotated[int, typer.Option("--warmup-steps", help="AdamW warm-up steps before the gradients "
                                                                     "(LESS); 0: none.")] = 0,
    warmup_in: Annotated[Path | None, typer.Option("--warmup-in", help="Records the warm-up trains on (default: "
                                                                       "--in).")] = None,
    warmup_lr: Annotated[float, typer.Option("--warmup-lr")] = 3e-4,
    warmup_sample: Annotated[int, typer.Option("--warmup-sample", help="Warm-up texts drawn (seeded).")] = 256,
    precondition: Annotated[str, typer.Option("--precondition", help="none | adam (g / (sqrt(v) + eps)) | less "
                                                                     "(LESS's code) with the warm-up's Adam "
                                                                     "moments.")] = "none",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Rows per cache shard (the unit of resume).")]
    = 256,
    cache_dir: CacheOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the features to this .npy file.")] = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Per-example gradient features of a proxy model into the feature cache (resumable)."""
    from tasksift.records import load_records
    from tasksift.engine import get_engine
    from tasksift.features.gradients import WarmupSettings, gradient_features

    with user_errors():
        view = {"text_field": text_field, "template": template, "id_field": id_field}
        records = load_records(input_path, **view)
        warmup = None
        warmup_texts = None
        if warmup_steps > 0:
            warmup = WarmupSettings(steps=warmup_steps, lr=warmup_lr, sample=warmup_sample, seed=seed)
            if warmup_in is not None:
                warmup_texts = load_records(warmup_in, **view).texts
        runner = get_engine(engine, address=address, workers=workers)
        try:
            result = gradient_features(
                records.texts, model=model, kind=kind, params=params, target_modules=target_module, lora_r=lora_r,
                lora_alpha=lora_alpha, max_length=max_length, seed=seed, proj_dim=dim, projection=projection,
                warmup=warmup, warmup_texts=warmup_texts,
                precondition=None if precondition == "none" else precondition, batch_size=batch_size,
                shard_size=shard_size, cache_dir=cache_dir, progress=True, engine=runner)
        finally:
            runner.close()
        if out is not None:
            from tasksift.selection.writers import write_npy_atomic

            write_npy_atomic(out, result.matrix())
    info = result.info()
    console.print(f"gradients of {len(records):,} records from {input_path}: {result.dim:,} dimensions, "
                  f"{result.n_computed} shards computed, {result.n_reused} reused, {result.seconds:.1f}s; "
                  f"cache: {info.get('cache_dir', '')}" + (f"; features: {out}" if out is not None else ""),
                  soft_wrap=True)
