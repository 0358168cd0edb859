"""A selection run read back for its report: ``manifest.json`` and ``selection.parquet`` checked, and the page's
path, each problem an :class:`InputError` (one line on the command line, exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasksift.util.errors import InputError
from tasksift.util.io import atomic_path

#: the columns of ``selection.parquet`` the report reads, and what each must hold
SELECTION_COLUMNS = {"rank": pa.types.is_integer, "id": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
                     "row": pa.types.is_integer, "weight": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
                     "score": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t), "reason": lambda t: True}
#: sections of the manifest that must be JSON objects when present
_OBJECTS = ("call", "inputs", "counts", "budget", "params")
_RERUN = "run `tasksift select` again to write the run afresh"


def read_run(run_dir: Path) -> tuple[dict[str, Any], Any]:
    """The run's manifest (a dict whose sections have the types the report reads) and its selection (a pandas
    frame with the columns the report reads)."""
    manifest_path, selection_path = run_dir / "manifest.json", run_dir / "selection.parquet"
    for path in (manifest_path, selection_path):
        if not path.is_file():
            raise InputError("not found", path=path, fix="pass a directory written by `tasksift select --out`")
    return read_manifest(manifest_path), read_selection(selection_path)


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise InputError(f"not valid JSON ({err})", path=path, fix=_RERUN) from None
    if not isinstance(manifest, dict):
        raise InputError(f"not a tasksift manifest (it holds a JSON {type(manifest).__name__})", path=path,
                         fix=_RERUN)
    for key in _OBJECTS:
        if key in manifest and not isinstance(manifest[key], dict):
            raise InputError(f"the manifest's {key!r} is not a JSON object", path=path, fix=_RERUN)
    call, inputs = manifest.get("call", {}), manifest.get("inputs", {})
    for key in ("pool", "target", "pool_vectors", "target_vectors", "model", "text_field", "template", "id_field"):
        if call.get(key) is not None and not isinstance(call[key], str):
            raise InputError(f"the manifest's call.{key} is not a text", path=path, fix=_RERUN)
    for side in ("pool", "target"):
        info = inputs.get(side)
        if info is not None and (not isinstance(info, dict) or not isinstance(info.get("vectors", {}), dict)):
            raise InputError(f"the manifest's inputs.{side} is not a JSON object", path=path, fix=_RERUN)
    seed = manifest.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"the manifest's seed {seed!r} is not a whole number", path=path, fix=_RERUN)
    return manifest


def read_selection(path: Path) -> Any:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:200]
        raise InputError(f"not a readable parquet file ({reason})", path=path, fix=_RERUN) from None
    for name, ok in SELECTION_COLUMNS.items():
        if name not in table.column_names:
            raise InputError(f"the selection has no column {name!r}", path=path, fix=_RERUN)
        if not ok(table.schema.field(name).type):
            raise InputError(f"the selection's column {name!r} holds {table.schema.field(name).type}", path=path,
                             fix=_RERUN)
    frame = table.to_pandas()
    if frame["row"].isna().any() or (len(frame) and int(frame["row"].min()) < 0):
        raise InputError("the selection's column 'row' holds missing or negative rows", path=path, fix=_RERUN)
    if not np.isfinite(frame[["weight", "score"]].to_numpy(dtype=np.float64)).all():
        raise InputError("the selection's weights or scores are not all finite numbers", path=path, fix=_RERUN)
    return frame


def check_rows(rows: np.ndarray, n: int, what: str, path: Any) -> None:
    """Every selected row must exist in the ``n`` rows of the run's ``what`` (records or vectors)."""
    if len(rows) and int(rows.max()) >= n:
        raise InputError(f"the selection names row {int(rows.max())} but the {what} have {n} rows", path=path,
                         fix="the input changed since the run: rerun `tasksift select`")


def read_eval(path: Path) -> dict[str, Any] | None:
    """``eval.json`` of the run, ``None`` when there is none."""
    if not path.is_file():
        return None
    return read_json_object(path, "an evaluation written by `tasksift eval`", "run `tasksift eval` again")


def read_comparison(folder: Path) -> dict[str, Any]:
    """``comparison.json`` of a ``tasksift compare`` folder (or that file), its ``rows`` a JSON object."""
    path = folder / "comparison.json" if folder.is_dir() else folder
    fix = "pass --compare the folder written by `tasksift compare --out`"
    if not path.is_file():
        raise InputError("not found", path=path, fix=fix)
    result = read_json_object(path, "a comparison written by `tasksift compare`", fix)
    if not isinstance(result.get("rows"), dict) or not all(isinstance(r, dict) for r in result["rows"].values()):
        raise InputError("the comparison's 'rows' is not a JSON object of rows", path=path, fix=fix)
    return result


def read_json_object(path: Path, what: str, fix: str) -> dict[str, Any]:
    """The JSON object in ``path``; anything else (unreadable, not JSON, not an object) is one InputError."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise InputError(f"not valid JSON ({err})", path=path, fix=fix) from None
    if not isinstance(result, dict):
        raise InputError(f"not {what}", path=path, fix=fix)
    return result


def page_path(run_dir: Path, out: str | Path | None) -> Path:
    """Where the page goes (``out`` or ``RUN_DIR/report.html``), refused up front when it names a directory."""
    target = Path(out) if out is not None else run_dir / "report.html"
    if target.is_dir():
        raise InputError("the report's path is a directory", path=target,
                         fix="give --out the path of the .html file to write")
    return target


def write_page(target: Path, page: str) -> Path:
    """Write the page atomically (its folder created when missing)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target
