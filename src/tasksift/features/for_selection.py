"""Gradient features as ``tasksift.select`` computes them for a gradient selector (LESS, SPICE).

One set of feature settings (``--feature key=value`` on the command line, ``features={...}`` in Python, on top
of the selector's ``feature_defaults``) names the proxy, its LoRA adapters, the projection and LESS's warm-up:

- ``kind``, ``params``, ``lora_r``, ``lora_alpha``, ``max_length``, ``seed`` (LoRA init and projection; fixed
  across selection seeds, as in LESS, so three selection seeds share one feature computation),
  ``proj_dim`` (0: raw gradients), ``projection``, ``batch_size``, ``shard_size``;
- ``warmup_steps`` (0: none), ``warmup_lr``, ``warmup_sample``, ``warmup_batch_size``: the AdamW warm-up on a
  seeded sample of the pool, run once and cached;
- ``precondition`` (``none``, ``adam`` or ``less``): applied to the **pool** rows only; target rows are plain
  gradients of the same warmed-up proxy (LESS: "Adam-preconditioned for the pool, plain for the targets").

:func:`proxy_trainer` builds what SPICE's interleaved mode calls: the same proxy (warmed up the same way),
projection and preconditioning, so refreshed rows live in the space the cached features were computed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tasksift.util.errors import InputError
from tasksift.features.cache import CachedFeatures
from tasksift.features.gradients import (
    DEFAULT_GRADIENT_BATCH_SIZE,
    DEFAULT_GRADIENT_SHARD_SIZE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_PROJ_DIM,
    GradientFeaturizer,
    ProxyTrainer,
    RandomProjection,
    WarmupSettings,
    cached_warmup,
    gradient_features,
    gradient_settings,
    proxy_spec,
    texts_digest,
    warmup_sample,
)

#: every feature setting a gradient selector accepts, with its default
GRADIENT_FEATURE_DEFAULTS: dict[str, Any] = {
    "kind": "auto", "params": "lora", "lora_r": 8, "lora_alpha": 16, "max_length": DEFAULT_MAX_LENGTH,
    "seed": 0, "proj_dim": DEFAULT_PROJ_DIM, "projection": "rademacher",
    "batch_size": DEFAULT_GRADIENT_BATCH_SIZE, "shard_size": DEFAULT_GRADIENT_SHARD_SIZE,
    "warmup_steps": 0, "warmup_lr": 3e-4, "warmup_sample": 256, "warmup_batch_size": 8, "precondition": "none",
    "proxy_lr": 1e-4,
}
_INTS = ("lora_r", "lora_alpha", "max_length", "seed", "proj_dim", "batch_size", "shard_size", "warmup_steps",
         "warmup_sample", "warmup_batch_size")
_FLOATS = ("warmup_lr", "proxy_lr")


@dataclass(frozen=True)
class GradientRecipe:
    """Checked feature settings (see the module docstring)."""

    values: dict[str, Any]

    @classmethod
    def of(cls, defaults: Mapping[str, Any] | None, given: Mapping[str, Any] | None) -> GradientRecipe:
        values = dict(GRADIENT_FEATURE_DEFAULTS)
        for source in (defaults or {}), (given or {}):
            for key, value in source.items():
                if key not in GRADIENT_FEATURE_DEFAULTS:
                    raise InputError(f"unknown gradient feature setting {key!r}",
                                     fix=f"use one of {', '.join(GRADIENT_FEATURE_DEFAULTS)}")
                values[key] = _typed(key, value)
        if values["precondition"] not in ("none", "adam", "less"):
            raise InputError(f"unknown preconditioning rule {values['precondition']!r}",
                             fix="use precondition=none, adam or less")
        if values["precondition"] != "none" and values["warmup_steps"] < 1:
            raise InputError(f"precondition={values['precondition']} needs Adam moments from a warm-up",
                             fix="set warmup_steps=8 (or more), or precondition=none")
        return cls(values)

    @property
    def warmup(self) -> WarmupSettings | None:
        v = self.values
        if v["warmup_steps"] < 1:
            return None
        return WarmupSettings(steps=v["warmup_steps"], lr=v["warmup_lr"], batch_size=v["warmup_batch_size"],
                              sample=v["warmup_sample"], seed=v["seed"])

    @property
    def precondition(self) -> str | None:
        return None if self.values["precondition"] == "none" else self.values["precondition"]

    def spec_kwargs(self) -> dict[str, Any]:
        v = self.values
        return {"kind": v["kind"], "params": v["params"], "lora_r": v["lora_r"], "lora_alpha": v["lora_alpha"],
                "max_length": v["max_length"], "seed": v["seed"]}

    def features(self, texts: Sequence[str], *, model: str | Path | None, precondition: str | None,
                 warmup_texts: Sequence[str], cache_dir: Any, progress: bool, desc: str,
                 engine: Any = None) -> CachedFeatures:
        v = self.values
        return gradient_features(texts, model=model, **self.spec_kwargs(), proj_dim=v["proj_dim"] or None,
                                 projection=v["projection"], warmup=self.warmup, warmup_texts=warmup_texts,
                                 precondition=precondition, batch_size=v["batch_size"],
                                 shard_size=v["shard_size"], cache_dir=cache_dir, progress=progress, desc=desc,
                                 engine=engine)


def _typed(key: str, value: Any) -> Any:
    try:
        if key in _INTS:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if key in _FLOATS:
            return float(value)
    except (TypeError, ValueError):
        kind = "a whole number" if key in _INTS else "a number"
        raise InputError(f"gradient feature setting {key}={value!r} must be {kind}") from None
    return value


def selection_gradients(pool_texts: Sequence[str], target_texts: Sequence[str] | None, recipe: GradientRecipe, *,
                        model: str | Path | None, cache_dir: Any, progress: bool, engine: Any = None
                        ) -> tuple[CachedFeatures, CachedFeatures | None]:
    """Pool features (preconditioned when the recipe says so) and target features (plain), one proxy space;
    ``engine``: where missing shards are computed (:mod:`tasksift.engine`)."""
    pool = recipe.features(pool_texts, model=model, precondition=recipe.precondition, warmup_texts=pool_texts,
                           cache_dir=cache_dir, progress=progress, desc="pool gradients", engine=engine)
    target = None
    if target_texts is not None:
        target = recipe.features(target_texts, model=model, precondition=None, warmup_texts=pool_texts,
                                 cache_dir=cache_dir, progress=progress, desc="target gradients", engine=engine)
    return pool, target


def proxy_trainer(pool_texts: Sequence[str], recipe: GradientRecipe, *, model: str | Path | None, cache_dir: Any,
                  progress: bool) -> ProxyTrainer:
    """The proxy SPICE steps and re-reads: loaded, warmed up (from the warm-up cache) and wrapped with the
    projection and preconditioning the pool's cached features used."""
    v = recipe.values
    spec = proxy_spec(model, **recipe.spec_kwargs())
    proxy = spec.load()
    warmup, rule = recipe.warmup, recipe.precondition
    prec = None
    warm_key = None
    if warmup is not None:
        warm = cached_warmup(proxy, pool_texts, warmup, cache_dir=cache_dir, progress=progress)
        warm_key = {**asdict(warmup), "texts": texts_digest(warmup_sample(list(pool_texts), warmup))}
        if rule is not None:
            prec = partial(warm.precondition, rule=rule, eps=warmup.eps)
    proj = (RandomProjection(proxy.dim, v["proj_dim"], seed=v["seed"], kind=v["projection"])
            if v["proj_dim"] else None)
    settings = gradient_settings(spec.identity(), proj.settings() if proj is not None else None, warm_key, rule)
    featurizer = GradientFeaturizer(proxy, projection=proj, precondition=prec, batch_size=v["batch_size"],
                                    settings=settings)
    return ProxyTrainer(featurizer, pool_texts, lr=v["proxy_lr"])
