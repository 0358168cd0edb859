"""Gradient features of texts: the featurizer, the chain that builds it, and the cached computation.

A feature row is built by one chain, :class:`GradientFactory`: the proxy (:mod:`.proxy`) -> its warm-up
(:mod:`.warmup`, optional) -> the Adam preconditioner (optional) -> the random projection (:mod:`.projection`,
optional). :func:`gradient_features` runs it shard by shard into the feature cache (kind ``"gradients"``), here
or on an engine's workers; :func:`tasksift.features.gradients.recipe.proxy_trainer` builds the same chain for
SPICE's proxy trainer.

On a GPU (``device="cuda"``) the proxy, its warm-up and each batch's forward and backward pass run there in
float32; the raw rows come back to the CPU, where they are preconditioned and projected. The device is not part
of the cache key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tasksift.features.cache import CachedFeatures, FeatureCache
from tasksift.features.gradients.projection import DEFAULT_PROJ_DIM, PROJECTION_KINDS, RandomProjection
from tasksift.features.gradients.proxy import (
    DEFAULT_MAX_LENGTH,
    FEATURE_VERSION,
    ProxyModel,
    ProxySpec,
    key_identity,
    proxy_spec,
)
from tasksift.features.gradients.warmup import PRECONDITION_RULES, WarmupSettings, cached_warmup, warmup_key
from tasksift.features.jobs import FeatureJob, run_job
from tasksift.util.device import check_local, driver_device, engine_device, resolve_device
from tasksift.util.errors import InputError
from tasksift.util.params import Declarations, Interval, Options, convert_params

if TYPE_CHECKING:
    from rich.progress import Progress

#: rows per cache shard: gradient rows are slow, so shards are smaller than for embeddings
DEFAULT_GRADIENT_SHARD_SIZE = 256
#: texts per forward/backward pass
DEFAULT_GRADIENT_BATCH_SIZE = 16
#: raw (unprojected) gradient rows are buffered up to this many bytes before one projection pass
DEFAULT_BUFFER_BYTES = 256 << 20
#: what each setting of the projection and the cache accepts; feature settings of gradient methods too
FEATURE_PARAMETERS: Declarations = {
    "seed": [Interval(int, 0)], "proj_dim": [Interval(int, 0), None], "projection": [Options(*PROJECTION_KINDS)],
    "batch_size": [Interval(int, 1)], "shard_size": [Interval(int, 1)],
}


class GradientFeaturizer:
    """Turns texts into gradient feature rows: per-example gradients, preconditioned, projected.

    ``precondition``: a function applied to each batch of raw gradients ``(B, D)`` (for example
    ``lambda g: warm.precondition(g, "adam", 1e-8)``) or ``None``. ``projection``: a :class:`RandomProjection`
    from the raw gradient width, or ``None`` (raw gradients). Texts are processed longest first in batches of
    ``batch_size``; raw rows are buffered up to ``buffer_bytes`` and projected together, so each tile of the
    projection is generated once per buffer.
    """

    def __init__(self, proxy: ProxyModel, *, projection: RandomProjection | None = None,
                 precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 batch_size: int = DEFAULT_GRADIENT_BATCH_SIZE,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES, settings: dict[str, Any] | None = None) -> None:
        if projection is not None and projection.in_dim != proxy.dim:
            raise ValueError(f"the projection reads {projection.in_dim} values, the gradients have {proxy.dim}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.proxy = proxy
        self.projection = projection
        self.precondition = precondition
        self.batch_size = batch_size
        self.buffer_rows = max(1, int(buffer_bytes) // (4 * proxy.dim))
        self.settings = settings or {}

    @property
    def dim(self) -> int:
        """Width of a feature row."""
        return self.projection.out_dim if self.projection is not None else self.proxy.dim

    def __call__(self, texts: Sequence[str], advance: Callable[[int], None] | None = None) -> np.ndarray:
        """Feature rows of ``texts``, float32 ``(len(texts), dim)``; ``advance(n)`` after each batch."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        buffer: list[torch.Tensor] = []
        buffered: list[np.ndarray] = []

        def flush() -> None:
            if not buffer:
                return
            raw = torch.cat(buffer)
            rows = np.concatenate(buffered)
            out[rows] = self.projection.project(raw) if self.projection is not None else raw.numpy()
            buffer.clear()
            buffered.clear()

        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            grads = self.proxy.gradients([texts[i] for i in rows])
            if self.precondition is not None:
                grads = self.precondition(grads)
            buffer.append(grads)
            buffered.append(rows)
            if sum(len(r) for r in buffered) >= self.buffer_rows:
                flush()
            if advance is not None:
                advance(len(rows))
        flush()
        return out


def gradient_settings(identity: dict[str, Any], projection: dict[str, Any] | None, warmup: dict[str, Any] | None,
                      precondition: str | None) -> dict[str, Any]:
    """The cache settings of gradient features: everything that changes the rows (not paths or batch sizes).

    ``identity``: the proxy's (:meth:`ProxySpec.identity`); ``projection``: :meth:`RandomProjection.settings`
    or ``None``; ``warmup``: the warm-up settings with the digest of its texts, or ``None``; ``precondition``:
    the rule (:data:`PRECONDITION_RULES`) or ``None``.
    """
    return {
        "proxy": key_identity(identity),
        "projection": projection,
        "warmup": warmup,
        "precondition": precondition,
        "dtype": "float32",
        "mode": "eval",
        "version": FEATURE_VERSION,
    }


