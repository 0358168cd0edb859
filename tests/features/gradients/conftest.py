"""Fixtures of the gradient feature tests: one torch thread, a tiny Llama built once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.train.helpers import tiny_llama


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread: these small models gain nothing from two, and a busy shared machine punishes spinning."""
    before = torch.get_num_threads()
    monkeypatch.setattr("tasksift.train.common.default_threads", lambda: 1)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("grad-llama") / "tiny")
