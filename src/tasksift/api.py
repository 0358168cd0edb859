"""The Python entry point: :func:`select`.

It does the edges the selectors do not: reads records and vectors, computes (or loads cached) features, turns
the budget into a count, runs the selector, fills ids and the manifest, and writes the outputs.
"""

from __future__ import annotations

import inspect
import json
import math
import platform
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tasksift import selectors
from tasksift.util.errors import InputError
from tasksift.selectors.base import Selection, Selector

RecordsLike = str | Path | Sequence[Mapping[str, Any]]


def parse_budget(budget: int | float | str, n: int) -> int:
    """A budget as a count (``500``) or a share of the pool (``"1%"``, ``"0.5%"``) -> a count in ``[1, n]``."""
    text = str(budget).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not math.isfinite(share) or share <= 0 or share > 100:
                raise InputError(f"budget {text} must be a share between 0% and 100%")
            count = int(math.floor(n * share / 100 + 0.5))
            if count == 0:
                raise InputError(f"budget {text} of a pool of {n} examples is less than one example",
                                 fix="ask for a larger share or a count")
            return count
        value = float(text)
    except ValueError:
        raise InputError(f"budget {text!r} is neither a count nor a percentage",
                         fix="write it as a count (500) or a share of the pool (1%)") from None
    if value != int(value) or value <= 0:
        raise InputError(f"budget {text} must be a positive whole number of examples or a percentage")
    count = int(value)
    if count > n:
        raise InputError(f"budget {count} is larger than the pool ({n} examples)", fix=f"ask for at most {n}")
    return count


def coerce_params(cls: type[Selector], params: Mapping[str, Any]) -> dict[str, Any]:
    """Check parameter names against the selector's and convert strings from the CLI to the defaults' types."""
    defaults = cls.param_defaults()
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            raise InputError(f"method {cls.name!r} has no parameter {key!r}", fix=f"its parameters: {known}")
        default = defaults[key]
        out[key] = _coerce(key, value, default)
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    text = value.strip()
    try:
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = {bool: "true or false", int: "a whole number", float: "a number"}[type(default)]
        raise InputError(f"parameter {key}={value!r} is not {kind}",
                         fix=f"for example {key}={default!r}") from None
    return json.loads(text)