@dataclass(frozen=True)
class GradientFactory:
    """The chain proxy -> warm-up -> preconditioner -> projection, described without loading anything.

    :meth:`plan` derives it (and the cache ``settings`` of its rows) from the settings; :meth:`build` loads the
    proxy (or takes a loaded one), runs the warm-up on ``warmup_texts`` (or reads it from the cache) and returns
    the :class:`GradientFeaturizer`. Called with a thread count (by an engine, on a worker), it builds from
    ``spec`` and refuses to run if the proxy found there is not the driver's model. ``device``: what the run asks
    the workers for (``cpu``, ``cuda`` or ``auto``, :func:`tasksift.util.device.engine_device`); the engine
    passes each worker the device it builds on (``cuda``: the GPU it was given).
    """

    spec: ProxySpec | None
    warmup: WarmupSettings | None
    warmup_texts: list[str] | None
    rule: str | None
    proj_dim: int | None
    seed: int
    projection: str
    batch_size: int
    settings: dict[str, Any]
    cache_dir: str | None
    device: str = "cpu"

    @classmethod
    def plan(cls, identity: dict[str, Any], spec: ProxySpec | None, *, warmup: WarmupSettings | None,
             warmup_texts: Sequence[str], rule: str | None, proj_dim: int | None, seed: int, projection: str,
             batch_size: int, cache_dir: str | Path | None, device: str = "cpu") -> GradientFactory:
        """The chain for the proxy of ``identity`` (``spec``: how to load it; ``None``: a loaded proxy is passed
        to :meth:`build`). A warm-up of no steps is no warm-up; ``proj_dim`` ``None`` or 0: raw gradients."""
        warm = warmup if warmup is not None and warmup.steps > 0 else None
        texts = list(warmup_texts) if warm is not None else None
        proj = RandomProjection(1, proj_dim, seed=seed, kind=projection).settings() if proj_dim else None
        warm_key = warmup_key(texts, warm) if warm is not None and texts is not None else None
        settings = gradient_settings(identity, proj, warm_key, rule)
        return cls(spec, warm, texts, rule, proj_dim or None, seed, projection, batch_size, settings,
                   None if cache_dir is None else str(cache_dir), device)

    def build(self, proxy: ProxyModel | None = None, *, progress: bool = False,
              device: str | torch.device | None = None) -> GradientFeaturizer:
        """The featurizer: ``proxy`` (default: ``spec`` loaded) warmed up, preconditioned and projected.
        ``device``: where the proxy runs (``None``: where it is, the CPU for one loaded here)."""
        if proxy is None:
            if self.spec is None:
                raise ValueError("a chain planned for a loaded proxy builds only with that proxy")
            proxy = self.spec.load()
        if device is not None:
            proxy.to(resolve_device(device))
        prec = None
        if self.warmup is not None and self.warmup_texts is not None:
            warm = cached_warmup(proxy, self.warmup_texts, self.warmup, cache_dir=self.cache_dir, progress=progress)
            if self.rule is not None:
                prec = partial(warm.precondition, rule=self.rule, eps=self.warmup.eps)
        proj = None
        if self.proj_dim:
            proj = RandomProjection(proxy.dim, self.proj_dim, seed=self.seed, kind=self.projection)
        return GradientFeaturizer(proxy, projection=proj, precondition=prec, batch_size=self.batch_size,
                                  settings=self.settings)

    def __call__(self, threads: int, device: str | None = None) -> Callable[[list[str]], np.ndarray]:
        if self.spec is None:
            raise ValueError("a chain planned for a loaded proxy cannot run on a worker")
        if key_identity(self.spec.identity()) != self.settings["proxy"]:
            raise InputError("the proxy model on this worker differs from the driver's (fingerprints differ)",
                             path=str(self.spec.path), fix="install the same model on every node of the cluster")
        proxy = self.spec.load()
        torch.set_num_threads(threads)
        where = device or self.device
        return self.build(proxy, device=None if where == "cpu" else where)


