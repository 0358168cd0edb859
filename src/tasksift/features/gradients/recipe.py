"""Gradient features as ``tasksift.select`` computes them for a gradient selector (LESS, SPICE).

One set of feature settings (``--feature key=value`` on the command line, ``features={...}`` in Python, on top
of the selector's ``feature_defaults``) names the proxy, its LoRA adapters, the projection and LESS's warm-up;
:data:`GRADIENT_FEATURE_PARAMETERS` declares what each accepts:

- ``kind``, ``params``, ``lora_r``, ``lora_alpha``, ``max_length``, ``seed`` (LoRA init and
  projection; fixed across selection seeds, as in LESS, so three selection seeds share one feature computation),
  ``proj_dim`` (0: raw gradients), ``projection``, ``batch_size``, ``shard_size``;
- ``warmup_steps`` (0: none), ``warmup_lr``, ``warmup_sample``, ``warmup_batch_size``: the AdamW warm-up on a
  seeded sample of the pool, run once and cached;
- ``precondition`` (``none``, ``adam`` or ``less``): applied to the **pool** rows only; target rows are plain
  gradients of the same warmed-up proxy (LESS: "Adam-preconditioned for the pool, plain for the targets");
- ``proxy_lr``: the learning rate of SPICE's proxy trainer.

:func:`proxy_trainer` builds what SPICE's interleaved mode calls: the same chain (:class:`GradientFactory`: proxy,
warm-up, preconditioning, projection), so refreshed rows live in the space the cached features were computed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasksift.features.cache import CachedFeatures
from tasksift.features.gradients.featurizer import (
    DEFAULT_GRADIENT_BATCH_SIZE,
    DEFAULT_GRADIENT_SHARD_SIZE,
    FEATURE_PARAMETERS,
    GradientFactory,
    gradient_features,
)
from tasksift.features.gradients.pairs import join_pairs
from tasksift.features.gradients.projection import DEFAULT_PROJ_DIM
from tasksift.features.gradients.proxy import DEFAULT_MAX_LENGTH, PROXY_PARAMETERS, proxy_kind, proxy_spec
from tasksift.features.gradients.trainer import ProxyTrainer
from tasksift.features.gradients.warmup import PRECONDITION_RULES, WarmupSettings
from tasksift.records.pairs import pair_views, response_split
from tasksift.records.recordset import RecordSet
from tasksift.util.env import default_cache_root
from tasksift.util.errors import InputError
from tasksift.util.params import Declarations, Interval, Options, convert_params

#: the proxy of the gradient selectors when no model is named: the causal LM the evaluation finetunes
#: (``"minilm"`` names the cheap sentence-encoder proxy, which is not the papers' setting)
DEFAULT_GRADIENT_MODEL = "smollm2"

#: every feature setting a gradient selector accepts, with its default
GRADIENT_FEATURE_DEFAULTS: dict[str, Any] = {
    "kind": "auto", "params": "lora", "lora_r": 8, "lora_alpha": 16,
    "max_length": DEFAULT_MAX_LENGTH, "seed": 0, "proj_dim": DEFAULT_PROJ_DIM, "projection": "rademacher",
    "batch_size": DEFAULT_GRADIENT_BATCH_SIZE, "shard_size": DEFAULT_GRADIENT_SHARD_SIZE,
    "warmup_steps": 0, "warmup_lr": 3e-4, "warmup_sample": 256, "warmup_batch_size": 8, "precondition": "none",
    "proxy_lr": 1e-4,
}
_POSITIVE = [Interval(float, 0, None, "neither")]
#: what each feature setting accepts (the names of the layers to take gradients of are no feature setting: the
#: default LoRA targets serve the methods, and ``tasksift gradients --target-module`` names others)
GRADIENT_FEATURE_PARAMETERS: Declarations = {
    **{k: v for k, v in PROXY_PARAMETERS.items() if k != "target_modules"}, **FEATURE_PARAMETERS,
    "warmup_steps": [Interval(int, 0)], "warmup_lr": _POSITIVE, "warmup_sample": [Interval(int, 1), None],
    "warmup_batch_size": [Interval(int, 1)], "precondition": [Options("none", *PRECONDITION_RULES)],
    "proxy_lr": _POSITIVE,
}


@dataclass(frozen=True)
class GradientRecipe:
    """Checked feature settings (see the module docstring)."""

    values: dict[str, Any]

    @classmethod
    def of(cls, defaults: Mapping[str, Any] | None, given: Mapping[str, Any] | None, *,
           declarations: Declarations = GRADIENT_FEATURE_PARAMETERS) -> GradientRecipe:
        """The settings: ``given`` over ``defaults`` over :data:`GRADIENT_FEATURE_DEFAULTS`, each checked and
        typed by ``declarations`` (text as the command line gives it, or Python values)."""
        values = dict(GRADIENT_FEATURE_DEFAULTS)
        for source in (defaults or {}), (given or {}):
            values.update(convert_params("gradient features", declarations, source))
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
        """The proxy's settings, as :func:`tasksift.features.gradients.proxy_spec` takes them."""
        v = self.values
        return {"kind": v["kind"], "params": v["params"], "lora_r": v["lora_r"], "lora_alpha": v["lora_alpha"],
                "max_length": v["max_length"], "seed": v["seed"]}

    def chain_kwargs(self) -> dict[str, Any]:
        """The warm-up, projection and batch settings of the chain, as :func:`gradient_features` and
        :meth:`GradientFactory.plan` take them."""
        v = self.values
        return {"warmup": self.warmup, "proj_dim": v["proj_dim"] or None, "seed": v["seed"],
                "projection": v["projection"], "batch_size": v["batch_size"]}

    def features(self, texts: Sequence[str], *, model: str | Path | None, precondition: str | None,
                 warmup_texts: Sequence[str], cache_dir: Any, progress: bool, desc: str,
                 engine: Any = None, target_modules: Sequence[str] | None = None, device: Any = None
                 ) -> CachedFeatures:
        """:func:`gradient_features` of ``texts`` with these settings (``precondition``: the rule, or ``None``;
        ``target_modules``: the layers to take gradients of, ``None``: the proxy's default LoRA targets;
        ``device``: where the proxy runs, ``None``: the CPU)."""
        return gradient_features(texts, model=model, **{**self.spec_kwargs(), **self.chain_kwargs()},
                                 target_modules=target_modules, warmup_texts=warmup_texts, precondition=precondition,
                                 shard_size=self.values["shard_size"], cache_dir=cache_dir, progress=progress,
                                 desc=desc, engine=engine, device=device)


