"""Finetune a causal LM with LoRA on (prompt, answer) pairs, and score answer options by log-likelihood.

Prompt format (the same for training and scoring):

- ``chat`` (the default when the tokenizer has a chat template, as SmolLM2-Instruct's does): the prompt is the
  user message of the model's own chat template, with its generation prompt, so the text before the answer is
  ``<|im_start|>system ...<|im_end|>\\n<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n``
  (the template's default system line included: it is what the model was tuned with);
- ``plain``: the prompt text as the task's ``prompt_template`` renders it, then the answer.

The answer's tokens are the answer text tokenised on its own. Training appends the tokenizer's end token
(``eos``; ``<|im_end|>`` for SmolLM2) so the model learns to stop, and its loss is the causal-LM loss on those
answer tokens only (prompt and padding masked with -100), averaged over the answer tokens of the batch. Scoring
sums the log-probabilities of an option's own tokens given the prompt, without the end token (as
lm-evaluation-harness does): an instruction model that would go on after a bare answer ("Paris is the capital
...") is not charged for it, so the base model is scored fairly.

A training pair longer than ``max_length`` tokens keeps its answer (cut to ``max(max_length - prompt,
max_length // 2)`` tokens from its start) and loses the beginning of its prompt. A test item is cut by the same
rule against its longest option, and all its options share that prompt.

Scoring runs each test prompt once: its key/value cache is copied to every option of the item
(:func:`score_items`), which gives the same numbers as one sequence per option at a fraction of the cost.

Training and scoring run where the model is (``finetune_lm`` trains a copy of the base model where the base model
is; move it with ``.to(device)``): in float32 on the CPU, under bfloat16 autocast on a GPU that supports it
(:func:`tasksift.util.device.autocast`; log-probabilities are taken in float32 either way).
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from tasksift.train.common import (
    ShuffledSampler,
    TrainSettings,
    TrainStats,
    batch_slices,
    length_order,
    make_optimizer,
    module_device,
    run_steps,
    seed_everything,
    to_device,
)
from tasksift.train.store import RunStore
from tasksift.util.device import autocast
from tasksift.util.errors import InputError
from tasksift.util.progress import progress_bar

PROMPT_FORMATS = ("auto", "chat", "plain")


@dataclass
class LMSettings(TrainSettings):
    """How every selection of a comparison is trained and scored (fp32, seeded).

    ``max_steps`` overrides ``epochs`` when set; ``batch_size`` is training pairs per step; ``eval_batch_size`` is
    test items per scoring forward pass (each with all its options); ``prompt_format`` is ``auto`` (``chat`` when
    the tokenizer has a chat template), ``chat`` or ``plain``.
    """

    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.0
    #: tokens per training pair (prompt and answer), longer pairs cut
    max_length: int = 256

    #: the LoRA adapter: rank, scale, dropout and the layers it wraps
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    prompt_format: str = "auto"
    eval_batch_size: int = 16

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        if self.prompt_format not in PROMPT_FORMATS:
            raise InputError(f"unknown prompt format {self.prompt_format!r}",
                             fix=f"choose one of {', '.join(PROMPT_FORMATS)}")
        if self.max_length < 4:
            raise InputError(f"max_length {self.max_length} is too short", fix="use at least 4 tokens")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out


@dataclass
class Encoded:
    """Token ids of (prompt + answer) sequences and how many leading tokens of each are prompt."""

    ids: list[list[int]]
    n_prompt: list[int]

    def __len__(self) -> int:
        return len(self.ids)


def resolve_format(tokenizer: Any, prompt_format: str) -> str:
    """``auto`` -> ``chat`` when the tokenizer has a chat template, else ``plain``."""
    if prompt_format == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    if prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise InputError("the model's tokenizer has no chat template", fix="use prompt_format 'plain'")
    return prompt_format


def prompt_text(tokenizer: Any, prompt: str, prompt_format: str) -> str:
    """The text that precedes the answer (see the module docstring)."""
    if prompt_format == "chat":
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt.strip()}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt


def encode_pairs(tokenizer: Any, prompts: Sequence[str], answers: Sequence[str], *, prompt_format: str,
                 max_length: int) -> Encoded:
    """Tokenise training pairs: prompt ids, answer ids and the end token, cut to ``max_length``."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out = Encoded([], [])
    for p_ids, a_ids in zip(prompt_ids(tokenizer, prompts, prompt_format), _tokenize(tokenizer, answers),
                            strict=True):
        p_ids, a_ids = fit_length(p_ids, a_ids + end, max_length)
        out.ids.append(p_ids + a_ids)
        out.n_prompt.append(len(p_ids))
    return out


def prompt_ids(tokenizer: Any, prompts: Sequence[str], prompt_format: str) -> list[list[int]]:
    """Token ids of each prompt in the resolved format (each distinct prompt tokenised once)."""
    fmt = resolve_format(tokenizer, prompt_format)
    distinct = list(dict.fromkeys(prompts))
    ids = dict(zip(distinct, _tokenize(tokenizer, [prompt_text(tokenizer, p, fmt) for p in distinct]), strict=True))
    return [ids[p] for p in prompts]


