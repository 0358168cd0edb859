"""Pieces every finetuning loop shares: threads and seeds, weighted examples, samplers, the step loop.

- :func:`setup_torch` / :func:`seed_everything`: fp32 on every core this process may use, one seed for Python,
  numpy and torch.
- :func:`expand_counts`: selection weights are training counts; a row of weight 3 appears 3 times per epoch.
- :class:`Sampler`: what the loop draws its batches from. :class:`ShuffledSampler` (the default) makes plain
  shuffled passes; another sampler (OPERA's dynamic pruning) plugs in through the same two methods, receiving
  after every forward pass a per-example signal of the batch (the retriever's live positive cosines, the
  classifier's and the LM's per-example losses).
- :func:`run_steps`: forward (through a loss function), backward, clip, step, with a rich progress bar; it
  counts steps, examples seen and seconds into :class:`TrainStats`. With a :class:`Checkpoint` it saves its
  state (trainable tensors, optimiser, position in the pass, sampler, torch's random state and the statistics)
  atomically every few minutes, and a later call with the same checkpoint resumes from it: the run ends with
  the same tensors, to the bit, as one never interrupted (a sampler must implement :meth:`Sampler.state` for
  this; OPERA's, which learns from what it saw, does not, and its runs cannot take a checkpoint).
- :func:`module_device` / :func:`to_device`: the loops run where their model is (the caller moves it, see
  :func:`tasksift.util.device.resolve_device`); batches follow it, and what goes back to numpy comes to the CPU.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasksift.util.env import default_threads
from tasksift.util.errors import InputError
from tasksift.util.io import atomic_path
from tasksift.util.progress import progress_bar

#: environment variable that sets the torch thread count
THREADS_ENV = "TASKSIFT_THREADS"
#: ``loss_fn(indices) -> (mean loss to backpropagate, per-example signal for the sampler)``
LossFn = Callable[[np.ndarray], tuple[torch.Tensor, np.ndarray]]


def setup_torch(threads: int | None = None) -> int:
    """Use ``threads`` for torch ops (default: ``$TASKSIFT_THREADS``, else every core this process may use) and
    float32 by default; returns the thread count.

    On a machine other processes keep busy, fewer threads than cores can be much faster (OpenMP threads wait
    for each other at every operation): set ``TASKSIFT_THREADS`` there.
    """
    if threads is None:
        value = os.environ.get(THREADS_ENV, "").strip()
        if value and (not value.isdigit() or int(value) < 1):
            raise InputError(f"{THREADS_ENV}={value!r} is not a positive number of threads",
                             fix=f"unset {THREADS_ENV} or set it to 1, 2, ...")
        threads = int(value) if value else default_threads()
    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)
    return threads


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def expand_counts(rows: Sequence[int] | np.ndarray, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Each row repeated by its training count: ``round(weight)`` times, half up; a count of 0 drops the row.

    ``weights=None`` means every row once. Rows keep their given order (the sampler shuffles).
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if weights is None:
        return rows.copy()
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(w)} weights")
    if len(w) and (not np.all(np.isfinite(w)) or w.min() < 0):
        raise InputError("selection weights must be finite and non-negative training counts")
    counts = np.floor(w + 0.5).astype(np.int64)
    return np.repeat(rows, counts)


class Sampler(ABC):
    """Where a training loop gets its batches: positions into the training examples, pass by pass.

    :meth:`batches` yields arrays of example positions for one pass (an epoch for the default sampler);
    :meth:`observe` is called after each forward pass with the batch's positions and one float per position
    (the retriever: each pair's live in-batch positive cosine; the classifier and the LM: each example's loss).
    """

    @abstractmethod
    def batches(self, pass_index: int) -> Iterator[np.ndarray]:
        """The batches of pass ``pass_index`` (0-based)."""

    @abstractmethod
    def batches_per_pass(self) -> int:
        """How many batches one pass yields (for the progress bar and step budgets)."""

    def observe(self, indices: np.ndarray, signal: np.ndarray) -> None:  # noqa: B027 - a no-op by default
        """Per-example signal of the batch just seen; the default sampler ignores it."""

    def state(self) -> Any | None:
        """What :meth:`restore` needs to replay the next pass exactly (taken just before it starts); None: the
        sampler cannot be resumed."""
        return None

    def restore(self, state: Any) -> None:
        raise InputError(f"{type(self).__name__} cannot resume from a checkpoint")


class ShuffledSampler(Sampler):
    """Plain passes: every example once per pass, in a new random order each pass (seeded)."""

    def __init__(self, n: int, batch_size: int, seed: int = 0) -> None:
        if n <= 0:
            raise InputError("there are no training examples", fix="select at least one example, or use 'none'")
        if batch_size <= 0:
            raise InputError(f"batch size {batch_size} must be positive")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(seed)

    def batches_per_pass(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def batches(self, pass_index: int) -> Iterator[np.ndarray]:
        order = self.rng.permutation(self.n)
        for b in range(self.batches_per_pass()):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]

    def state(self) -> Any:
        return {"n": self.n, "batch_size": self.batch_size, "rng": self.rng.bit_generator.state}

    def restore(self, state: Any) -> None:
        if (state["n"], state["batch_size"]) != (self.n, self.batch_size):
            raise InputError(f"the checkpoint was taken over {state['n']} examples in batches of "
                             f"{state['batch_size']}, this run has {self.n} in batches of {self.batch_size}",
                             fix="delete the checkpoint file to start over")
        self.rng.bit_generator.state = state["rng"]


@dataclass
class TrainSettings:
    """What every track's training settings share: how long (``max_steps`` overrides ``epochs`` when set) and the
    gradient-norm clip (``None``: off). Each track's settings add their own fields after these."""

    epochs: int = 3
    max_steps: int | None = None
    grad_clip: float | None = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Checkpoint:
    """Where :func:`run_steps` saves its state and when: after a step, once ``every_seconds`` have passed since
    the last save (or every ``every_steps`` steps when given). ``key`` names what decides the run (data,
    settings, seed, model): a file with another key is not resumed from but replaced."""

    path: Path
    key: str
    every_seconds: float = 300.0
    every_steps: int | None = None

    def due(self, steps: int, last_save: float) -> bool:
        if self.every_steps is not None:
            return steps % self.every_steps == 0
        return time.monotonic() - last_save >= self.every_seconds

    def load(self) -> dict[str, Any] | None:
        """The saved state when its key matches (None when absent, stale or unreadable: a kill while writing
        leaves only the temporary file, never a torn checkpoint)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # an unreadable file is not resumed from; the run starts over and replaces it
            return None
        return state if isinstance(state, dict) and state.get("key") == self.key else None

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save({**state, "key": self.key}, tmp)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class TrainStats:
    """What a finetuning run did: optimizer steps, examples seen (with repeats), passes, seconds, losses."""

    steps: int = 0
    examples_seen: int = 0
    passes: int = 0
    seconds: float = 0.0
    first_loss: float | None = None
    last_loss: float | None = None
    mean_loss: float | None = None
    losses: list[float] = field(default_factory=list, repr=False)

    @property
    def seconds_per_step(self) -> float | None:
        return self.seconds / self.steps if self.steps else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (without the per-step losses)."""
        out = asdict(self)
        out.pop("losses")
        out["seconds_per_step"] = self.seconds_per_step
        return out


