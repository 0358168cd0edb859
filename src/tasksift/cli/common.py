"""Pieces every ``tasksift`` sub-command shares: the console, one-line user errors, option types."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tasksift.util.errors import InputError

console = Console(stderr=False)


@contextmanager
def user_errors(out: Path | None = None) -> Iterator[None]:
    """Turn an InputError into one line on stderr and exit code 2; remove ``out`` if this run created it."""
    created = out is not None and not out.exists()
    try:
        yield
    except InputError as err:
        if created and out is not None and out.exists():
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        sys.stderr.write(f"tasksift: error: {err.one_line()}\n")
        raise typer.Exit(2) from None


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["alpha=0.5", "metric=l2"]`` -> ``{"alpha": "0.5", "metric": "l2"}`` (typed later per method)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param {item!r} is not key=value", fix="write it like --param alpha=0.5")
        out[key.strip()] = value
    return out


PoolOpt = Annotated[Path | None, typer.Option("--pool", help="Pool records: jsonl, json, parquet, csv or a saved "
                                                               "HF dataset directory.")]
TargetOpt = Annotated[Path | None, typer.Option("--target", help="Target-task examples, same formats.")]
TextFieldOpt = Annotated[str | None, typer.Option("--text-field", help="Field holding the text (default: text).")]
TemplateOpt = Annotated[str | None, typer.Option("--template", help='Text view, e.g. "{instruction}\\n{output}".')]
IdFieldOpt = Annotated[str | None, typer.Option("--id-field", help="Field holding a unique id (default: a hash "
                                                                    "of the record's content).")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Sentence-transformers model directory (default: "
                                                               "the packaged all-MiniLM-L6-v2).")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Feature cache (default: $TASKSIFT_CACHE or "
                                                                    "~/.cache/tasksift).")]
EngineOpt = Annotated[str, typer.Option("--engine", help="Where the heavy steps run: local, or ray (pip install "
                                                         "'tasksift[ray]').")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster to use with --engine ray (auto, "
                                                                  "ray://head:10001, host:6379; default: "
                                                                  "$RAY_ADDRESS, else a new local cluster).")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Ray workers per step (default: the cluster's "
                                                                  "CPUs).")]