def _load_records(source: RecordsLike, **view: Any) -> Any:
    from tasksift.records import load_records, records_from_dicts

    if isinstance(source, str | Path):
        return load_records(source, **view)
    return records_from_dicts(list(source), **view)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("tasksift", "numpy", "faiss-cpu", "pyarrow", "torch", "sentence-transformers", "transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


class _Stages:
    """Wall-clock seconds per stage, for the manifest."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):  # noqa: ANN204 - a context manager
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 4)


def select(pool: RecordsLike | None = None, target: RecordsLike | None = None, *,
           pool_vectors: np.ndarray | str | Path | None = None,
           target_vectors: np.ndarray | str | Path | None = None,
           method: str = "tsds", budget: int | float | str = "1%", seed: int = 0,
           text_field: str | None = None, template: str | None = None, id_field: str | None = None,
           model: str | None = None, cache_dir: str | Path | None = None, index: str = "auto",
           engine: Any = "local", address: str | None = None, workers: int | None = None,
           out: str | Path | None = None, progress: bool = False,
           features: Mapping[str, Any] | None = None, **params: Any) -> Selection:
    """Select ``budget`` examples of ``pool`` for the task that ``target`` exemplifies.

    ``pool`` and ``target`` are record files (jsonl, json, parquet, csv, a saved HF dataset) or lists of
    dicts; ``pool_vectors`` / ``target_vectors`` are arrays or ``.npy`` paths aligned with the records (with
    only vectors, ids are row numbers). ``features``: feature settings on top of the selector's
    ``feature_defaults`` (for gradient selectors, :mod:`tasksift.features.for_selection`). Remaining keyword
    arguments are the method's parameters (``tasksift methods`` lists them). With ``out``, the selection is
    written there (see DESIGN.md). ``engine``: ``"local"`` (default), ``"ray"`` (on the cluster at ``address``
    with ``workers`` workers; see :mod:`tasksift.engine`) or an engine object; the selection is the same.
    """
    from tasksift.engine import get_engine

    cls = selectors.get(method)
    if isinstance(engine, str):
        runner = get_engine(engine, address=address, workers=workers)
        try:
            return _select(cls, pool, target, pool_vectors, target_vectors, method, budget, seed, text_field,
                           template, id_field, model, cache_dir, index, runner, out, progress, features, params)
        finally:
            runner.close()
    return _select(cls, pool, target, pool_vectors, target_vectors, method, budget, seed, text_field, template,
                   id_field, model, cache_dir, index, engine, out, progress, features, params)


def _select(cls: type[Selector], pool: Any, target: Any, pool_vectors: Any, target_vectors: Any, method: str,
            budget: Any, seed: int, text_field: str | None, template: str | None, id_field: str | None,
            model: str | None, cache_dir: Any, index: str, engine: Any, out: Any, progress: bool,
            features: Mapping[str, Any] | None, params: dict[str, Any]) -> Selection:
    stages = _Stages()
    if "index" in cls.param_defaults():
        params.setdefault("index", index)
    params = coerce_params(cls, params)
    if cls.needs == "pairs" and text_field is None and template is None:  # the text view of a pair
        fields = {**cls.param_defaults(), **params}
        template = f"{{{fields['query_field']}}}\n{{{fields['doc_field']}}}"
    view = {"text_field": text_field, "template": template, "id_field": id_field}

    with stages("load"):
        pool_records = _load_records(pool, **view) if pool is not None else None
        target_records = _load_records(target, **view) if target is not None else None
    pool_feat, target_feat, features_info = _features(
        cls, pool_records, target_records, pool_vectors, target_vectors, model, cache_dir, progress, stages,
        params, features, engine)

    n = len(pool_feat)
    k = parse_budget(budget, n)
    selector = cls(k, seed=seed, **params)
    fit_extra = _fit_extras(cls, pool_records, pool_vectors, params, model, cache_dir, progress, features)
    if getattr(cls, "wants_probe", False):  # HARP: the probe model is loaded here, never by the selector
        from tasksift.selectors.harp.setup import build_probe

        with stages("probe setup"):
            fit_extra["probe"] = build_probe(selector, pool_records, target_records, pool_feat, target_feat,
                                             cache_dir=cache_dir, progress=progress)
        fit_extra["progress"] = progress
    search = engine.search() if "search" in inspect.signature(cls.fit).parameters else None
    if search is not None:
        fit_extra["search"] = search
    try:
        with stages("select"):
            selector.fit(pool_feat, target_feat, **fit_extra)
    finally:
        if search is not None:
            search.close()
    selection = selector.selection_

    ids = pool_records.ids if pool_records is not None else None
    if ids is not None:
        selection.ids = [ids[i] for i in selection.indices]
    for name, table in list(selection.tables.items()):
        if "row" in table.column_names and "id" not in table.column_names:
            rows = table.column("row").to_numpy()
            row_ids = [ids[i] for i in rows] if ids is not None else [str(i) for i in rows]
            selection.tables[name] = table.add_column(0, "id", _string_array(row_ids))

    manifest = selection.manifest
    manifest.update({
        "method": cls.name,
        "params": {"budget": k, "seed": seed, **selector.get_params()},
        "seed": seed,
        "budget": {"requested": str(budget), "count": k},
        "engine": engine.name,
        "engine_info": engine.info(),
        "inputs": {
            "pool": _records_info(pool_records, pool_vectors),
            "target": _records_info(target_records, target_vectors),
        },
        "features": features_info,
        "counts": {"pool": n, "target": len(target_feat) if target_feat is not None else 0,
                   "selected": len(selection), "weight_total": float(selection.weights.sum())},
        "versions": _versions(),
        "call": {**_rerun_call(pool, target, pool_vectors, target_vectors, method, budget, seed, view, model,
                               index, params), "features": dict(features or {})},
    })
    manifest["timings"] = stages.seconds
    if out is not None:
        with stages("write"):
            selection.save(out, pool_records)
        manifest["timings"] = stages.seconds
        from tasksift.selection.writers import write_json_atomic

        write_json_atomic(Path(out) / "manifest.json", manifest)
    return selection


def _string_array(values: list[str]) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.string())


def _features(cls: type[Selector], pool_records: Any, target_records: Any, pool_vectors: Any, target_vectors: Any,
              model: str | None, cache_dir: Any, progress: bool, stages: _Stages,
              params: Mapping[str, Any] | None = None, features: Mapping[str, Any] | None = None,
              engine: Any = None) -> tuple[Any, Any, dict]:
    """What the selector's ``fit`` receives, by ``cls.needs``."""
    if cls.needs == "count":
        if pool_records is not None:
            return pool_records.ids, None, {"kind": "none"}
        if pool_vectors is None:
            raise InputError("no pool given", fix="pass --pool records or --pool-vectors")
        with stages("load"):
            x = _vectors(pool_vectors, pool_records, None, "pool vectors")
        return x, None, {"kind": "none"}
    if cls.needs == "pairs":
        return _pair_features(cls, pool_records, params, model, cache_dir, progress, stages)
    if cls.needs == "texts":
        if pool_records is None or target_records is None:
            raise InputError(f"method {cls.name!r} reads text",
                             fix="pass --pool and --target records (vectors alone are not enough)")
        return pool_records.texts, target_records.texts, {"kind": "text"}
    # vectors
    if not cls.needs_target:
        # a selector that reads no target (SPICE): only the pool is featurized; a given target is ignored
        if pool_vectors is not None:
            with stages("load"):
                return _vectors(pool_vectors, pool_records, None, "pool vectors"), None, {"kind": "user vectors"}
        if pool_records is None:
            raise InputError("no pool given", fix="pass --pool records or --pool-vectors")
        with stages(cls.features):
            pool_feat, _ = _featurize(cls, pool_records.texts, None, model, cache_dir, progress, features, engine)
        return pool_feat.matrix(), None, {"kind": cls.features, "pool": pool_feat.info()}
    if (pool_vectors is None) != (target_vectors is None):
        raise InputError("give both --pool-vectors and --target-vectors, or neither (then both are embedded)")
    if pool_vectors is not None:
        with stages("load"):
            x = _vectors(pool_vectors, pool_records, None, "pool vectors")
            q = _vectors(target_vectors, target_records, x.shape[1], "target vectors")
        return x, q, {"kind": "user vectors"}
    if pool_records is None or target_records is None:
        raise InputError("no pool or no target given",
                         fix="pass --pool and --target records, or --pool-vectors and --target-vectors")
    with stages(cls.features):
        pool_feat, target_feat = _featurize(cls, pool_records.texts, target_records.texts, model, cache_dir,
                                            progress, features, engine)
    info = {"kind": cls.features, "pool": pool_feat.info(), "target": target_feat.info()}
    return pool_feat.matrix(), target_feat.matrix(), info


def _featurize(cls: type[Selector], pool_texts: Any, target_texts: Any, model: str | None, cache_dir: Any,
               progress: bool, features: Mapping[str, Any] | None, engine: Any = None) -> tuple[Any, Any]:
    """Cached features of the pool's and the target's texts (target ``None`` when not given), computed by
    ``engine`` where not cached."""
    if cls.features == "gradients":
        from tasksift.features.for_selection import GradientRecipe, selection_gradients

        recipe = GradientRecipe.of(cls.feature_defaults, features)
        return selection_gradients(pool_texts, target_texts, recipe, model=model, cache_dir=cache_dir,
                                   progress=progress, engine=engine)
    if features:
        raise InputError(f"method {cls.name!r} takes no feature settings (it reads sentence embeddings)",
                         fix=f"drop {', '.join(sorted(features))}")
    from tasksift.features import embed_texts

    pool = embed_texts(pool_texts, model=model, cache_dir=cache_dir, progress=progress, engine=engine)
    target = None if target_texts is None else embed_texts(target_texts, model=model, cache_dir=cache_dir,
                                                            progress=progress, engine=engine)
    return pool, target


def _fit_extras(cls: type[Selector], pool_records: Any, pool_vectors: Any, params: Mapping[str, Any], model: Any,
                cache_dir: Any, progress: bool, features: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments of ``fit`` beyond the features: SPICE's proxy trainer for its interleaved updates,
    built when the pool came as records (the proxy can read them) and the greedy runs over several windows
    (with one window there is no later window to re-read gradients for)."""
    if cls.features != "gradients" or "proxy" not in inspect.signature(cls.fit).parameters:
        return {}
    if pool_records is None or pool_vectors is not None or params.get("window") in (None, "None", ""):
        return {}
    from tasksift.features.for_selection import GradientRecipe, proxy_trainer

    recipe = GradientRecipe.of(cls.feature_defaults, features)
    return {"proxy": proxy_trainer(pool_records.texts, recipe, model=model, cache_dir=cache_dir,
                                   progress=progress)}


def _pair_features(cls: type[Selector], pool_records: Any, params: Mapping[str, Any] | None, model: str | None,
                   cache_dir: Any, progress: bool, stages: _Stages) -> tuple[Any, None, dict]:
    """Retrieval pairs for a ``"pairs"`` selector: the pool's query and document fields embedded apart, queries
    keyed by ``query_id_field`` (when every record has it) or by their text."""
    from tasksift.records import load_records
    from tasksift.features import embed_texts
    from tasksift.selectors.opera.selector import PairFeatures

    if pool_records is None or pool_records.path is None:
        raise InputError(f"method {cls.name!r} reads query-document pairs",
                         fix="pass --pool records of pairs (fields such as query and document)")
    settings = {**cls.param_defaults(), **(params or {})}
    with stages("load"):
        queries = load_records(pool_records.path, text_field=settings["query_field"])
        docs = load_records(pool_records.path, text_field=settings["doc_field"])
        id_field = settings.get("query_id_field")
        keys: list[Any] = list(queries.texts)
        if id_field:
            rows = queries.take(np.arange(len(queries)))
            if all(id_field in r for r in rows):
                keys = [str(r[id_field]) for r in rows]
    with stages("embeddings"):
        q = embed_texts(queries.texts, model=model, cache_dir=cache_dir, progress=progress)
        d = embed_texts(docs.texts, model=model, cache_dir=cache_dir, progress=progress)
    return PairFeatures(q.matrix(), d.matrix(), keys), None, {"kind": "pair embeddings", "queries": q.info(),
                                                              "documents": d.info()}


def _vectors(source: Any, records: Any, dim: int | None, what: str) -> np.ndarray:
    from tasksift.records import check_vectors, load_vectors

    rows = len(records) if records is not None else None
    where = records.path if records is not None else None
    if isinstance(source, str | Path):
        return load_vectors(source, expected_rows=rows, expected_dim=dim, what=what, records_path=where)
    return check_vectors(source, what, expected_rows=rows, expected_dim=dim, records_path=where)


def _records_info(records: Any, vectors: Any) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if records is not None:
        info.update(path=str(records.path) if records.path else None, format=records.format, rows=len(records),
                    sha256=records.file_sha256, id_rule=records.id_rule, text_rule=records.text_rule)
    if isinstance(vectors, str | Path):
        from tasksift.records.records import file_sha256

        info["vectors"] = {"path": str(vectors), "sha256": file_sha256(Path(vectors))}
    elif vectors is not None:
        info["vectors"] = {"in_memory": True, "shape": list(np.shape(vectors))}
    return info


def _rerun_call(pool: Any, target: Any, pool_vectors: Any, target_vectors: Any, method: str, budget: Any,
                seed: int, view: dict, model: str | None, index: str, params: dict) -> dict[str, Any]:
    """The keyword arguments of :func:`select` that reproduce this run (paths only; in-memory data is marked)."""

    def where(x: Any) -> Any:
        if x is None:
            return None
        return str(Path(x).resolve()) if isinstance(x, str | Path) else "<in memory>"

    return {"pool": where(pool), "target": where(target), "pool_vectors": where(pool_vectors),
            "target_vectors": where(target_vectors), "method": method, "budget": str(budget), "seed": seed,
            **view, "model": model, "index": index,
            "params": {k: v for k, v in params.items() if k != "index"}}
