"""Finetuning loops shared by the evaluation harness and the train-based selectors.

- :mod:`~tasksift.train.lm`: SmolLM2-135M-Instruct (or any causal LM) with LoRA; option log-likelihood scoring;
- :mod:`~tasksift.train.classifier`: MiniLM + a linear head;
- :mod:`~tasksift.train.retriever`: MiniLM bi-encoder, InfoNCE with in-batch and mined hard negatives, a
  pluggable sampler (OPERA's dynamic pruning, InfoBatch), :class:`PairTrainer` for a task's pairs;
- :mod:`~tasksift.train.models`: finding the models offline (SmolLM2 converted once from its GGUF and cached);
- :mod:`~tasksift.train.common`: seeds, threads, weighted examples, samplers and the one step loop.

Everything runs in float32 on the CPU cores the process may use.
"""

from tasksift.train.classifier import (
    ClassifierSettings,
    EncoderClassifier,
    build_classifier,
    finetune_classifier,
    predict_logits,
)
from tasksift.train.common import (
    Sampler,
    ShuffledSampler,
    TrainStats,
    expand_counts,
    run_steps,
    seed_everything,
    setup_torch,
)
from tasksift.train.lm import LMSettings, answer_logprobs, finetune_lm, score_options
from tasksift.train.models import (
    Encoder,
    load_causal_lm,
    load_encoder,
    resolve_encoder,
    resolve_lm,
    smollm2_path,
)
from tasksift.train.retriever import (
    PairTrainer,
    RetrieverSettings,
    encode_texts,
    false_negative_mask,
    finetune_retriever,
    info_nce,
    info_nce_terms,
    mine_hard_negatives,
    positive_mask,
    retrieve,
)

__all__ = [
    "ClassifierSettings",
    "Encoder",
    "EncoderClassifier",
    "LMSettings",
    "PairTrainer",
    "RetrieverSettings",
    "Sampler",
    "ShuffledSampler",
    "TrainStats",
    "answer_logprobs",
    "build_classifier",
    "encode_texts",
    "expand_counts",
    "false_negative_mask",
    "finetune_classifier",
    "finetune_lm",
    "finetune_retriever",
    "info_nce",
    "info_nce_terms",
    "load_causal_lm",
    "load_encoder",
    "mine_hard_negatives",
    "positive_mask",
    "predict_logits",
    "resolve_encoder",
    "resolve_lm",
    "retrieve",
    "run_steps",
    "score_options",
    "seed_everything",
    "setup_torch",
    "smollm2_path",
]
