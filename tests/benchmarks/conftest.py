"""Fixtures of the benchmark tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread for the smoke runs (``TASKSIFT_THREADS=1``), the thread count restored after."""
    before = torch.get_num_threads()
    monkeypatch.setenv("TASKSIFT_THREADS", "1")
    yield
    torch.set_num_threads(before)
