"""MiniLM + a linear head on a tiny hand-written sentiment task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tasksift.eval.tasks import load_task
from tasksift.train import ClassifierSettings, build_classifier, finetune_classifier, predict_logits, resolve_encoder
from tests.train.helpers import classification_task


def test_classifier_trains_a_few_steps(tmp_path: Path) -> None:
    task = load_task(classification_task(tmp_path))
    train = task.training_data(np.arange(len(task.pool)))
    test = task.test_data()
    _, path = resolve_encoder(None)
    model, tok = build_classifier(path, 2, seed=0)
    head_before = model.head.weight.detach().clone()
    encoder_before = next(model.encoder.parameters()).detach().clone()
    settings = ClassifierSettings(max_steps=4, batch_size=8)
    logits_before = predict_logits(model, tok, train.texts, settings, progress=False)
    stats = finetune_classifier(model, tok, train.texts, train.labels, settings, seed=0, progress=False)
    logits_after = predict_logits(model, tok, train.texts, settings, progress=False)

    def train_loss(logits: np.ndarray) -> float:
        return float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(train.labels)))

    assert stats.steps == 4 and stats.examples_seen == 32
    assert train_loss(logits_after) < train_loss(logits_before)
    assert not torch.equal(model.head.weight, head_before)
    assert not torch.equal(next(model.encoder.parameters()), encoder_before)
    test_logits = predict_logits(model, tok, test.texts, settings, progress=False)
    assert test_logits.shape == (len(test.texts), 2)
    accuracy = float(np.mean(test_logits.argmax(1) == test.labels))
    assert 0.0 <= accuracy <= 1.0


def test_frozen_encoder_trains_only_the_head(tmp_path: Path) -> None:
    task = load_task(classification_task(tmp_path))
    train = task.training_data(np.arange(len(task.pool)))
    _, path = resolve_encoder(None)
    model, tok = build_classifier(path, 2, seed=1)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    finetune_classifier(model, tok, train.texts, train.labels,
                        ClassifierSettings(max_steps=2, batch_size=8, freeze_encoder=True), seed=1, progress=False)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key])
