"""Features of texts, cached on disk by content and resumable: sentence embeddings and per-example gradients."""

from tasksift.features.cache import (
    CACHE_ENV,
    DEFAULT_SHARD_SIZE,
    CachedFeatures,
    FeatureCache,
    canonical_json,
    default_cache_root,
    settings_key,
    shard_key,
)
from tasksift.features.embed import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MODEL_NAME,
    Embedder,
    default_model_path,
    default_threads,
    embed_texts,
    model_fingerprint,
    resolve_model,
)
from tasksift.util.progress import make_progress

__all__ = [
    "CACHE_ENV",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_SHARD_SIZE",
    "CachedFeatures",
    "Embedder",
    "FeatureCache",
    "canonical_json",
    "default_cache_root",
    "default_model_path",
    "default_threads",
    "embed_texts",
    "make_progress",
    "model_fingerprint",
    "resolve_model",
    "settings_key",
    "shard_key",
]
