"""Per-example gradients from one batched pass against the one-backward-per-example loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasksift.features.gradients.hooks import per_example_gradients, per_example_gradients_loop, trainable_slots
from tasksift.features.gradients.proxy import ProxyModel, load_proxy
from tasksift.util.env import default_cache_root
from tasksift.util.errors import InputError
from tests.features.gradients.helpers import ENCODER_TEXTS, LLAMA_TEXTS, max_relative_error, randomise_lora_b

# The user's model cache, read before the autouse fixture points TASKSIFT_CACHE at a temporary directory.
USER_MODELS = default_cache_root() / "models"


@pytest.fixture(scope="module")
def minilm() -> ProxyModel:
    proxy = load_proxy("minilm")
    randomise_lora_b(proxy, 0.02)
    return proxy


def test_tiny_llama_lora_batched_equals_loop(llama_dir: Path) -> None:
    proxy = load_proxy(llama_dir)
    randomise_lora_b(proxy, 0.1)
    assert proxy.kind == "causal-lm" and proxy.identity["target_modules"] == ["q_proj", "v_proj"]
    batched = proxy.gradients(LLAMA_TEXTS)
    loop = per_example_gradients_loop(proxy, LLAMA_TEXTS)
    assert batched.shape == (len(LLAMA_TEXTS), proxy.dim)
    assert max_relative_error(batched, loop) <= 1e-4
    a_cols = [s for s in proxy.slots if "lora_A" in s.module_name]
    assert all(batched[:, s.offset:s.offset + s.size].abs().sum() > 0 for s in a_cols)
    assert batched[-1].abs().sum() == 0  # "banana" is one token: nothing to predict, no gradient


def test_minilm_lora_batched_equals_loop(minilm: ProxyModel) -> None:
    assert minilm.kind == "encoder" and minilm.dim == 6 * 2 * (8 * 384 + 384 * 8)
    batched = minilm.gradients(ENCODER_TEXTS + [""])
    loop = per_example_gradients_loop(minilm, ENCODER_TEXTS + [""])
    assert max_relative_error(batched, loop) <= 1e-4
    assert batched[-1].abs().sum() == 0  # no content token: loss 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["llama", "minilm"])
def test_gradients_on_a_gpu_equal_the_cpu_loop(model: str, llama_dir: Path) -> None:
    proxy = load_proxy(llama_dir) if model == "llama" else load_proxy("minilm")
    randomise_lora_b(proxy, 0.1)
    texts = LLAMA_TEXTS if model == "llama" else ENCODER_TEXTS
    on_cpu = per_example_gradients_loop(proxy, texts)
    proxy.to("cuda")
    batched = proxy.gradients(texts)
    assert batched.device.type == "cpu" and proxy.batch(texts).input_ids.device.type == "cuda"
    assert max_relative_error(batched, on_cpu) <= 1e-4


def test_minilm_named_linear_layers_with_bias_batched_equals_loop() -> None:
    proxy = load_proxy("minilm", params="linear",
                       target_modules=["layer.5.output.dense", "layer.0.attention.self.query"])
    slots = trainable_slots(proxy.module)
    assert [s.is_bias for s in slots] == [False, True, False, True]
    assert [s.module_name for s in slots][::2] == ["backbone.encoder.layer.0.attention.self.query",
                                                  "backbone.encoder.layer.5.output.dense"]
    assert proxy.dim == (384 * 384 + 384) + (384 * 1536 + 384)
    batched = proxy.gradients(ENCODER_TEXTS)
    assert max_relative_error(batched, per_example_gradients_loop(proxy, ENCODER_TEXTS)) <= 1e-4


def test_a_layer_called_twice_gets_the_sum_of_its_calls() -> None:
    torch.manual_seed(0)
    shared = torch.nn.Linear(5, 5)
    head = torch.nn.Linear(5, 1, bias=False)
    model = torch.nn.ModuleDict({"shared": shared, "head": head})
    x = torch.randn(6, 3, 5)

    def losses(inputs: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(shared(torch.tanh(shared(inputs))))
        return (head(h) ** 2).mean(dim=(1, 2))

    batched = per_example_gradients(model, lambda: losses(x))
    params = [p for p in model.parameters() if p.requires_grad]
    loop = []
    for i in range(len(x)):
        grads = torch.autograd.grad(losses(x[i:i + 1])[0], params)
        loop.append(torch.cat([g.reshape(-1) for g in grads]))
    assert max_relative_error(batched, torch.stack(loop)) <= 1e-5


def test_a_trainable_parameter_outside_linear_layers_is_an_error() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.Linear(3, 2))
    with pytest.raises(InputError, match="does not belong to a linear layer"):
        trainable_slots(model)


@pytest.mark.slow
def test_smollm2_lora_batched_equals_loop() -> None:
    from tasksift.train.models import smollm2_path

    proxy = load_proxy(smollm2_path(USER_MODELS, progress=False))
    assert proxy.dim == 460_800
    randomise_lora_b(proxy, 0.01)
    texts = ["The quick brown fox jumps over the lazy dog.", "Select the data that serves the task.",
             "A much longer example: per-example gradients from one batched pass equal the loop's, row by row."]
    assert max_relative_error(proxy.gradients(texts), per_example_gradients_loop(proxy, texts)) <= 1e-4
