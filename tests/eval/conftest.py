"""Fixtures for the evaluation tests: those of the training tests (one torch thread, the tiny Llama)."""

from tests.train.conftest import one_torch_thread, tiny_llama_dir  # noqa: F401 - re-exported fixtures