def gradient_model(model: str | Path | None) -> str | Path:
    """The proxy a gradient selector takes its gradients of: ``model``, or :data:`DEFAULT_GRADIENT_MODEL`."""
    return DEFAULT_GRADIENT_MODEL if model is None else model


def gradient_texts(pool: RecordSet, target: RecordSet | None, model: str | Path | None, kind: str = "auto"
                   ) -> tuple[Sequence[str], Sequence[str] | None, str]:
    """The texts the proxy ``model`` (``None``: :data:`DEFAULT_GRADIENT_MODEL`) takes gradients of, pool and
    target (``None``: none), and the loss: ``"response"`` or ``"text"``.

    A causal-LM proxy reads records with a (prompt, response) split (:func:`tasksift.records.pairs.pair_views`)
    as joined pairs (:mod:`.pairs`), the prompt masked: loss ``"response"``, when the pool and the target both
    have the split (one proxy space for both). Otherwise each text view: loss ``"text"`` (a causal LM's loss
    over every token; the encoder's bag-of-words loss).
    """
    split = response_split(pool.text_rule) is not None and (target is None or
                                                             response_split(target.text_rule) is not None)
    if split and proxy_kind(gradient_model(model), kind) == "causal-lm":
        pool_pairs = pair_views(pool)
        target_pairs = None if target is None else pair_views(target)
        if pool_pairs is not None and (target is None or target_pairs is not None):
            joined = join_pairs(*pool_pairs, what=str(pool.path or "pool records"))
            if target_pairs is None:
                return joined, None, "response"
            return joined, join_pairs(*target_pairs, what=str(target.path or "target records")), "response"
    # the text views as they are: a pool read from its file (a TextColumn) is read shard by shard by the cache
    return pool.texts, None if target is None else target.texts, "text"


def selection_gradients(pool_texts: Sequence[str], target_texts: Sequence[str] | None, recipe: GradientRecipe, *,
                        model: str | Path | None, cache_dir: Any, progress: bool, engine: Any = None,
                        device: Any = None) -> tuple[CachedFeatures, CachedFeatures | None]:
    """Pool features (preconditioned when the recipe says so) and target features (plain), one proxy space;
    ``model``: the proxy (``None``: :data:`DEFAULT_GRADIENT_MODEL`); ``engine``: where missing shards are computed
    (:mod:`tasksift.engine`); ``device``: where the proxy runs."""
    common = {"model": gradient_model(model), "warmup_texts": pool_texts, "cache_dir": cache_dir,
              "progress": progress, "engine": engine, "device": device}
    pool = recipe.features(pool_texts, precondition=recipe.precondition, desc="pool gradients", **common)
    target = None
    if target_texts is not None:
        target = recipe.features(target_texts, precondition=None, desc="target gradients", **common)
    return pool, target


def proxy_trainer(pool_texts: Sequence[str], recipe: GradientRecipe, *, model: str | Path | None, cache_dir: Any,
                  progress: bool, device: Any = None) -> ProxyTrainer:
    """The proxy SPICE steps and re-reads: loaded (on ``device``, ``None``: the CPU), warmed up (from the
    warm-up cache) and wrapped with the projection and preconditioning the pool's cached features used."""
    spec = proxy_spec(gradient_model(model), **recipe.spec_kwargs())
    factory = GradientFactory.plan(spec.identity(), spec, warmup_texts=pool_texts, rule=recipe.precondition,
                                   cache_dir=cache_dir, **recipe.chain_kwargs())
    return ProxyTrainer(factory.build(progress=progress, device=device), pool_texts, lr=recipe.values["proxy_lr"],
                        cache_dir=cache_dir if cache_dir is not None else default_cache_root())
