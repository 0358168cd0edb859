"""Run a `tasksift` command in a child process and SIGKILL it once it has finished a few cache shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def kill_after_shards(args: list[str], cache_root: Path, shards: int = 2, timeout: float = 120.0) -> None:
    """Start ``python -m tasksift ARGS``, wait until ``shards`` embedding shards have their completion marker
    under ``cache_root``, then SIGKILL it. Fails the test if the child exits first or the time runs out."""
    command = [sys.executable, "-m", "tasksift", *args]
    child = subprocess.Popen(command, env={**os.environ, **OFFLINE}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while len(list(cache_root.glob("embeddings/*/*.done"))) < shards:
            if child.poll() is not None:
                pytest.fail(f"the run exited ({child.returncode}) before {shards} shards: {child.stderr.read()!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"the run finished no {shards} shards within {timeout:.0f} s")
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
