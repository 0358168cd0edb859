"""The real HARP probe: SmolLM2-135M-Instruct (or any causal LM) with LoRA, trained a few steps on one leaf and
scored on the proxy set the way the evaluation harness scores its test set (option log-likelihood).

The proxy set is the target examples (prompt, right answer, options). Target examples usually carry no options
(only test items do); our choice then: the options of an item are its answer and up to ``n_options - 1`` other
distinct answers of the target set, drawn with a fixed seed (all of them when the target has that few distinct
answers, as for label tasks). Training uses :func:`tasksift.train.finetune_lm` with ``max_steps`` steps (a probe
is short by design), scoring :func:`tasksift.train.score_options`; both take the same :class:`LMSettings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from tasksift.records import domain_index
from tasksift.selectors.harp.probes import array_digest, option_item_scores
from tasksift.train import finetune_lm, score_options
from tasksift.util.errors import InputError


def proxy_options(answers: Sequence[str], given: Sequence[Sequence[str] | None] | None = None, *,
                  n_options: int = 4, seed: int = 0) -> tuple[list[list[str]], list[int]]:
    """Options and the right option's index for every proxy item (see the module docstring)."""
    if n_options < 2:
        raise InputError(f"harp: proxy_options {n_options} must be at least 2")
    distinct = sorted(set(answers))
    rng = np.random.default_rng(seed)
    options, correct = [], []
    for i, answer in enumerate(answers):
        own = given[i] if given is not None else None
        if isinstance(own, list | tuple) and len(own) >= 2 and answer in own:
            opts = [str(o) for o in own]
        else:
            others = [a for a in distinct if a != answer]
            if len(others) + 1 <= n_options:
                opts = sorted([answer, *others])
            else:
                picked = rng.choice(len(others), size=n_options - 1, replace=False)
                opts = [answer, *(others[j] for j in sorted(picked))]
                opts = [opts[j] for j in rng.permutation(len(opts))]
        if len(opts) < 2:
            raise InputError("harp: the proxy set needs at least two distinct answers to score options",
                             fix="give target examples with different answers, or an options field")
        options.append(opts)
        correct.append(opts.index(answer))
    return options, correct


class LMProbe:
    """Finetune ``base_model`` with LoRA on a leaf's (prompt, answer) pairs, score the proxy items.

    ``settings`` is an :class:`tasksift.train.LMSettings` (its ``max_steps`` is the probe's length);
    ``fingerprint`` identifies the model's files (it goes into the cache key with everything else).
    """

    def __init__(self, base_model: Any, tokenizer: Any, fingerprint: str, pool_prompts: Sequence[str],
                 pool_answers: Sequence[str], proxy_prompts: Sequence[str], proxy_opts: Sequence[Sequence[str]],
                 proxy_correct: Sequence[int], proxy_domains: Sequence[Any] | None, settings: Any, *,
                 metric: str = "prob", seed: int = 0, view: dict[str, Any] | None = None,
                 progress: bool = False) -> None:
        self.model, self.tokenizer, self.fingerprint = base_model, tokenizer, fingerprint
        self.pool_prompts, self.pool_answers = pool_prompts, pool_answers
        self.proxy_prompts = list(proxy_prompts)
        self.proxy_opts = [list(o) for o in proxy_opts]
        self.proxy_correct = [int(c) for c in proxy_correct]
        self.domain_names, self.item_domains = domain_index(proxy_domains, len(self.proxy_prompts), who="harp",
                                                            sort=True, none_is_missing=True)
        self.settings, self.metric, self.seed = settings, metric, int(seed)
        self.view = dict(view or {})
        self.progress = progress
        option_item_scores([], [], metric)  # checks the metric name

    def describe(self) -> dict[str, Any]:
        proxy = "\x1e".join(p + "\x1f" + "\x1f".join(o) + f"\x1f{c}" for p, o, c in
                            zip(self.proxy_prompts, self.proxy_opts, self.proxy_correct, strict=True))
        return {"probe": "lm", "model": self.fingerprint, "settings": asdict(self.settings), "metric": self.metric,
                "seed": self.seed, "view": self.view, "domains": self.domain_names,
                "proxy": array_digest(np.frombuffer(proxy.encode("utf-8", "surrogatepass"), dtype=np.uint8),
                                      self.item_domains)}

    def _score(self, model: Any) -> np.ndarray:
        sums, _ = score_options(model, self.tokenizer, self.proxy_prompts, self.proxy_opts, self.settings,
                                progress=False)
        return option_item_scores(sums, self.proxy_correct, self.metric)

    def base_scores(self) -> np.ndarray:
        return self._score(self.model)

    def leaf_scores(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        model, _ = finetune_lm(self.model, self.tokenizer, [self.pool_prompts[i] for i in rows],
                               [self.pool_answers[i] for i in rows], self.settings, seed=self.seed,
                               progress=False)
        return self._score(model)
