"""The Python entry point: :func:`select`.

Every method runs the same five steps, and none is named here: load the records and vectors; featurize them
as the selector class declares (``needs``, ``features``); let the selector :meth:`~Selector.prepare` what else
it reads; :meth:`~Selector.fit`; fill ids and the manifest and write the outputs. The engine decides where
featurization and neighbour search run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tasksift.engine import Engine, get_engine
from tasksift.features.embed import embed_texts
from tasksift.features.gradients.recipe import GradientRecipe, gradient_model, gradient_texts, selection_gradients
from tasksift.index.device import DeviceSearch
from tasksift.records import RecordSet, check_vectors, dataset_kind, load_records, load_vectors, records_from_dicts
from tasksift.selection.exports import check_exports, export_names, write_exports
from tasksift.selection.manifest import Stages, records_info, versions, where
from tasksift.selection.run_dir import check_out_dir, replaced_dir
from tasksift.selectors import Context, Inputs, Selection, Selector, get
from tasksift.util.device import device_info, resolve_device
from tasksift.util.errors import InputError, from_os_error
from tasksift.util.io import write_json_atomic

#: records: a path, a glob, ``hf://org/name``, a list of paths or of dicts, a Dataset, IterableDataset or DataFrame
RecordsLike = str | Path | Sequence[str | Path] | Sequence[Mapping[str, Any]] | Any
#: which split and subset of a dataset folder or hub dataset to read (in the manifest's call only when given)
_SOURCE_KEYS = ("split", "subset", "target_split", "target_subset")


def parse_budget(budget: int | float | str, n: int) -> int:
    """A budget as a count (``500``) or a share of the pool (``"1%"``, ``"0.5%"``) -> a count in ``[1, n]``."""
    if isinstance(budget, bool) or not isinstance(budget, int | float | str | np.integer | np.floating):
        raise InputError(f"budget {budget!r} is neither a count nor a percentage",
                         fix="write it as a count (500) or a share of the pool (1%)")
    text = str(budget).strip()
    share = text.endswith("%")
    try:
        value = float(text[:-1] if share else text)
    except (ValueError, OverflowError):
        raise InputError(f"budget {text!r} is neither a count nor a percentage",
                         fix="write it as a count (500) or a share of the pool (1%)") from None
    if share:
        if not math.isfinite(value) or value <= 0 or value > 100:
            raise InputError(f"budget {text} must be a share between 0% and 100%")
        count = int(math.floor(n * value / 100 + 0.5))
        if count == 0:
            raise InputError(f"budget {text} of a pool of {n} examples is less than one example",
                             fix="ask for a larger share or a count")
        return count
    if not math.isfinite(value) or value != int(value) or value <= 0:
        raise InputError(f"budget {text} must be a positive whole number of examples or a percentage")
    count = int(value)
    if count > n:
        raise InputError(f"budget {count} is larger than the pool ({n} examples)", fix=f"ask for at most {n}")
    return count


@dataclass
class Request:
    """One call of :func:`select`, as given (records and vectors as paths, arrays or lists)."""

    pool: Any
    target: Any
    pool_vectors: Any
    target_vectors: Any
    method: str
    budget: Any
    seed: int
    view: dict[str, Any]
    model: str | None
    cache_dir: Any
    index: str
    progress: bool
    features: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    #: where models run (a resolved ``torch.device``; ``None``: the CPU)
    device: Any = None
    export: list[str] = field(default_factory=list)
    repeat_weights: bool = False


def select(pool: RecordsLike | None = None, target: RecordsLike | None = None, *,
           pool_vectors: np.ndarray | str | Path | None = None,
           target_vectors: np.ndarray | str | Path | None = None,
           method: str = "tsds", budget: int | float | str = "1%", seed: int = 0,
           text_field: str | None = None, template: str | None = None, id_field: str | None = None,
           text_view: str | None = None, split: str | None = None, subset: str | None = None,
           target_split: str | None = None, target_subset: str | None = None,
           model: str | None = None, cache_dir: str | Path | None = None, index: str = "auto",
           engine: str | Engine = "local", address: str | None = None, workers: int | None = None,
           out: str | Path | None = None, overwrite: bool = False, progress: bool = False,
           features: Mapping[str, Any] | None = None, device: Any = None,
           export: str | Sequence[str] | None = None, repeat_weights: bool = False, **params: Any) -> Selection:
    """Select ``budget`` examples of ``pool`` for the task that ``target`` exemplifies.

    ``pool`` and ``target`` are record files (jsonl, also gzip / zstd compressed; json; parquet; csv; a saved HF
    dataset), globs or lists of files, folders laid out like hub datasets (``split`` and ``subset`` choose the
    files; ``target_split`` / ``target_subset`` for the target, default the same), ``hf://org/name`` (from the
    local Hugging Face cache), ``datasets.Dataset`` / ``IterableDataset`` (streamed, never held whole),
    ``pandas.DataFrame`` or lists of dicts (:func:`tasksift.records.load_records`). ``text_view="chat"`` reads
    ``messages`` / ``conversations`` records as their turns with role tags (chosen by itself when records have
    no ``text`` field but one of those; with the chat template of ``model`` when it is a local directory with
    one); ``pool_vectors`` / ``target_vectors`` are arrays or ``.npy`` paths aligned with the records (with
    only vectors, ids are row numbers). ``features``: feature settings on top of the selector's
    ``feature_defaults`` (for gradient selectors, :mod:`tasksift.features.gradients.recipe`). Remaining keyword
    arguments are the method's parameters (``tasksift methods`` lists them). With ``out``, the selection is
    written there (docs/design.md, "The output contract"), replacing an earlier run there as a whole; a folder
    that holds other files is refused unless ``overwrite``. ``engine``: ``"local"`` (default), ``"ray"`` (on the
    cluster at ``address`` with ``workers`` workers; see :mod:`tasksift.engine`) or an engine object; the
    selection is the same. ``device``: where the embedding or gradient model runs, ``cpu`` (default), ``auto``,
    ``cuda`` or ``cuda:N`` (:func:`tasksift.util.device.resolve_device`; on Ray, one worker per GPU); it is
    recorded in the manifest and is not part of any cache key. ``export``: formats to write into ``out`` as
    well, for trainers to load (``jsonl``, ``parquet``, ``hf``, ``messages``, ``alpaca``, ``sharegpt``;
    :mod:`tasksift.selection.exports`), each example ``weight`` times given ``repeat_weights``.
    """
    cls = get(method)
    optional = {"text_view": text_view, "split": split, "subset": subset, "target_split": target_split,
                "target_subset": target_subset}
    view = {"text_field": text_field, "template": template, "id_field": id_field,
            **{key: value for key, value in optional.items() if value is not None}}
    request = Request(pool, target, pool_vectors, target_vectors, method, budget, seed, view, model, cache_dir,
                      index, progress, dict(features or {}), dict(params), resolve_device(device),
                      export_names(export), bool(repeat_weights))
    try:
        out_dir = None if out is None else check_out_dir(Path(out), overwrite=overwrite)
        if not isinstance(engine, str):
            return _run(cls, request, engine, out_dir, overwrite)
        runner = get_engine(engine, address=address, workers=workers)
        try:
            return _run(cls, request, runner, out_dir, overwrite)
        finally:
            runner.close()
    except OSError as err:  # a path, a permission, a full or read-only disk: the user's to fix
        raise from_os_error(err) from err


def _search(engine: Engine, device: Any) -> Any:
    """The neighbour search of the run: on the local engine with a GPU, exact searches by torch there
    (:class:`tasksift.index.device.DeviceSearch`); else the engine's (on Ray, with a GPU too: its sharded
    search on the cluster's CPUs; the GPUs serve its featurization)."""
    if device is not None and getattr(device, "type", "cpu") == "cuda" and engine.name == "local":
        return DeviceSearch(device)
    return engine.search()


