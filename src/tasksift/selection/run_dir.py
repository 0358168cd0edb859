"""A run folder (``--out``) is replaced as a whole or not at all.

The new run is written into a temporary sibling folder (``.<name>.run-<host>.<pid>``) and swapped in when it is
complete: the previous run is renamed aside, the new folder renamed onto ``--out``, the previous run removed.
Whenever the process is killed, ``--out`` holds the previous complete run, the new complete run, or (between
the two renames) nothing; never a mix. Leftovers of a killed process are removed by the next run.

A folder that holds files but is not a tasksift run (no ``manifest.json`` written by tasksift) is not replaced
unless the caller says ``overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasksift.util.errors import InputError, from_os_error
from tasksift.util.io import HOST, fsync_dir, pid_alive

_MARKS = (".run-", ".old-")


def is_run_dir(path: Path) -> bool:
    """``path`` holds a tasksift run: a ``manifest.json`` with a method and the call that made it."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "method" in manifest and "call" in manifest


def check_out_dir(out: Path, *, overwrite: bool = False) -> Path:
    """``out`` as an absolute path, if a run may be written there; else InputError saying why and what to do."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise InputError("the output path is a file, not a directory", path=out,
                         fix="give --out a new directory or an earlier run's directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite and not is_run_dir(out):
        raise InputError("the output directory holds files that are not a tasksift run", path=out,
                         fix="choose a new directory, or pass --overwrite to replace it whole")
    if out.parent == out:
        raise InputError("the output directory cannot be the file system's root", path=out)
    return out


def _sweep(out: Path) -> None:
    """Remove the temporary folders that killed runs left beside ``out``."""
    prefix = f".{out.name}"
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return
    for p in siblings:
        mark = next((m for m in _MARKS if p.name.startswith(prefix + m)), None)
        if mark is None:
            continue
        host, _, pid = p.name[len(prefix + mark):].rpartition(".")
        if host == HOST and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def replaced_dir(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder to write a run into; on success it replaces ``out`` as a whole, on an
    exception it is removed and ``out`` is left as it was."""
    out = check_out_dir(out, overwrite=overwrite)
    tag = f"{HOST}.{os.getpid()}"
    tmp = out.parent / f".{out.name}.run-{tag}"
    old = out.parent / f".{out.name}.old-{tag}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _sweep(out)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as err:  # the user's --out names a place that cannot be written: say so of --out itself
        raise InputError(err.strerror or type(err).__name__, path=out, fix=from_os_error(err).fix) from err
    try:
        yield tmp
        fsync_dir(tmp)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