def _tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(x) for x in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def fit_length(prompt: list[int], answer: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Cut a pair to ``max_length`` tokens: the answer keeps its start, the prompt keeps its end."""
    if len(prompt) + len(answer) <= max_length:
        return prompt, answer
    answer = answer[:max(max_length - len(prompt), max_length // 2)]
    keep = max_length - len(answer)
    return (prompt[len(prompt) - keep:] if keep > 0 else []), answer


def collate(encoded: Encoded, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and padding)."""
    seqs = [encoded.ids[i] for i in rows]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for r, (i, seq) in enumerate(zip(rows, seqs, strict=True)):
        input_ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention[r, :len(seq)] = 1
        labels[r, encoded.n_prompt[i]:len(seq)] = input_ids[r, encoded.n_prompt[i]:len(seq)]
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def answer_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed log-probability of its labelled tokens and how many there are.

    ``logits[:, t]`` predicts token ``t + 1``; positions whose label is -100 do not count. Only the labelled
    positions go through the log-softmax, so a batch never holds a second vocabulary-sized copy of the logits.
    """
    targets = labels[:, 1:]
    mask = targets != -100
    rows = torch.nonzero(mask, as_tuple=True)
    picked = logits[:, :-1][rows].float()
    token_lp = torch.log_softmax(picked, dim=-1).gather(1, targets[rows].unsqueeze(1)).squeeze(1)
    sums = torch.zeros(labels.shape[0], dtype=token_lp.dtype, device=token_lp.device)
    sums = sums.index_add(0, rows[0], token_lp)
    return sums, mask.sum(dim=1)


def pad_id_of(tokenizer: Any) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def add_lora(model: Any, settings: LMSettings) -> Any:
    """A peft LoRA wrapper around ``model`` (which it modifies: pass a copy to keep the base model)."""
    from peft import LoraConfig

    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=list(settings.target_modules), bias="none", task_type="CAUSAL_LM")
    return wrap_lora(model, config, what="the model")


def wrap_lora(model: Any, config: Any, *, what: str) -> Any:
    """``peft.get_peft_model(model, config)``; a module LoRA cannot go on is an input error naming ``what``."""
    from peft import get_peft_model

    try:
        with warnings.catch_warnings():  # peft asks transformers a deprecated question; not ours to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, config)
    except ValueError as exc:
        raise InputError(f"cannot put LoRA on {what}: {exc}",
                         fix="set target_modules to linear layers the model has") from exc


def finetune_lm(base_model: Any, tokenizer: Any, prompts: Sequence[str], answers: Sequence[str],
                settings: LMSettings, *, seed: int = 0, progress: bool = True,
                desc: str = "finetune", store: RunStore | None = None) -> tuple[Any, TrainStats]:
    """LoRA-finetune a copy of ``base_model`` on the pairs (each pair once per epoch; repeat pairs to weight).

    The base model is left as it was; the copy trains on the base model's device. Returns the LoRA-wrapped copy
    in eval mode and the run's statistics.
    ``store``: where this run is kept (:mod:`tasksift.train.store`): a finished run there is loaded instead of
    trained, an unfinished one resumes from its checkpoint, and a run finished here is kept there.
    """
    if store is not None and store.finished():
        model = add_lora(copy.deepcopy(base_model), settings)
        stats = store.load(model)
        model.eval()
        return model, stats
    seed_everything(seed)
    encoded = encode_pairs(tokenizer, prompts, answers, prompt_format=settings.prompt_format,
                           max_length=settings.max_length)
    model = add_lora(copy.deepcopy(base_model), settings)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer([{"params": trainable, "lr": settings.lr}], settings.weight_decay)
    sampler = ShuffledSampler(len(encoded), settings.batch_size, seed=seed)
    pad = pad_id_of(tokenizer)

    where = module_device(model)

    def loss_fn(indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        batch = to_device(collate(encoded, indices, pad), where)
        with autocast(where):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        sums, counts = answer_logprobs(logits, batch["labels"])
        loss = -sums.sum() / counts.sum().clamp(min=1)
        per_example = (-sums.detach() / counts.clamp(min=1)).cpu().numpy()
        return loss, per_example

    stats = run_steps(trainable, optimizer, sampler, loss_fn, epochs=settings.epochs, max_steps=settings.max_steps,
                      grad_clip=settings.grad_clip, progress=progress, desc=desc,
                      checkpoint=store.checkpoint() if store is not None else None)
    model.eval()
    if store is not None:
        store.save(model, stats)
    return model, stats


@dataclass
class OptionItem:
    """One test item as token ids: its prompt and each option's answer tokens (no end token)."""

    prompt: list[int]
    options: list[list[int]]


def encode_items(tokenizer: Any, prompts: Sequence[str], options: Sequence[Sequence[str]], *, prompt_format: str,
                 max_length: int) -> list[OptionItem]:
    """Tokenise test items; the prompt is cut (from its start) so that it fits with the item's longest option."""
    if len(prompts) != len(options):
        raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
    flat = _tokenize(tokenizer, [o for opts in options for o in opts])
    items, k = [], 0
    for i, (p_ids, opts) in enumerate(zip(prompt_ids(tokenizer, prompts, prompt_format), options, strict=True)):
        o_ids, k = flat[k:k + len(opts)], k + len(opts)
        if not p_ids or not o_ids or not all(o_ids):
            raise InputError(f"test item {i}: its prompt or one of its options has no tokens",
                             fix="give every test item a prompt and non-empty options")
        cut, _ = fit_length(p_ids, max(o_ids, key=len), max_length)
        room = max_length - len(cut)
        items.append(OptionItem(cut, [o[:room] for o in o_ids]))
    return items


def _padded(rows: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their attention mask, on ``device``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device)


def cache_argument(model: Any) -> str:
    """The name under which ``model``'s forward takes a key/value cache: ``cache`` in recent transformers,
    ``past_key_values`` before (recent versions still take it, with a deprecation warning, until they drop it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def returned_cache(out: Any) -> Any:
    """The key/value cache a forward with ``use_cache=True`` returned, under either name (see
    :func:`cache_argument`)."""
    return out["cache"] if "cache" in out else out["past_key_values"]


@torch.inference_mode()
def score_items(model: Any, items: Sequence[OptionItem], pad: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Summed option log-probabilities and token counts for a batch of items, each prompt run once.

    The prompts go through the model once (right-padded) and their key/value cache is copied to every option of
    the item; the options then run on that cache, with positions continuing from each prompt's own length and
    the prompt's padding masked. The last prompt position's logits predict each option's first token. The
    batch runs where the model is.
    """
    where = module_device(model)
    prompt_ids, prompt_mask = _padded([it.prompt for it in items], pad, where)
    lengths = prompt_mask.sum(dim=1)
    keep = torch.unique(lengths - 1)
    with autocast(where):
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True, logits_to_keep=keep,
                    position_ids=torch.arange(prompt_ids.shape[1], device=where).expand_as(prompt_ids))
    last = out.logits[torch.arange(len(items), device=where), torch.searchsorted(keep, lengths - 1)]
    owner = torch.tensor([b for b, it in enumerate(items) for _ in it.options], dtype=torch.long, device=where)
    cache = returned_cache(out)
    cache.batch_select_indices(owner)
    option_ids, option_mask = _padded([o for it in items for o in it.options], pad, where)
    positions = lengths[owner].unsqueeze(1) + torch.arange(option_ids.shape[1], device=where)
    with autocast(where):
        out2 = model(input_ids=option_ids, attention_mask=torch.cat([prompt_mask[owner], option_mask], dim=1),
                     position_ids=positions, use_cache=False, **{cache_argument(model): cache})
    # logits[:, j] predicts labels[:, j + 1]: the prompt's last logits predict option token 0, and so on
    logits = torch.cat([last[owner].unsqueeze(1), out2.logits], dim=1)
    start = torch.full((len(owner), 1), -100, device=where)
    labels = torch.cat([start, option_ids.masked_fill(option_mask == 0, -100)], dim=1)
    sums, counts = answer_logprobs(logits, labels)
    sums, counts = sums.double().cpu().numpy(), counts.cpu().numpy()
    out_rows, k = [], 0
    for it in items:
        out_rows.append((sums[k:k + len(it.options)], counts[k:k + len(it.options)]))
        k += len(it.options)
    return out_rows


def score_options(model: Any, tokenizer: Any, prompts: Sequence[str], options: Sequence[Sequence[str]],
                  settings: LMSettings, *, progress: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For each item, the summed log-probability of each option's tokens (no end token) given the prompt, and
    their counts: two ragged lists, one array per item, one entry per option in the given order.

    Items go ``settings.eval_batch_size`` at a time, longest prompt first; each prompt runs once for all of its
    options (:func:`score_items`).
    """
    model.eval()
    items = encode_items(tokenizer, prompts, options, prompt_format=settings.prompt_format,
                         max_length=settings.max_length)
    order = length_order([len(it.prompt) for it in items])
    sums: list[np.ndarray] = [np.zeros(0)] * len(items)
    counts: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(items)
    pad = pad_id_of(tokenizer)
    with progress_bar(progress, "score", len(items), unit="items") as advance:
        for sl in batch_slices(len(order), settings.eval_batch_size):
            rows = order[sl]
            for i, (s, c) in zip(rows, score_items(model, [items[i] for i in rows], pad), strict=True):
                sums[i], counts[i] = s, c
            advance(len(rows))
    return sums, counts
