"""``tasksift embed``: fill the embedding cache (resumable on either engine; a second run computes nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tasksift.cli.common import (
    AddressOpt,
    CacheOpt,
    EngineOpt,
    IdFieldOpt,
    ModelOpt,
    TemplateOpt,
    TextFieldOpt,
    WorkersOpt,
    console,
    user_errors,
)
from tasksift.engine import get_engine
from tasksift.features import embed_texts
from tasksift.records import load_records
from tasksift.util.errors import InputError
from tasksift.util.io import write_npy_atomic
from tasksift.util.params import Interval


def embed_command(
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
    with user_errors():
        _check_options(batch_size, shard_size, out)
        records = load_records(input_path, text_field=text_field, template=template, id_field=id_field)
        runner = get_engine(engine, address=address, workers=workers)
        try:
            result = embed_texts(records.texts, model=model, cache_dir=cache_dir, batch_size=batch_size,
                                 shard_size=shard_size, progress=True, engine=runner)
        finally:
            runner.close()
        if out is not None:
            matrix = result.matrix()  # every shard checked as it is read; a damaged one is recomputed
            out.parent.mkdir(parents=True, exist_ok=True)
            write_npy_atomic(out, matrix)
        else:
            result.verify()
    info = result.info()
    console.print(f"embedded {len(records):,} records from {input_path}: {result.n_computed} shards computed, "
                  f"{result.n_reused} reused, {result.seconds:.1f}s; cache: {info.get('cache_dir', '')}"
                  + (f"; vectors: {out}" if out is not None else ""), soft_wrap=True)


def _check_options(batch_size: int, shard_size: int, out: Path | None) -> None:
    """Refuse, before any work, sizes below 1 and an ``--out`` that names a directory."""
    positive = Interval(int, 1)
    for option, value in (("--batch-size", batch_size), ("--shard-size", shard_size)):
        if not positive.accepts(value):
            raise InputError(f"{option} {value} is not allowed", fix=f"{option} takes {positive.describe()}")
    if out is not None and out.is_dir():
        raise InputError("--out names a directory", path=out, fix="give the path of the .npy file to write")
