"""Per-example gradients of a model's trainable linear layers from one batched forward and backward pass.

How a batch is computed (:func:`per_example_gradients`): one forward pass with hooks that keep every trainable
linear layer's input ``a`` and output ``y``, then one ``torch.autograd.grad`` of the *sum* of the per-example
losses with respect to the outputs. Examples do not interact (right padding, attention masks), so row ``b`` of
``dL/dy`` is the gradient of example ``b``'s own loss, and the per-example weight gradient of a linear layer is
``einsum("bto,bti->boi", dL/dy, a)`` (the bias: ``dL/dy`` summed over the sequence). LoRA needs nothing
special: peft's ``lora_A`` and ``lora_B`` are linear layers, and LoRA's scaling sits after ``lora_B``, inside
``dL/dy``. :func:`per_example_gradients_loop` is the one-backward-per-example reference it is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from tasksift.util.errors import InputError


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


class LossModel(Protocol):
    """What the loop reference reads of a proxy model (:class:`tasksift.features.gradients.proxy.ProxyModel`)."""

    module: torch.nn.Module

    @property
    def dim(self) -> int: ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]: ...

    def losses(self, texts: Sequence[str]) -> torch.Tensor: ...


def per_example_gradients_loop(proxy: LossModel, texts: Sequence[str]) -> torch.Tensor:
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
