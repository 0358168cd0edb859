"""The training loops run where their model is: on the CPU nothing changes (to the bit); on a GPU (skipped
without one) the LM, the classifier and the retriever train and score there, in bfloat16 autocast where
supported, and a training kept in the store serves either device."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from tasksift.eval.tasks import load_task
from tasksift.train import (
    ClassifierSettings,
    LMSettings,
    PairTrainer,
    RetrieverSettings,
    build_classifier,
    finetune_classifier,
    finetune_lm,
    predict_logits,
    resolve_encoder,
    score_options,
)
from tasksift.train.common import module_device, to_device
from tasksift.train.store import RunStore
from tests.train.helpers import COLOURS, FRUITS, retrieval_task

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
PROMPTS = [f"What colour is the fruit ?\n{fruit}\n" for fruit in FRUITS]
ANSWERS = list(FRUITS.values())
OPTIONS = [COLOURS] * len(PROMPTS)
LM = LMSettings(max_steps=3, batch_size=3, lr=1e-2)


def test_module_device_and_to_device() -> None:
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters
    batch = {"a": torch.ones(2)}
    assert to_device(batch, torch.device("cpu"))["a"] is batch["a"]


def test_a_base_model_moved_to_the_cpu_trains_and_scores_as_before(tiny_lm) -> None:
    model, tok = tiny_lm
    tuned, stats = finetune_lm(model, tok, PROMPTS, ANSWERS, LM, seed=1, progress=False)
    moved = copy.deepcopy(model).to(torch.device("cpu"))
    again, stats_again = finetune_lm(moved, tok, PROMPTS, ANSWERS, LM, seed=1, progress=False)
    assert stats_again.losses == stats.losses
    for (name, p), q in zip(tuned.named_parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q), name
    sums, counts = score_options(tuned, tok, PROMPTS, OPTIONS, LM, progress=False)
    assert all(s.dtype == np.float64 for s in sums) and all(c.dtype == np.int64 for c in counts)


def test_a_classifier_built_on_the_cpu_is_the_default() -> None:
    _, path = resolve_encoder(None)
    default, _ = build_classifier(path, 2, seed=3)
    placed, _ = build_classifier(path, 2, seed=3, device=torch.device("cpu"))
    assert torch.equal(default.head.weight, placed.head.weight) and module_device(placed).type == "cpu"


def test_a_pair_trainer_on_the_cpu_is_the_default(tmp_path: Path) -> None:
    task = load_task(retrieval_task(tmp_path))
    data = task.training_data(np.arange(len(task.pool)))
    settings = RetrieverSettings(max_steps=1, batch_size=4, hard_negatives=False)
    _, path = resolve_encoder(None)
    default = PairTrainer(path, data.queries, data.documents, settings, progress=False)
    placed = PairTrainer(path, data.queries, data.documents, settings, progress=False, device=torch.device("cpu"))
    for left, right in zip(default.base_vectors(), placed.base_vectors(), strict=True):
        np.testing.assert_array_equal(left, right)


# -- on a GPU ---------------------------------------------------------------------------------------------------
@needs_cuda
def test_gpu_lm_trains_and_scores_on_the_gpu_and_its_store_serves_the_cpu(tiny_lm, tmp_path: Path) -> None:
    model, tok = tiny_lm
    gpu = torch.device("cuda", 0)
    store = RunStore("gpu-run", root=tmp_path)
    tuned, stats = finetune_lm(copy.deepcopy(model).to(gpu), tok, PROMPTS, ANSWERS, LM, seed=0, progress=False,
                               store=store)
    assert module_device(tuned).type == "cuda" and stats.steps == 3 and np.isfinite(stats.losses).all()
    sums, _ = score_options(tuned, tok, PROMPTS, OPTIONS, LM, progress=False)
    loaded, _ = finetune_lm(model, tok, PROMPTS, ANSWERS, LM, seed=0, progress=False, store=store)
    assert module_device(loaded).type == "cpu"  # the kept tensors load onto the CPU model
    cpu_sums, _ = score_options(loaded, tok, PROMPTS, OPTIONS, LM, progress=False)
    np.testing.assert_allclose(np.concatenate(sums), np.concatenate(cpu_sums), rtol=5e-2, atol=5e-2)


@needs_cuda
def test_gpu_classifier_trains_and_predicts_on_the_gpu() -> None:
    _, path = resolve_encoder(None)
    model, tok = build_classifier(path, 2, seed=0, device=torch.device("cuda", 0))
    texts, labels = ["a wonderful film", "a dreadful film"] * 4, [1, 0] * 4
    stats = finetune_classifier(model, tok, texts, labels, ClassifierSettings(max_steps=2, batch_size=4),
                                progress=False)
    logits = predict_logits(model, tok, texts, ClassifierSettings(), progress=False)
    assert stats.steps == 2 and logits.dtype == np.float32 and logits.shape == (8, 2) and np.isfinite(logits).all()


@needs_cuda
def test_gpu_retriever_trains_on_the_gpu(tmp_path: Path) -> None:
    task = load_task(retrieval_task(tmp_path))
    data = task.training_data(np.arange(len(task.pool)))
    _, path = resolve_encoder(None)
    trainer = PairTrainer(path, data.queries, data.documents, RetrieverSettings(max_steps=2, batch_size=4),
                          progress=False, device=torch.device("cuda", 0))
    run = trainer.run(0)
    assert module_device(run.encoder).type == "cuda" and run.stats.steps == 2
