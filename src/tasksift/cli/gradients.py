"""``tasksift gradients``: fill the feature cache with per-example gradient features (registered in app.py).

The feature settings are ``--feature key=value`` (repeatable), the ones ``tasksift select --feature`` takes for
a gradient method (:mod:`tasksift.features.gradients.recipe`; ``proxy_lr`` aside); ``--target-module`` names the
layers to take gradients of. A second run with the same settings computes nothing; a killed run resumes at the
shard it was computing (the cache of ``tasksift embed``). For LESS, compute the pool with ``--feature
warmup_steps=N --feature precondition=less`` (or ``adam``) and the target with the same warm-up (``--warmup-in
POOL --feature warmup_steps=N``, no ``precondition``): both then start from the same warmed-up proxy.
``--device cuda`` runs the proxy on a GPU (on Ray: one worker per GPU); its rows go under the same cache key as
the CPU's.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer

from tasksift.cli.common import (
    AddressOpt,
    CacheOpt,
    DeviceOpt,
    EngineOpt,
    IdFieldOpt,
    TemplateOpt,
    TextFieldOpt,
    WorkersOpt,
    check_device,
    console,
    user_errors,
)
from tasksift.cli.embed import check_npy_out, write_checked
from tasksift.engine import get_engine
from tasksift.features.gradients.recipe import (
    GRADIENT_FEATURE_PARAMETERS,
    GradientRecipe,
    gradient_model,
    gradient_texts,
)
from tasksift.records import load_records
from tasksift.util.params import parse_assignments

#: the feature settings this command takes: those of a gradient method but the proxy trainer's
CLI_FEATURES = {k: v for k, v in GRADIENT_FEATURE_PARAMETERS.items() if k != "proxy_lr"}


def gradients_command(
    input_path: Annotated[Path, typer.Option("--in", help="Records to take gradients of (any supported format).")],
    text_field: TextFieldOpt = None,
    template: TemplateOpt = None,
    id_field: IdFieldOpt = None,
    model: Annotated[str | None, typer.Option("--model", help="Proxy model: smollm2 (default, as the gradient "
                                                              "selectors), minilm (cheap, not the papers' setting), "
                                                              "a Hugging Face causal-LM or encoder directory, or a "
                                                              ".gguf.")]
    = None,
    target_module: Annotated[list[str] | None, typer.Option("--target-module", help="Layer name (end of its dotted "
                                                                                    "name); repeatable.")] = None,
    feature: Annotated[list[str] | None, typer.Option("--feature", help="Feature setting key=value (proj_dim=1024, "
                                                                        "warmup_steps=8, precondition=less, "
                                                                        "lora_r=8, seed=0, ...); repeatable.")]
    = None,
    warmup_in: Annotated[Path | None, typer.Option("--warmup-in", help="Records the warm-up trains on (default: "
                                                                       "--in).")] = None,
    cache_dir: CacheOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the features to this .npy file.")] = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Per-example gradient features of a proxy model into the feature cache (resumable)."""
    with user_errors():
        check_npy_out(out)
        check_device(device, engine)
        recipe = GradientRecipe.of({}, parse_assignments(feature, "--feature"), declarations=CLI_FEATURES)
        view = {"text_field": text_field, "template": template, "id_field": id_field}
        records = load_records(input_path, **view)
        texts, _, loss = gradient_texts(records, None, model, recipe.values["kind"])
        warmup_texts = texts
        if recipe.warmup is not None and warmup_in is not None:
            warmup_texts, _, _ = gradient_texts(load_records(warmup_in, **view), None, model, recipe.values["kind"])
        with closing(get_engine(engine, address=address, workers=workers)) as runner:
            result = recipe.features(texts, model=gradient_model(model), precondition=recipe.precondition,
                                     warmup_texts=warmup_texts, cache_dir=cache_dir, progress=True,
                                     desc="gradients", engine=runner, target_modules=target_module, device=device)
        write_checked(result, out)
    info = result.info()
    console.print(f"gradients of {len(records):,} records from {input_path} (loss: {loss}): {result.dim:,} dimensions, "
                  f"{result.n_computed} shards computed, {result.n_reused} reused, {result.seconds:.1f}s; "
                  f"cache: {info.get('cache_dir', '')}" + (f"; features: {out}" if out is not None else ""),
                  soft_wrap=True)
