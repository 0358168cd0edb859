"""A MiniLM encoder with a linear classification head, finetuned with cross-entropy.

The encoder is the sentence encoder of :class:`tasksift.train.models.Encoder` (mean pooling, as the
sentence-transformers model does), the head a ``Linear(hidden, n_labels)`` initialised from the seed. The
encoder and the head train together by default, the head at its own, larger learning rate (it starts from
random); ``freeze_encoder=True`` trains the head alone on fixed embeddings, the cheap probe HARP can use.
Training and prediction run where the model is (:func:`build_classifier` puts it on ``device``): float32 on the
CPU, bfloat16 autocast on a GPU that supports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasksift.train import common
from tasksift.train.models import Encoder, load_encoder
from tasksift.util.device import autocast
from tasksift.util.progress import progress_bar


@dataclass
class ClassifierSettings(common.TrainSettings):
    """How every selection of a comparison is trained (fp32, seeded)."""

    batch_size: int = 16
    lr: float = 5e-5
    #: the new head learns faster than the pretrained encoder
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    max_length: int = 128
    freeze_encoder: bool = False
    eval_batch_size: int = 64


class EncoderClassifier(torch.nn.Module):
    """``Linear(mean-pooled encoder output)`` -> one logit per label."""

    def __init__(self, encoder: Encoder, n_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.dim, n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids, attention_mask))


def build_classifier(encoder_path: Path, n_labels: int, *, seed: int = 0,
                     device: torch.device | None = None) -> tuple[EncoderClassifier, Any]:
    """A fresh classifier over the encoder at ``encoder_path`` (head initialised from ``seed``) on ``device``
    (``None``: the CPU), and its tokenizer."""
    encoder, tokenizer = load_encoder(encoder_path)
    common.seed_everything(seed)
    model = EncoderClassifier(encoder, n_labels)
    return (model if device is None else model.to(device)), tokenizer


def _logits(model: EncoderClassifier, tokenizer: Any, texts: Sequence[str], max_length: int) -> torch.Tensor:
    where = common.module_device(model)
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with autocast(where):
        return model(batch["input_ids"].to(where), batch["attention_mask"].to(where))


def finetune_classifier(model: EncoderClassifier, tokenizer: Any, texts: Sequence[str],
                        labels: Sequence[int] | np.ndarray, settings: ClassifierSettings, *, seed: int = 0,
                        progress: bool = True, desc: str = "finetune") -> common.TrainStats:
    """Train ``model`` in place on the labelled texts (each once per epoch; repeat texts to weight them)."""
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=common.module_device(model))
    if len(texts) != len(y):
        raise ValueError(f"{len(texts)} texts but {len(y)} labels")
    common.seed_everything(seed)
    for p in model.encoder.parameters():
        p.requires_grad_(not settings.freeze_encoder)
    optimizer = common.make_optimizer([{"params": list(model.encoder.parameters()), "lr": settings.lr},
                                {"params": list(model.head.parameters()), "lr": settings.head_lr}],
                               settings.weight_decay)
    sampler = common.ShuffledSampler(len(texts), settings.batch_size, seed=seed)
    model.train()

    def loss_fn(indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        logits = _logits(model, tokenizer, [texts[i] for i in indices], settings.max_length)
        per_example = torch.nn.functional.cross_entropy(logits.float(), y[indices], reduction="none")
        return per_example.mean(), per_example.detach().cpu().numpy()

    return common.train_module(model, settings, optimizer, sampler, loss_fn, progress=progress, desc=desc)


@torch.inference_mode()
def predict_logits(model: EncoderClassifier, tokenizer: Any, texts: Sequence[str], settings: ClassifierSettings, *,
                   progress: bool = True, desc: str = "classify") -> np.ndarray:
    """Logits, one row per text."""
    model.eval()
    out = []
    with progress_bar(progress, desc, len(texts)) as advance:
        for sl in common.batch_slices(len(texts), settings.eval_batch_size):
            out.append(_logits(model, tokenizer, texts[sl], settings.max_length).float().cpu().numpy())
            advance(sl.stop - sl.start)
    return np.concatenate(out) if out else np.zeros((0, model.head.out_features), dtype=np.float32)