def planned_steps(sampler: Sampler, epochs: int, max_steps: int | None) -> int:
    """Steps a run takes: ``max_steps`` when given (it overrides ``epochs``), else ``epochs`` passes."""
    if max_steps is not None:
        return max(int(max_steps), 0)
    return sampler.batches_per_pass() * max(int(epochs), 0)


def run_steps(params: Sequence[Any] | Any, optimizer: Any, sampler: Sampler, loss_fn: LossFn, *, epochs: int,
              max_steps: int | None = None, grad_clip: float | None = 1.0, progress: bool = True,
              desc: str = "train", on_step: Callable[[TrainStats], None] | None = None,
              checkpoint: Checkpoint | None = None) -> TrainStats:
    """The training loop: ``epochs`` passes of ``sampler``, or exactly ``max_steps`` steps when that is given.

    ``max_steps`` overrides ``epochs`` (as in Hugging Face's Trainer): passes repeat until it is reached, and the
    last pass may stop part way. Each step calls ``loss_fn(indices)`` for the batch, backpropagates the loss,
    clips the gradient norm of ``params`` at ``grad_clip`` (``None``: no clipping), steps ``optimizer`` and hands
    the per-example signal to ``sampler.observe``. ``on_step(stats)``, when given, runs after every step.
    ``checkpoint``: save the run's state as it goes and resume from a saved one (module docstring); the file
    stays when the run ends (the caller removes it once the result is safe). ``stats.seconds`` counts the
    seconds of every part of a resumed run.
    """
    params = [p for p in params if p.requires_grad]
    stats = TrainStats()
    total = planned_steps(sampler, epochs, max_steps)
    start_pass, skip, elapsed = 0, 0, 0.0
    if checkpoint is not None:
        if sampler.state() is None:
            raise InputError(f"{type(sampler).__name__} cannot be checkpointed", fix="train without a checkpoint")
        saved = checkpoint.load()
        if saved is not None:
            with torch.no_grad():
                for p, value in zip(params, saved["params"], strict=True):
                    p.copy_(value)
            optimizer.load_state_dict(saved["optimizer"])
            sampler.restore(saved["sampler"])
            torch.set_rng_state(saved["torch_rng"])
            stats = TrainStats(steps=saved["steps"], examples_seen=saved["examples_seen"], passes=saved["passes"],
                               losses=list(saved["losses"]))
            start_pass, skip, elapsed = saved["pass_index"], saved["batch_in_pass"], saved["seconds"]
    t0 = time.perf_counter()
    last_save = time.monotonic()
    with progress_bar(progress, desc, total, unit="steps") as advance:
        if stats.steps:
            advance(stats.steps, "resumed")
        for pass_index in itertools.count(start_pass):
            if stats.steps >= total and not skip:  # a resumed pass still counts itself, as it would have
                break
            seen_before = stats.steps
            pass_state = sampler.state() if checkpoint is not None else None
            for b, indices in enumerate(sampler.batches(pass_index)):
                if b < skip:  # a resumed pass: these batches were trained before the checkpoint
                    seen_before -= 1
                    continue
                if stats.steps >= total:
                    break
                indices = np.asarray(indices, dtype=np.int64)
                optimizer.zero_grad(set_to_none=True)
                loss, signal = loss_fn(indices)
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                optimizer.step()
                sampler.observe(indices, np.asarray(signal, dtype=np.float64))
                value = float(loss.detach())
                stats.losses.append(value)
                stats.steps += 1
                stats.examples_seen += len(indices)
                advance(1, f"loss {value:.4f}")
                if checkpoint is not None and checkpoint.due(stats.steps, last_save):
                    checkpoint.save({
                        "params": [p.detach().clone() for p in params], "optimizer": optimizer.state_dict(),
                        "sampler": pass_state, "torch_rng": torch.get_rng_state(), "pass_index": pass_index,
                        "batch_in_pass": b + 1, "steps": stats.steps, "examples_seen": stats.examples_seen,
                        "passes": stats.passes, "losses": stats.losses,
                        "seconds": elapsed + time.perf_counter() - t0})
                    last_save = time.monotonic()
                if on_step is not None:
                    on_step(stats)
            skip = 0
            stats.passes += 1
            if stats.steps == seen_before:  # a sampler with nothing left to give
                break
    stats.seconds = elapsed + time.perf_counter() - t0
    if stats.losses:
        stats.first_loss, stats.last_loss = stats.losses[0], stats.losses[-1]
        stats.mean_loss = float(np.mean(stats.losses))
    return stats


