"""``tasksift embed``: fill the embedding cache (resumable on either engine; a second run computes nothing).

A large input is streamed (:mod:`tasksift.records.column`): its texts are read shard by shard to plan and to
embed, and ``--out`` is written shard by shard, so memory does not grow with the pool."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Annotated, BinaryIO

import numpy as np
import typer

from tasksift.cli.common import (
    AddressOpt,
    CacheOpt,
    DeviceOpt,
    EngineOpt,
    IdFieldOpt,
    ModelOpt,
    TemplateOpt,
    TextFieldOpt,
    WorkersOpt,
    check_device,
    console,
    user_errors,
)
from tasksift.engine import get_engine
from tasksift.features import CachedFeatures, embed_texts
from tasksift.records import load_records
from tasksift.util.errors import InputError
from tasksift.util.io import atomic_write
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
    device: DeviceOpt = "cpu",
) -> None:
    """Embed records into the feature cache (resumable on either engine; a second run computes nothing)."""
    with user_errors():
        _check_options(batch_size, shard_size, out)
        check_device(device, engine)
        records = load_records(input_path, text_field=text_field, template=template, id_field=id_field)
        with closing(get_engine(engine, address=address, workers=workers)) as runner:
            result = embed_texts(records.texts, model=model, cache_dir=cache_dir, batch_size=batch_size,
                                 shard_size=shard_size, progress=True, engine=runner, device=device)
        write_checked(result, out)
    info = result.info()
    console.print(f"embedded {len(records):,} records from {input_path}: {result.n_computed} shards computed, "
                  f"{result.n_reused} reused, {result.seconds:.1f}s; cache: {info.get('cache_dir', '')}"
                  + (f"; vectors: {out}" if out is not None else ""), soft_wrap=True)


def write_checked(result: CachedFeatures, out: Path | None) -> None:
    """Write the features to ``out`` (every shard checked as it is read), or without ``out`` check every shard;
    a shard that fails is recomputed either way. The ``.npy`` file is written shard by shard (the bytes
    ``numpy.save`` writes for the whole matrix), so a pool larger than memory never sits in it."""
    if out is None:
        result.verify()
        return
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(f: BinaryIO) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(result.dtype)), "fortran_order": False,
                  "shape": result.shape}
        np.lib.format.write_array_header_1_0(f, header)
        for shard in result.iter_shards():
            f.write(np.ascontiguousarray(shard).tobytes())

    atomic_write(out, write)


def _check_options(batch_size: int, shard_size: int, out: Path | None) -> None:
    """Refuse, before any work, sizes below 1 and an ``--out`` that cannot be a file."""
    positive = Interval(int, 1)
    for option, value in (("--batch-size", batch_size), ("--shard-size", shard_size)):
        if not positive.accepts(value):
            raise InputError(f"{option} {value} is not allowed", fix=f"{option} takes {positive.describe()}")
    check_npy_out(out)


def check_npy_out(out: Path | None) -> None:
    """Refuse an ``--out`` (a ``.npy`` file to write after the work) that names a directory or lies under a
    file, before any work."""
    if out is None:
        return
    if out.is_dir():
        raise InputError("--out names a directory", path=out, fix="give the path of the .npy file to write")
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError("a part of --out's path is a file, not a directory", path=existing,
                         fix="give --out a path inside a directory")
