"""Pieces every ``tasksift`` sub-command shares: the console, one-line user errors, option types."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from tasksift.util.device import check_local, driver_device
from tasksift.util.env import default_cache_root
from tasksift.util.errors import InputError, from_os_error

console = Console(stderr=False)
#: set by the global ``--debug`` option: print the traceback of an internal error too
DEBUG = {"on": False}


def _log_traceback() -> Path | None:
    """Write the current exception's traceback to a log file under the cache root (or the temp dir)."""
    text = traceback.format_exc()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for root in (default_cache_root() / "logs", Path(tempfile.gettempdir())):
        try:
            root.mkdir(parents=True, exist_ok=True)
            path = root / f"tasksift-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _fail(line: str, code: int, out: Path | None, created: bool) -> NoReturn:
    if created and out is not None and out.exists():
        shutil.rmtree(out, ignore_errors=True)
    sys.stderr.write(f"tasksift: {line}\n")
    raise typer.Exit(code)


@contextmanager
def user_errors(out: Path | None = None) -> Iterator[None]:
    """The command line's one error policy: bad input or environment (an InputError, or an OSError such as a
    missing file, a permission, a read-only or full disk) is one line on stderr and exit code 2; anything else
    is one line ``internal error: ...`` naming a log file with the traceback (``--debug`` prints it) and exit
    code 1. ``out`` is removed if this run created it and failed."""
    created = out is not None and not out.exists()
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except InputError as err:
        _fail(f"error: {err.one_line()}", 2, out, created)
    except OSError as err:
        _fail(f"error: {from_os_error(err).one_line()}", 2, out, created)
    except Exception as err:  # noqa: BLE001 - the policy for every unexpected failure
        log = _log_traceback()
        if DEBUG["on"]:
            sys.stderr.write(traceback.format_exc())
        where = f"traceback in {log}" if log is not None else "no log could be written"
        message = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        _fail(f"internal error: {message} ({where}; --debug prints it)", 1, out, created)


PoolOpt = Annotated[list[str] | None, typer.Option("--pool", help="Pool records: a jsonl (.jsonl.gz, .jsonl.zst), "
                                                                   "json, parquet or csv file, a quoted glob "
                                                                   "('data/*.jsonl.gz'), a saved HF dataset, a folder "
                                                                   "laid out like a hub dataset, or hf://org/name "
                                                                   "(from the local HF cache); repeat for several "
                                                                   "files.")]
TargetOpt = Annotated[list[str] | None, typer.Option("--target", help="Target-task examples, same forms.")]
TextViewOpt = Annotated[str | None, typer.Option("--text-view", help="chat: read 'messages' (role/content) or "
                                                                     "'conversations' (from/value) as turns with "
                                                                     "role tags, or the --model's chat template "
                                                                     "(default: chat when records have no 'text' "
                                                                     "field but one of those).")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Split of a dataset folder or hf:// dataset "
                                                              "(default: train, or the only one).")]
SubsetOpt = Annotated[str | None, typer.Option("--subset", help="Subset (configuration) of a dataset folder or "
                                                                "hf:// dataset.")]
TargetSplitOpt = Annotated[str | None, typer.Option("--target-split", help="Split of the target (default: "
                                                                           "--split).")]
TargetSubsetOpt = Annotated[str | None, typer.Option("--target-subset", help="Subset of the target (default: "
                                                                             "--subset).")]
TextFieldOpt = Annotated[str | None, typer.Option("--text-field", help="Field holding the text (default: text).")]
TemplateOpt = Annotated[str | None, typer.Option("--template", help='Text view, e.g. "{instruction}\\n{output}".')]
IdFieldOpt = Annotated[str | None, typer.Option("--id-field", help="Field holding a unique id (default: a hash "
                                                                    "of the record's content).")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Sentence-transformers model directory (default: "
                                                               "the packaged all-MiniLM-L6-v2).")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Feature cache (default: $TASKSIFT_CACHE or "
                                                                    "~/.cache/tasksift).")]
EngineOpt = Annotated[str, typer.Option("--engine", help="Where the heavy steps run: local, or ray (pip install "
                                                         "'tasksift\\[ray]').")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster to use with --engine ray (auto, "
                                                                  "ray://head:10001, host:6379; default: "
                                                                  "$RAY_ADDRESS, else a new local cluster).")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Ray workers per step (default: the cluster's "
                                                                  "CPUs; with --device cuda its GPUs).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="Where models run: cpu (default), auto (a GPU when torch "
                                                         "sees one), cuda or cuda:N.")]


def check_device(device: str, engine: str) -> None:
    """``--device`` checked against ``--engine`` before any work: an unusable device ends the command with one
    line. Here a GPU must be one torch sees; on Ray it is the cluster's, which the engine checks when it starts
    (:func:`tasksift.util.device.driver_device`). The commands pass on the device as named, not as resolved."""
    check_local(driver_device(device, engine), engine)
