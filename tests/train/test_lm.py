"""LoRA finetuning and option log-likelihood scoring, against hand computations."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from tasksift.eval.metrics import option_accuracy
from tasksift.train.lm import (
    LMSettings,
    answer_logprobs,
    cache_argument,
    encode_pairs,
    finetune_lm,
    fit_length,
    prompt_text,
    resolve_format,
    returned_cache,
    score_options,
)
from tests.train.helpers import COLOURS, FRUITS

PROMPT = "What colour is the fruit?\n{fruit}\n"


def test_answer_logprobs_on_fixed_logits() -> None:
    logits = torch.tensor([[[0.0, 0.0, 0.0],
                            [1.0, 2.0, 3.0],
                            [0.5, -1.0, 0.0],
                            [9.0, 9.0, 9.0]]])
    labels = torch.tensor([[-100, -100, 2, 0]])  # position 1 predicts token 2, position 2 predicts token 0

    def log_softmax(row: list[float], i: int) -> float:
        return row[i] - math.log(sum(math.exp(v) for v in row))

    expected = log_softmax([1.0, 2.0, 3.0], 2) + log_softmax([0.5, -1.0, 0.0], 0)
    sums, counts = answer_logprobs(logits, labels)
    assert sums.tolist() == pytest.approx([expected])
    assert counts.tolist() == [2]


def test_fit_length_keeps_the_answer_and_the_end_of_the_prompt() -> None:
    assert fit_length([1, 2, 3], [7, 8], 10) == ([1, 2, 3], [7, 8])
    assert fit_length([1, 2, 3, 4, 5], [7, 8], 4) == ([4, 5], [7, 8])
    assert fit_length([1, 2], [7, 8, 9, 10, 11, 12], 4) == ([1, 2], [7, 8])  # the answer keeps at least half
    assert fit_length([1], [7, 8, 9, 10, 11, 12], 4) == ([1], [7, 8, 9])


def test_plain_format_without_a_chat_template(tiny_lm) -> None:
    _, tok = tiny_lm
    assert resolve_format(tok, "auto") == "plain"
    enc = encode_pairs(tok, [PROMPT.format(fruit="apple")], ["red"], prompt_format="auto", max_length=64)
    ids = tok("What colour is the fruit? apple", add_special_tokens=False)["input_ids"]
    assert enc.ids[0] == ids + tok("red", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc.n_prompt[0] == len(ids)


def test_chat_format_puts_the_prompt_in_the_user_turn(tiny_lm) -> None:
    _, tok = tiny_lm
    tok = type(tok).from_pretrained(tok.name_or_path)
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </turn>{% endfor %}"
                         "{% if add_generation_prompt %} <assistant> {% endif %}")
    assert resolve_format(tok, "auto") == "chat"
    assert prompt_text(tok, "What colour?\n", "chat") == "<user> What colour? </turn> <assistant> "


def hand_option_logprob(model, tok, prompt: str, option: str) -> float:
    """Sum of log p(answer token | everything before it), one position at a time."""
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tok(option, add_special_tokens=False)["input_ids"]  # scoring leaves out the end token
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    total = 0.0
    for j, token in enumerate(answer_ids):
        position = len(prompt_ids) + j - 1
        total += float(torch.log_softmax(logits[position], dim=-1)[token])
    return total


def test_option_scores_equal_a_hand_computation(tiny_lm) -> None:
    model, tok = tiny_lm
    fruits = list(FRUITS)[:5]
    # prompts and options of different lengths, so both the prompt batch and the option batch are padded
    prompts = [PROMPT.format(fruit=f) for f in fruits[:4]] + ["Name the animal.\nIt says moo woof meow baa .\n"]
    options = [COLOURS, COLOURS[:2], ["red green", "blue", "yellow yellow red"], ["green", "red"],
               ["cow", "dog cat", "sheep cow dog cat"]]
    sums, counts = score_options(model, tok, prompts, options, LMSettings(eval_batch_size=3), progress=False)
    hand = [np.array([hand_option_logprob(model, tok, p, o) for o in opts])
            for p, opts in zip(prompts, options, strict=True)]
    for got, want, n, opts in zip(sums, hand, counts, options, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
        assert n.tolist() == [len(o.split()) for o in opts]  # one token per word
    correct = [opts.index(FRUITS[f]) if FRUITS[f] in opts else 0 for f, opts in zip(fruits, options, strict=True)]
    correct[-1] = 0  # cow
    hand_right = sum(int(np.argmax(h)) == c for h, c in zip(hand, correct, strict=True))
    assert option_accuracy(sums, correct) == pytest.approx(hand_right / len(prompts))


def test_scoring_passes_the_cache_under_the_name_the_model_takes(tiny_lm) -> None:
    model, tok = tiny_lm
    with warnings.catch_warnings():
        # a cache passed under a deprecated argument name warns; here that fails the test
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        sums, _ = score_options(model, tok, [PROMPT.format(fruit="banana")], [COLOURS], LMSettings(),
                                progress=False)
    assert len(sums[0]) == len(COLOURS)


class _OldForward:
    """A model whose forward takes its cache as ``past_key_values`` (transformers before the rename)."""

    def forward(self, input_ids=None, past_key_values=None, use_cache=None):  # noqa: ANN001, ANN201
        return None


class _NewForward:
    def forward(self, input_ids=None, cache=None, use_cache=None):  # noqa: ANN001, ANN201
        return None


class _Wrapped:
    """A peft-like wrapper whose own forward takes ``**kwargs``."""

    def __init__(self, base: object) -> None:
        self.base = base

    def get_base_model(self) -> object:
        return self.base

    def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return None


def test_cache_argument_follows_the_base_models_forward() -> None:
    assert cache_argument(_OldForward()) == "past_key_values"
    assert cache_argument(_NewForward()) == "cache"
    assert cache_argument(_Wrapped(_OldForward())) == "past_key_values"
    assert cache_argument(_Wrapped(_NewForward())) == "cache"
    assert returned_cache({"logits": 1, "cache": "new"}) == "new"
    assert returned_cache({"logits": 1, "past_key_values": "old"}) == "old"


def test_lora_steps_lower_the_answer_loss_and_leave_the_base_model(tiny_lm) -> None:
    model, tok = tiny_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prompts = [PROMPT.format(fruit=f) for f in FRUITS]
    answers = list(FRUITS.values())
    options = [COLOURS] * len(prompts)
    correct = [COLOURS.index(a) for a in answers]
    settings = LMSettings(max_steps=30, batch_size=4, lr=3e-2)
    base_sums, base_counts = score_options(model, tok, prompts, options, settings, progress=False)
    tuned, stats = finetune_lm(model, tok, prompts, answers, settings, seed=0, progress=False)
    sums, counts = score_options(tuned, tok, prompts, options, settings, progress=False)

    def loss(s: list[np.ndarray], c: list[np.ndarray]) -> float:
        return float(np.mean([-si[k] / ci[k] for si, ci, k in zip(s, c, correct, strict=True)]))

    assert stats.steps == 30 and stats.examples_seen == 30 * 4
    assert loss(sums, counts) < loss(base_sums, base_counts) - 0.2
    assert option_accuracy(sums, correct) > option_accuracy(base_sums, correct)
    assert stats.last_loss < stats.first_loss
    trainable = {n for n, p in tuned.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any("q_proj" in n for n in trainable) and any("v_proj" in n for n in trainable)
    for key, value in model.state_dict().items():  # the base model is untouched
        assert torch.equal(value, before[key])


def test_finetuning_is_seeded(tiny_lm) -> None:
    model, tok = tiny_lm
    prompts = [PROMPT.format(fruit=f) for f in FRUITS]
    answers = list(FRUITS.values())
    settings = LMSettings(max_steps=3, batch_size=3, lr=1e-2)
    runs = [finetune_lm(model, tok, prompts, answers, settings, seed=s, progress=False)[1].losses for s in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_stored_run_is_loaded_instead_of_trained_and_a_killed_one_resumes(tiny_lm, tmp_path, monkeypatch) -> None:
    from tasksift.train import common
    from tasksift.train.store import RunStore, run_key

    model, tok = tiny_lm
    prompts = [PROMPT.format(fruit=f) for f in FRUITS]
    answers = list(FRUITS.values())
    settings = LMSettings(max_steps=6, batch_size=3, lr=1e-2)
    plain, plain_stats = finetune_lm(model, tok, prompts, answers, settings, seed=0, progress=False)
    key = run_key("tiny", settings.to_dict(), 0, [prompts, answers])
    assert key != run_key("tiny", settings.to_dict(), 1, [prompts, answers])
    assert key != run_key("tiny", settings.to_dict(), 0, [prompts, answers[::-1]])
    store = RunStore(key, root=tmp_path)

    real = common.run_steps

    def killed_after_four(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        kwargs["checkpoint"] = common.Checkpoint(kwargs["checkpoint"].path, kwargs["checkpoint"].key, every_steps=1)

        def on_step(stats: common.TrainStats) -> None:
            if stats.steps == 4:
                raise KeyboardInterrupt

        return real(*args, **kwargs, on_step=on_step)

    monkeypatch.setattr("tasksift.train.lm.run_steps", killed_after_four)
    with pytest.raises(KeyboardInterrupt):
        finetune_lm(model, tok, prompts, answers, settings, seed=0, progress=False, store=store)
    assert not store.finished() and store.checkpoint().load()["steps"] == 4
    monkeypatch.setattr("tasksift.train.lm.run_steps", real)
    resumed, stats = finetune_lm(model, tok, prompts, answers, settings, seed=0, progress=False, store=store)
    assert store.finished() and not store.checkpoint().path.exists()
    assert stats.losses == plain_stats.losses

    def trained(m) -> dict[str, torch.Tensor]:  # noqa: ANN001
        return {n: p for n, p in m.named_parameters() if p.requires_grad}

    for name, value in trained(plain).items():
        assert torch.equal(value, trained(resumed)[name])
    monkeypatch.setattr("tasksift.train.lm.run_steps", None)  # a stored run trains nothing
    loaded, loaded_stats = finetune_lm(model, tok, prompts, answers, settings, seed=0, progress=False, store=store)
    assert loaded_stats.steps == 6 and loaded_stats.losses == plain_stats.losses and not loaded.training
    for name, value in trained(plain).items():
        assert torch.equal(value, trained(loaded)[name])
