"""Fixtures for the training tests: one torch thread, a tiny random Llama (saved once), offline Hugging Face."""

from __future__ import annotations

import os

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tasksift.train.common import THREADS_ENV  # noqa: E402
from tests.train.helpers import tiny_llama  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tiny models on one thread: several OpenMP threads on a busy CI machine slow them down many times over."""
    before = torch.get_num_threads()
    monkeypatch.setenv(THREADS_ENV, "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_lm(tiny_llama_dir: Path):  # noqa: ANN201 - (model, tokenizer)
    from tasksift.train import load_causal_lm

    return load_causal_lm(tiny_llama_dir)
