"""Finished and unfinished finetuning runs, kept by content so that no training is lost or done twice.

A run is named by what decides it: the base model's fingerprint, the training settings, the seed and the
training pairs themselves (:func:`run_key`). Under ``$TASKSIFT_CACHE/training/<key>/`` (default
``~/.cache/tasksift``) it keeps ``checkpoint.pt`` while it trains (:class:`tasksift.train.common.Checkpoint`: a
killed run resumes where its last save was) and, once finished, the trained tensors (``trained.pt``, the LoRA
weights: under a megabyte for SmolLM2 at rank 8) with its statistics (``stats.json``); the checkpoint is then
removed. An evaluation that trains the same pairs the same way, for another task on the same pool (the
full-pool rows of every task of the instruction track) or after a kill, loads them instead of training.

A finished run also keeps the metrics it scored on each test set (``scores/<test key>.json``, the key made by
:func:`eval_set_key` from every test item): two selections of the same rows (two methods that agree, such as
``spice`` and ``fishersft`` when no gradient opposes) give one training and one scoring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from tasksift.train.common import Checkpoint, TrainStats
from tasksift.util.env import default_cache_root
from tasksift.util.io import atomic_path, write_json_atomic

#: sub-folder of the cache root
STORE_DIR = "training"


def run_key(model_fingerprint: str, settings: dict[str, Any], seed: int, texts: Sequence[Sequence[str]]) -> str:
    """The content key of a finetuning run: model, settings, seed and every training text, in order."""
    h = hashlib.sha256()
    h.update(json.dumps({"model": model_fingerprint, "settings": settings, "seed": int(seed)}, sort_keys=True,
                        default=str).encode())
    _hash_columns(h, texts, str.encode)
    return h.hexdigest()


def eval_set_key(*columns: Sequence[Any]) -> str:
    """The content key of a test set: every item of every column (prompts, options, answers), in order."""
    h = hashlib.sha256()
    _hash_columns(h, columns, lambda item: json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _hash_columns(h: Any, columns: Sequence[Sequence[Any]], encode: Callable[[Any], bytes]) -> None:
    """Feed ``columns`` into the hash ``h``: a marker per column, then each item length-prefixed, in order."""
    for column in columns:
        h.update(b"\x00column")
        for item in column:
            data = encode(item)
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)


class RunStore:
    """One run's folder in the store (see the module docstring)."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.key = key
        self.dir = (root if root is not None else default_cache_root()) / STORE_DIR / key

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.dir / "checkpoint.pt", key=self.key)

    def finished(self) -> bool:
        return (self.dir / "trained.pt").is_file() and (self.dir / "stats.json").is_file()

    def save(self, model: Any, stats: TrainStats) -> None:
        """Keep the trainable tensors of ``model`` (by parameter name) and ``stats``, then drop the checkpoint."""
        self.dir.mkdir(parents=True, exist_ok=True)
        trained = {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}
        with atomic_path(self.dir / "trained.pt") as tmp:
            torch.save(trained, tmp)
        record = asdict(stats)
        write_json_atomic(self.dir / "stats.json", record)
        self.checkpoint().remove()

    def scores(self, test: str) -> dict[str, float] | None:
        """The metrics this finished run scored on the test set keyed ``test``, or None when not scored yet."""
        path = self.dir / "scores" / f"{test}.json"
        if not self.finished() or not path.is_file():
            return None
        try:
            return {str(k): float(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
        except (OSError, ValueError, AttributeError):
            return None  # a damaged record is scored again

    def save_scores(self, test: str, metrics: dict[str, float]) -> None:
        """Keep ``metrics`` of this finished run on the test set keyed ``test`` (atomically)."""
        if self.finished():
            (self.dir / "scores").mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.dir / "scores" / f"{test}.json", metrics)

    def load(self, model: Any) -> TrainStats:
        """Put the kept tensors into ``model`` (the same architecture, freshly wrapped) and return the stats."""
        trained = torch.load(self.dir / "trained.pt", map_location="cpu", weights_only=True)
        params = dict(model.named_parameters())
        mismatch = set(trained) ^ {name for name, p in params.items() if p.requires_grad}
        if mismatch:
            raise ValueError(f"the stored run {self.key[:12]} does not fit this model: {sorted(mismatch)[:3]}")
        with torch.no_grad():
            for name, value in trained.items():
                params[name].copy_(value)
        record = json.loads((self.dir / "stats.json").read_text(encoding="utf-8"))
        return TrainStats(**record)
