"""Finetuning loops shared by the evaluation harness and the train-based selectors.

- :mod:`~tasksift.train.lm`: SmolLM2-135M-Instruct (or any causal LM) with LoRA; option log-likelihood scoring;
- :mod:`~tasksift.train.classifier`: MiniLM + a linear head;
- :mod:`~tasksift.train.retriever`: MiniLM bi-encoder, InfoNCE with in-batch and mined hard negatives, a
  pluggable sampler (OPERA's dynamic pruning, InfoBatch), :class:`PairTrainer` for a task's pairs;
- :mod:`~tasksift.train.samplers`: the retriever's query-level samplers (OPERA's dynamic pruning, InfoBatch),
  their schedules, and the pairs OPERA's static pruning keeps (numpy only);
- :mod:`~tasksift.train.models`: finding the models offline (SmolLM2 converted once from its GGUF and cached);
- :mod:`~tasksift.train.resolve`: finding a sentence encoder offline and fingerprinting model directories
  (no torch);
- :mod:`~tasksift.train.common`: seeds, threads, weighted examples, samplers and the one step loop.

The loops run where their model is: in float32 on the CPU cores the process may use, or on a GPU the caller
moved the model to (bfloat16 autocast where the GPU supports it; :mod:`tasksift.util.device`).

The names below load on first use, so importing a torch-free module of this package (:mod:`.samplers`,
:mod:`.resolve`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: each exported name and the module of this package that defines it
_EXPORTS = {
    "ClassifierSettings": "classifier",
    "EncoderClassifier": "classifier",
    "build_classifier": "classifier",
    "finetune_classifier": "classifier",
    "predict_logits": "classifier",
    "Sampler": "common",
    "ShuffledSampler": "common",
    "TrainStats": "common",
    "expand_counts": "common",
    "run_steps": "common",
    "seed_everything": "common",
    "setup_torch": "common",
    "LMSettings": "lm",
    "answer_logprobs": "lm",
    "finetune_lm": "lm",
    "score_options": "lm",
    "Encoder": "models",
    "load_causal_lm": "models",
    "load_encoder": "models",
    "resolve_encoder": "models",
    "resolve_lm": "models",
    "smollm2_path": "models",
    "PairTrainer": "retriever",
    "RetrieverSettings": "retriever",
    "encode_texts": "retriever",
    "false_negative_mask": "retriever",
    "finetune_retriever": "retriever",
    "info_nce": "retriever",
    "info_nce_terms": "retriever",
    "mine_hard_negatives": "retriever",
    "positive_mask": "retriever",
    "retrieve": "retriever",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