def _run(cls: type[Selector], request: Request, engine: Engine, out: Path | None, overwrite: bool) -> Selection:
    stages = Stages()
    if "index" in cls.param_defaults():
        request.params.setdefault("index", request.index)
    params = cls.convert_params({"seed": request.seed, **request.params})
    seed = params.pop("seed")
    if all(request.view.get(k) is None for k in ("text_field", "template")):
        request.view.update(cls.text_view(params) or {})
    ctx = Context(search=_search(engine, request.device), embed=lambda texts: embed_texts(
        texts, model=request.model, cache_dir=request.cache_dir, progress=request.progress,
        engine=engine, device=request.device).matrix(), cache_dir=request.cache_dir, model=request.model,
        features=request.features, progress=request.progress, device=request.device)
    try:
        with stages("load"):
            inputs = _load(request)
        check_exports(request.export, inputs.pool_records, repeat_weights=request.repeat_weights, out=out)
        inputs = _featurize(cls, inputs, request, engine, stages, params)
        k = parse_budget(request.budget, len(inputs.pool))
        selector = cls(k, seed=seed, **params)
        with stages("prepare"):
            inputs = selector.prepare(inputs, ctx)
        with stages("select"):
            selector.fit(inputs.pool, inputs.target, ctx=ctx, **inputs.helpers)
    finally:
        ctx.search.close()
    selection = selector.selection_
    _fill_ids(selection, inputs.pool_records)
    selection.records = inputs.pool_records
    selection.manifest.update(_manifest(selector, request, inputs, engine, k))
    selection.manifest["timings"] = stages.seconds
    if out is not None:
        with replaced_dir(out, overwrite=overwrite) as folder:
            with stages("write"):
                selection.save(folder, inputs.pool_records)
            if request.export:
                with stages("export"):
                    selection.manifest["exports"] = write_exports(selection, folder, inputs.pool_records,
                                                                  request.export,
                                                                  repeat_weights=request.repeat_weights)
            selection.manifest["timings"] = stages.seconds
            write_json_atomic(folder / "manifest.json", selection.manifest)
    return selection


