"""Per-example gradient features: the gradient of a proxy model's training loss for every record.

What LESS and SPICE read (docs/methods.md, "Gradient features"): for each text ``x``, the gradient ``g_x`` of the
proxy's loss on ``x`` with respect to its trainable linear layers (LoRA adapters, or a named set of linear
layers), optionally Adam-preconditioned and randomly projected, cached by content like embeddings.

- :mod:`.projection`: the implicit random projection (:class:`RandomProjection`);
- :mod:`.hooks`: per-example gradients of trainable linear layers from one batched pass, and the loop reference;
- :mod:`.proxy`: the proxy models, their losses and how they are made trainable (:class:`ProxySpec`);
- :mod:`.warmup`: LESS's AdamW warm-up and the preconditioning rules, cached;
- :mod:`.featurizer`: the one chain proxy -> warm-up -> preconditioner -> projection (:class:`GradientFactory`),
  the featurizer it builds and the cached computation (:func:`gradient_features`);
- :mod:`.trainer`: the proxy trainer SPICE's interleaved mode steps (:class:`ProxyTrainer`);
- :mod:`.recipe`: the feature settings of the gradient selectors (:class:`GradientRecipe`) and what
  ``tasksift.select`` builds from them (pool and target features, SPICE's proxy trainer).
"""

from tasksift.features.gradients.featurizer import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_GRADIENT_BATCH_SIZE,
    DEFAULT_GRADIENT_SHARD_SIZE,
    FEATURE_PARAMETERS,
    GradientFactory,
    GradientFeaturizer,
    gradient_features,
    gradient_settings,
)
from tasksift.features.gradients.hooks import (
    LinearSlot,
    flat_dim,
    per_example_gradients,
    per_example_gradients_loop,
    trainable_slots,
)
from tasksift.features.gradients.projection import DEFAULT_PROJ_DIM, PROJECTION_KINDS, TILE_ROWS, RandomProjection
from tasksift.features.gradients.proxy import (
    BOW_TEMPERATURE,
    DEFAULT_LORA_TARGETS,
    DEFAULT_MAX_LENGTH,
    FEATURE_VERSION,
    PARAM_MODES,
    PROXY_KINDS,
    PROXY_PARAMETERS,
    Batch,
    ProxyModel,
    ProxySpec,
    key_identity,
    load_proxy,
    proxy_spec,
    resolve_proxy,
)
from tasksift.features.gradients.recipe import (
    GRADIENT_FEATURE_DEFAULTS,
    GRADIENT_FEATURE_PARAMETERS,
    GradientRecipe,
    proxy_trainer,
    selection_gradients,
)
from tasksift.features.gradients.trainer import ProxyTrainer
from tasksift.features.gradients.warmup import (
    PRECONDITION_RULES,
    WarmupSettings,
    WarmupState,
    adam_warmup,
    cached_warmup,
    texts_digest,
    warmup_key,
    warmup_sample,
)

__all__ = [
    "BOW_TEMPERATURE",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_GRADIENT_BATCH_SIZE",
    "DEFAULT_GRADIENT_SHARD_SIZE",
    "DEFAULT_LORA_TARGETS",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_PROJ_DIM",
    "FEATURE_PARAMETERS",
    "FEATURE_VERSION",
    "GRADIENT_FEATURE_DEFAULTS",
    "GRADIENT_FEATURE_PARAMETERS",
    "PARAM_MODES",
    "PRECONDITION_RULES",
    "PROJECTION_KINDS",
    "PROXY_KINDS",
    "PROXY_PARAMETERS",
    "TILE_ROWS",
    "Batch",
    "GradientFactory",
    "GradientFeaturizer",
    "GradientRecipe",
    "LinearSlot",
    "ProxyModel",
    "ProxySpec",
    "ProxyTrainer",
    "RandomProjection",
    "WarmupSettings",
    "WarmupState",
    "adam_warmup",
    "cached_warmup",
    "flat_dim",
    "gradient_features",
    "gradient_settings",
    "key_identity",
    "load_proxy",
    "per_example_gradients",
    "per_example_gradients_loop",
    "proxy_spec",
    "proxy_trainer",
    "resolve_proxy",
    "selection_gradients",
    "texts_digest",
    "trainable_slots",
    "warmup_key",
    "warmup_sample",
]