def gradient_features(
    texts: Sequence[str],
    *,
    model: str | Path | ProxySpec | ProxyModel | None = None,
    kind: str = "auto",
    params: str = "lora",
    target_modules: Sequence[str] | None = None,
    lora_r: int = 8,
    lora_alpha: int = 16,
    max_length: int = DEFAULT_MAX_LENGTH,
    seed: int = 0,
    proj_dim: int | None = DEFAULT_PROJ_DIM,
    projection: str = "rademacher",
    warmup: WarmupSettings | None = None,
    warmup_texts: Sequence[str] | None = None,
    precondition: bool | str | None = None,
    batch_size: int = DEFAULT_GRADIENT_BATCH_SIZE,
    shard_size: int = DEFAULT_GRADIENT_SHARD_SIZE,
    cache_dir: str | Path | None = None,
    progress: bool | Progress = True,
    desc: str = "gradients",
    engine: Any = None,
    device: str | torch.device | None = None,
) -> CachedFeatures:
    """Gradient features of ``texts``, computed shard by shard into the feature cache (kind ``"gradients"``).

    ``model``: a name or path for :func:`proxy_spec` (``None``: MiniLM), a :class:`ProxySpec`, or a loaded
    :class:`ProxyModel` (for the last two, ``kind``, ``params``, ``target_modules``, ``lora_*``,
    ``max_length`` and the LoRA seed are their own). ``proj_dim``: projected width (``None`` or 0: raw
    gradients); ``projection``: ``rademacher`` or ``gaussian``, seeded by ``seed``. ``warmup``: an Adam warm-up
    on ``warmup_texts`` (default: ``texts``), run once before the first gradient (cached, see
    :func:`cached_warmup`); ``precondition``: ``"adam"`` (or ``True``) or ``"less"``, see
    :data:`PRECONDITION_RULES` (needs a warm-up with steps); ``None`` or ``False``: plain gradients.
    The warm-up sets a loaded proxy's adapters in place (trained, or read back from the warm-up cache), so the
    pool and the target calls may share one loaded proxy or one spec: both start from the same weights.

    Finished shards are reused and a killed run resumes; when every shard is cached the model is not loaded.
    ``engine``: where missing shards are computed (a :mod:`tasksift.engine` engine; ``None`` or local: here).
    ``device``: where the proxy runs (module docstring; ``None``: the CPU, or a loaded proxy's own device); on
    the Ray engine a GPU is one worker per GPU of the cluster (``auto``: its GPUs if any).
    """
    rule = _rule(precondition, warmup)
    where = None if device is None else driver_device(device, engine)
    check_local(where if where is not None else torch.device("cpu"), engine)
    v = convert_params("gradient features", FEATURE_PARAMETERS, {
        "seed": seed, "proj_dim": proj_dim, "projection": projection, "batch_size": batch_size,
        "shard_size": shard_size})
    seed, proj_dim, projection, batch_size, shard_size = (
        v["seed"], v["proj_dim"], v["projection"], v["batch_size"], v["shard_size"])
    proxy: ProxyModel | None = None
    spec: ProxySpec | None = None
    if isinstance(model, ProxyModel):
        _check_unchanged(model, warmup)
        proxy, identity = model, model.identity
    else:
        spec = model if isinstance(model, ProxySpec) else proxy_spec(
            model, kind=kind, params=params, target_modules=target_modules, lora_r=lora_r, lora_alpha=lora_alpha,
            max_length=max_length, seed=seed)
        identity = spec.identity()
    factory = GradientFactory.plan(identity, spec, warmup=warmup,
                                   warmup_texts=warmup_texts if warmup_texts is not None else texts, rule=rule,
                                   proj_dim=proj_dim, seed=seed, projection=projection, batch_size=batch_size,
                                   cache_dir=cache_dir,
                                   device=engine_device(device, where if where is not None else torch.device("cpu")))
    cache = FeatureCache(cache_dir, "gradients", {**factory.settings, "shard_size": shard_size},
                         meta={"model_name": identity["name"], "model_path": identity["path"]})
    built: list[GradientFeaturizer] = []

    def featurizer() -> GradientFeaturizer:
        if not built:
            built.append(factory.build(proxy, progress=bool(progress), device=where))
        return built[0]

    def featurize(chunk: list[str], advance: Callable[[int], None]) -> np.ndarray:
        return featurizer()(chunk, advance)

    dim = proj_dim if proj_dim else (featurizer().dim if len(texts) == 0 else None)
    job = FeatureJob(cache, texts, featurize, factory if spec is not None else None, desc, dim, progress)
    return run_job(job, engine)


def _rule(precondition: bool | str | None, warmup: WarmupSettings | None) -> str | None:
    """The preconditioning rule (``None``: none), refused without a warm-up of at least one step."""
    rule = "adam" if precondition is True else (precondition or None)
    if rule is not None and rule not in PRECONDITION_RULES:
        raise InputError(f"unknown preconditioning rule {precondition!r}",
                         fix=f"choose one of {', '.join(PRECONDITION_RULES)}")
    if rule is not None and (warmup is None or warmup.steps < 1):
        raise InputError("Adam preconditioning needs a warm-up with at least one step",
                         fix="pass a warm-up (e.g. warmup_steps=8) or drop the preconditioning")
    return rule


def _check_unchanged(proxy: ProxyModel, warmup: WarmupSettings | None) -> None:
    """A loaded proxy whose adapters a warm-up or training changed does not give the features of its identity."""
    expected = None if warmup is None or warmup.steps < 1 else "warmup"
    state = proxy.adapter_state or {}
    if "trainer_steps" in state or (expected is None and state):
        raise InputError("the loaded proxy's adapters were changed by a warm-up or by training, so its "
                         "gradients are not the ones these settings name",
                         fix="load a fresh proxy (or pass its ProxySpec) for these features")