def train_module(module: torch.nn.Module, settings: TrainSettings, optimizer: Any, sampler: Sampler,
                 loss_fn: LossFn, *, progress: bool, desc: str,
                 on_step: Callable[[TrainStats], None] | None = None) -> TrainStats:
    """:func:`run_steps` over every parameter of ``module`` for as long as ``settings`` say, with their gradient
    clip; ``module`` is left in eval mode."""
    stats = run_steps(list(module.parameters()), optimizer, sampler, loss_fn, epochs=settings.epochs,
                      max_steps=settings.max_steps, grad_clip=settings.grad_clip, progress=progress, desc=desc,
                      on_step=on_step)
    module.eval()
    return stats


def make_optimizer(groups: Sequence[dict[str, Any]], weight_decay: float = 0.0) -> Any:
    """AdamW over parameter groups ``[{"params": [...], "lr": ...}, ...]`` (frozen parameters left out)."""
    kept = []
    for group in groups:
        params = [p for p in group["params"] if p.requires_grad]
        if params:
            kept.append({**group, "params": params})
    if not kept:
        raise ValueError("no trainable parameters")
    return torch.optim.AdamW(kept, weight_decay=weight_decay)


def module_device(module: Any) -> torch.device:
    """Where ``module``'s parameters are (the CPU for a module without any)."""
    for param in module.parameters():
        return param.device
    return torch.device("cpu")


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of ``batch`` on ``device`` (the same tensors when they are there already)."""
    return {name: value.to(device) for name, value in batch.items()}


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)``, ``batch_size`` long (the last one shorter)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def length_order(lengths: Sequence[int]) -> np.ndarray:
    """Positions sorted by decreasing length (stable), so a scoring batch pads little."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
