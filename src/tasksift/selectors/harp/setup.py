"""Build a HARP selector's probe from the records (what :func:`tasksift.select` does before ``fit``).

The selector never reads files or loads models; this module does, from the selector's parameters:

- ``probe="lm"``: the causal LM (``probe_model``, default SmolLM2-135M-Instruct) loaded once, the pool's
  (prompt, answer) view (``prompt_template``, ``answer_field``), the target as the proxy set with options
  (``options_field`` when the target has it, else built, see :mod:`tasksift.selectors.harp.lm_probe`);
- ``probe="embedding-classifier"``: the surrogate over the embeddings the selector receives, with the pool's
  and the target's ``answer_field`` values as labels.

The target's ``domain_field`` (when its records have it) splits the proxy set into domains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasksift.selectors.harp.lm_probe import LMProbe, proxy_options
from tasksift.selectors.harp.probes import EmbeddingClassifierProbe, ProbeRunner
from tasksift.train import LMSettings, load_causal_lm, resolve_lm, setup_torch
from tasksift.train.resolve import model_fingerprint
from tasksift.util.errors import InputError

PROBES = ("lm", "embedding-classifier")


def _view(records: Any, **view: Any) -> list[str]:
    """The texts of ``records`` under another text view (same rows, whatever the records came from)."""
    return records.with_text(**view).texts


def build_probe(selector: Any, pool_records: Any, target_records: Any, pool_vectors: np.ndarray,
                target_vectors: np.ndarray, *, cache_dir: str | Path | None = None,
                progress: bool = False, device: Any = None) -> ProbeRunner:
    """The :class:`ProbeRunner` that ``selector`` (a HARP selector) trains its probes with."""
    name = selector.name
    if pool_records is None or target_records is None:
        raise InputError(f"{name} trains probes on the pool's records and scores them on the target's",
                         fix="pass --pool and --target records (vectors alone are not enough)")
    if selector.probe not in PROBES:
        raise InputError(f"{name}: unknown probe {selector.probe!r}", fix=f"use probe={' or probe='.join(PROBES)}")
    target_rows = target_records.take(np.arange(len(target_records)))
    domains = [r.get(selector.domain_field) for r in target_rows] if selector.domain_field else None
    seed = selector.probe_seed if selector.probe_seed is not None else selector.seed
    answers_view = {"text_field": selector.answer_field}
    pool_answers = _view(pool_records, **answers_view)
    target_answers = _view(target_records, **answers_view)
    if selector.probe == "embedding-classifier":
        probe: Any = EmbeddingClassifierProbe(pool_vectors, pool_answers, target_vectors, target_answers, domains,
                                              steps=selector.probe_steps, metric=selector.probe_metric)
        return ProbeRunner(probe, pool_records.texts, cache_dir=cache_dir, progress=progress)


    setup_torch()
    prompt_view = {"template": selector.prompt_template}
    pool_prompts = _view(pool_records, **prompt_view)
    target_prompts = _view(target_records, **prompt_view)
    given = [r.get(selector.options_field) for r in target_rows] if selector.options_field else None
    options, correct = proxy_options(target_answers, given, n_options=selector.proxy_options, seed=seed)
    _, path = resolve_lm(selector.probe_model, progress=progress)
    base, tokenizer = load_causal_lm(path)
    if device is not None:  # the probes train and score wherever the model is
        base = base.to(device)
    settings = LMSettings(max_steps=selector.probe_steps, batch_size=selector.probe_batch_size,
                          lr=selector.probe_lr, max_length=selector.probe_max_length)
    view = {"prompt_template": selector.prompt_template, "answer_field": selector.answer_field}
    probe = LMProbe(base, tokenizer, model_fingerprint(path), pool_prompts, pool_answers, target_prompts, options,
                    correct, domains, settings, metric=selector.probe_metric, seed=seed, view=view)
    return ProbeRunner(probe, pool_records.texts, cache_dir=cache_dir, progress=progress)