def _load(request: Request) -> Inputs:
    """Pool and target records; ``split`` / ``subset`` choose within a dataset folder or ``hf://`` dataset
    (``target_split`` / ``target_subset`` for the target, default the pool's); a model that is a local directory
    with a chat template renders the ``chat`` view."""
    given = request.view
    view = {key: value for key, value in given.items() if key not in _SOURCE_KEYS}
    view["chat_model"] = request.model

    def records(source: Any, side: str) -> Any:
        if source is None:
            return None
        if isinstance(source, bytes | Mapping) or not (isinstance(source, str | Path | Sequence)
                                                       or dataset_kind(source)):
            raise InputError(f"{side} is a {type(source).__name__}, not records",
                             fix="pass a path, a glob, hf://org/name, a list of paths or of dicts, a datasets "
                                 "Dataset or IterableDataset, or a pandas DataFrame")
        if isinstance(source, Sequence) and not isinstance(source, str):
            if not (source and all(isinstance(item, str | Path) for item in source)):
                return records_from_dicts(list(source), **view)
            if not Path(source[0]).exists():
                raise InputError(f"{side} record 0 is a {type(source[0]).__name__}, not a dict, nor a file that "
                                 f"exists: {str(source[0])[:80]!r}", fix="pass a list of dicts, or of record files")
        split, subset = given.get("split"), given.get("subset")
        if side == "target":
            split, subset = given.get("target_split", split), given.get("target_subset", subset)
        return load_records(source, **view, split=split, subset=subset)

    pool, target = records(request.pool, "pool"), records(request.target, "target")
    return Inputs(pool=pool, target=target, pool_records=pool, target_records=target)


def _featurize(cls: type[Selector], inputs: Inputs, request: Request, engine: Engine, stages: Stages,
               params: dict[str, Any]) -> Inputs:
    """What ``fit`` reads, by what the class declares it needs (``params``: the selector's, checked)."""
    pool_records, target_records = inputs.pool_records, inputs.target_records
    if cls.needs == "records":
        if pool_records is None:
            raise InputError(f"method {cls.name!r} reads records", fix="pass --pool records")
        return inputs.but(info={"kind": "records"})
    if cls.needs == "count":
        if pool_records is not None:
            return inputs.but(pool=pool_records.ids, target=None, info={"kind": "none"})
        with stages("load"):
            x = _vectors(request.pool_vectors, None, None, "pool vectors", missing="no pool given")
        return inputs.but(pool=x, target=None, info={"kind": "none"})
    if cls.needs == "texts":
        if pool_records is None or (cls.needs_target and target_records is None):
            wanted = "--pool and --target records" if cls.needs_target else "--pool records"
            raise InputError(f"method {cls.name!r} reads text", fix=f"pass {wanted} (vectors alone are not enough)")
        target = target_records.texts if cls.needs_target and target_records is not None else None
        return inputs.but(pool=pool_records.texts, target=target, info={"kind": "text"})
    return _featurize_vectors(cls, inputs, request, engine, stages, params)


def _featurize_vectors(cls: type[Selector], inputs: Inputs, request: Request, engine: Engine,
                       stages: Stages, params: dict[str, Any]) -> Inputs:
    pool_records, target_records = inputs.pool_records, inputs.target_records
    wants_target = cls.needs_target
    if wants_target and (request.pool_vectors is None) != (request.target_vectors is None):
        raise InputError("give both --pool-vectors and --target-vectors, or neither (then both are embedded)")
    if request.pool_vectors is not None:
        with stages("load"):
            x = _vectors(request.pool_vectors, pool_records, None, "pool vectors")
            q = _vectors(request.target_vectors, target_records, x.shape[1], "target vectors") \
                if wants_target else None
        return inputs.but(pool=x, target=q, info={"kind": "user vectors"})
    if pool_records is None and not wants_target:
        raise InputError("no pool given", fix="pass --pool records or --pool-vectors")
    if pool_records is None or (wants_target and target_records is None):
        raise InputError("no pool or no target given",
                         fix="pass --pool and --target records, or --pool-vectors and --target-vectors")
    if not wants_target and cls.defers_pool_features(params):
        # the selector's prepare computes the rows it reads (Selector.defers_pool_features)
        return inputs.but(pool=pool_records, target=None, deferred=True,
                          info={"kind": cls.features, "pool": {"computed": "by the selector, as it reads them"}})
    with stages(cls.features):
        pool_feat, target_feat, extra = _compute(cls, pool_records, target_records if wants_target else None,
                                                 request, engine)
    info: dict[str, Any] = {"kind": cls.features, **extra, "pool": pool_feat.info()}
    if target_feat is not None:
        info["target"] = target_feat.info()
    # a pool of more than MAPPED_MIN_BYTES is memory-mapped (tasksift.features.shards.CachedFeatures.array)
    return inputs.but(pool=pool_feat.array(), target=None if target_feat is None else target_feat.matrix(),
                      featurized_here=True, info=info)


