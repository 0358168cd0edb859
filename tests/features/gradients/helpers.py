"""Texts and checks shared by the gradient feature tests."""

from __future__ import annotations

import torch

from tasksift.features.gradients import ProxyModel

LLAMA_TEXTS = ["What colour is the fruit ? apple red", "Name the animal .", "It says moo . cow",
               "What colour is the fruit ? lime green What colour is the fruit ? plum blue", "banana"]
ENCODER_TEXTS = ["A short sentence.", "Another sentence that is a good deal longer than the first one, with commas.",
                 "ok", "Data selection picks the training examples that serve the target task best."]


def max_relative_error(batched: torch.Tensor, loop: torch.Tensor) -> float:
    """Largest ``||b - l|| / ||l||`` over the rows whose loop gradient is not zero (zero rows must match)."""
    norms = loop.norm(dim=1)
    assert torch.equal(batched[norms == 0], loop[norms == 0])
    return float(((batched - loop).norm(dim=1)[norms > 0] / norms[norms > 0]).max())


def randomise_lora_b(proxy: ProxyModel, std: float, seed: int = 0) -> None:
    """peft starts lora_B at zero, which zeroes lora_A's gradient; a random lora_B makes every block count."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in proxy.module.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
