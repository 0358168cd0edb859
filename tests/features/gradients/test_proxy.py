"""Proxy models: the causal LM's loss is the model's own, devices, and the settings a spec refuses."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from tasksift.features.gradients.proxy import load_proxy, proxy_spec
from tasksift.util.errors import InputError
from tests.features.gradients.helpers import LLAMA_TEXTS, randomise_lora_b


def test_causal_lm_loss_is_the_models_own_loss(llama_dir: Path) -> None:
    """The per-example loss is Hugging Face's ``labels=input_ids`` loss, so the gradients are its gradients."""
    proxy = load_proxy(llama_dir)
    randomise_lora_b(proxy, 0.1)
    params = proxy.trainable_parameters()
    batched = proxy.gradients(LLAMA_TEXTS[:4])
    for row, text in enumerate(LLAMA_TEXTS[:4]):
        ids = torch.tensor([proxy.tokenizer(text)["input_ids"]])
        proxy.module.zero_grad(set_to_none=True)
        proxy.module(input_ids=ids, labels=ids).loss.backward()
        hf = torch.cat([p.grad.reshape(-1) for p in params])
        assert float((batched[row] - hf).norm() / hf.norm()) <= 1e-4


def test_a_proxy_on_an_unknown_or_missing_device_is_an_input_error(llama_dir: Path) -> None:
    proxy = load_proxy(llama_dir)
    with pytest.raises(InputError, match="cannot run the proxy model on 'warp-drive'"):
        proxy.to("warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="torch sees no CUDA device"):
            proxy.to("cuda")
    assert proxy.device == torch.device("cpu")
    assert proxy.gradients(LLAMA_TEXTS[:2]).device.type == "cpu"


def test_a_spec_refuses_what_it_cannot_build(llama_dir: Path) -> None:
    with pytest.raises(InputError, match="target_modules"):
        proxy_spec(llama_dir, params="linear")
    with pytest.raises(InputError, match="not found"):
        proxy_spec("/no/such/model")


def test_lora_proxies_load_without_a_deprecation_warning(llama_dir: Path) -> None:
    # peft asks transformers a deprecated question when it wraps a model; the causal LM and the encoder both
    # wrap through one place, which keeps that warning out of the user's log
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        causal = load_proxy(llama_dir)
        encoder = load_proxy("minilm", target_modules=["query", "value"])
    assert causal.kind == "causal-lm" and encoder.kind != "causal-lm"


def test_lora_on_modules_the_encoder_lacks_is_an_input_error() -> None:
    with pytest.raises(InputError, match="cannot put LoRA on the encoder"):
        load_proxy("minilm", target_modules=["no_such_module"])