def _compute(cls: type[Selector], pool_records: RecordSet, target_records: RecordSet | None,
             request: Request, engine: Engine) -> tuple[Any, Any, dict[str, Any]]:
    """Cached features of the pool's and the target's records, computed by ``engine`` where not cached, and what
    the manifest records of them (for gradients: the proxy and the loss it took)."""
    common = {"cache_dir": request.cache_dir, "progress": request.progress, "device": request.device}
    if cls.features == "gradients":
        recipe = GradientRecipe.of(cls.feature_defaults, request.features)
        pool_texts, target_texts, loss = gradient_texts(pool_records, target_records, request.model,
                                                        recipe.values["kind"])
        pool, target = selection_gradients(pool_texts, target_texts, recipe, engine=engine, model=request.model,
                                           **common)
        return pool, target, {"proxy": str(gradient_model(request.model)), "loss": loss}
    settings = dict(request.features)
    dtype = settings.pop("dtype", "float32")  # the one embedding setting: how the cache stores rows
    if settings:
        raise InputError(f"method {cls.name!r} takes no feature settings but dtype (it reads sentence embeddings)",
                         fix=f"drop {', '.join(sorted(settings))}")
    if dtype not in ("float32", "float16"):
        raise InputError(f"feature dtype={dtype!r} is not a storage type of the embedding cache",
                         fix="use dtype=float32 (default) or dtype=float16 (half the disk and memory)")
    common["dtype"] = dtype
    pool = embed_texts(pool_records.texts, engine=engine, model=request.model, **common)
    target = None if target_records is None else embed_texts(target_records.texts, engine=engine,
                                                             model=request.model, **common)
    return pool, target, {}


def _vectors(source: Any, records: Any, dim: int | None, what: str, missing: str | None = None) -> np.ndarray:
    if source is None:
        raise InputError(missing or f"no {what} given", fix="pass --pool records or --pool-vectors")
    check = {"expected_rows": len(records) if records is not None else None, "expected_dim": dim,
             "records_path": records.path if records is not None else None}
    if isinstance(source, str | Path):
        return load_vectors(source, what=what, **check)
    return check_vectors(source, what, **check)


def _manifest(selector: Selector, request: Request, inputs: Inputs, engine: Engine, k: int) -> dict[str, Any]:
    selection = selector.selection_
    params = {key: value for key, value in request.params.items() if key not in ("index", "seed")}
    return {
        "method": selector.name,
        "params": {"budget": k, "seed": selector.seed, **selector.get_params()},
        "seed": selector.seed,
        "budget": {"requested": str(request.budget), "count": k},
        "engine": engine.name,
        "device": device_info(request.device),
        "engine_info": engine.info(),
        "inputs": {"pool": records_info(inputs.pool_records, request.pool_vectors),
                   "target": records_info(inputs.target_records, request.target_vectors)},
        "features": inputs.info,
        "counts": {"pool": len(inputs.pool), "target": len(inputs.target) if inputs.target is not None else 0,
                   "selected": len(selection), "weight_total": float(selection.weights.sum())},
        "versions": versions(),
        "call": {"pool": where(request.pool), "target": where(request.target),
                 "pool_vectors": where(request.pool_vectors), "target_vectors": where(request.target_vectors),
                 "method": request.method, "budget": str(request.budget), "seed": selector.seed, **request.view,
                 "model": request.model, "index": request.index, "params": params,
                 "features": dict(request.features),
                 **({"export": request.export, "repeat_weights": request.repeat_weights} if request.export else {})},
    }


def _fill_ids(selection: Selection, records: Any) -> None:
    """Record ids for the chosen rows (and for the rows of side tables), when the pool came as records."""
    ids = records.ids if records is not None else None
    if ids is not None:
        selection.ids = [ids[i] for i in selection.indices]
    for name, table in list(selection.tables.items()):
        if "row" in table.column_names and "id" not in table.column_names:
            rows = table.column("row").to_numpy()
            row_ids = [ids[i] for i in rows] if ids is not None else [str(i) for i in rows]
            selection.tables[name] = table.add_column(0, "id", pa.array(row_ids, type=pa.string()))
