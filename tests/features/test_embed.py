"""Embeddings with the real bundled all-MiniLM-L6-v2, against sentence-transformers itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from tasksift.features import Embedder, embed_texts, model_fingerprint
from tasksift.util.errors import InputError

SENTENCES = [
    "The central bank raised interest rates by a quarter point.",
    "Shares in the carmaker fell sharply after the profit warning.",
    "The striker scored twice in the second half.",
    "Fans queued overnight for tickets to the final.",
    "The film won three awards at the ceremony on Sunday.",
    "Critics praised the actor's performance in the new drama.",
    "The prime minister defended the budget in parliament.",
    "Opposition leaders called for an early election.",
    "A new smartphone with a folding screen goes on sale next month.",
    "Researchers found a security flaw in the popular web browser.",
    "Oil prices climbed to their highest level this year.",
    "The tennis champion withdrew from the tournament with an injury.",
    "Short.",
    "The band announced a world tour starting in the spring, with dates in forty cities across "
    "Europe, Asia and the Americas, and tickets on sale from Friday morning.",
    "Ministers will meet union leaders to discuss pensions.",
    "The software update fixes a bug that drained batteries.",
    "Unemployment fell for the fourth month in a row.",
    "The museum reopened after a two-year renovation.",
    "Voters in the north turned out in record numbers.",
    "Scientists unveiled a chip that uses far less power.",
]


def test_matches_plain_sentence_transformers(
    tmp_path: Path, embedder: Embedder, plain_model: SentenceTransformer
) -> None:
    result = embed_texts(SENTENCES, model=embedder, cache_dir=tmp_path, shard_size=8, progress=False)
    got = result.matrix()
    assert got.dtype == np.float32 and got.shape == (20, 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    ref = plain_model.encode(SENTENCES, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                             show_progress_bar=False)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert (result.n_computed, result.n_reused) == (3, 0)

    # A rerun with a fresh Embedder reads everything from the cache and never loads the model.
    fresh = Embedder()
    again = embed_texts(SENTENCES, model=fresh, cache_dir=tmp_path, shard_size=8, progress=False)
    assert (again.n_computed, again.n_reused) == (3 - 3, 3)
    assert not fresh.is_loaded
    np.testing.assert_array_equal(again.matrix(), got)
    info = again.info()
    assert info["meta"]["model_name"] == "all-MiniLM-L6-v2"
    assert info["settings"]["model"] == embedder.fingerprint() and info["settings"]["normalize"] is True
    assert info["dim"] == 384


def test_encode_keeps_row_order_at_any_batch_size(embedder: Embedder, plain_model: SentenceTransformer) -> None:
    reversed_texts = SENTENCES[::-1]
    np.testing.assert_allclose(embedder.encode(reversed_texts), embedder.encode(SENTENCES)[::-1], atol=1e-6)
    raw = Embedder(normalize=False, batch_size=4)
    raw._model = embedder.model  # share the loaded weights; normalisation happens in encode
    ref = plain_model.encode(SENTENCES, batch_size=4, convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(raw.encode(SENTENCES), ref, atol=1e-5, rtol=0)
    assert raw.cache_settings() != embedder.cache_settings()


def test_missing_model_is_an_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(InputError) as err:
        Embedder(str(missing))
    assert str(missing) in str(err.value) and "model directory" in str(err.value)
    with pytest.raises(InputError, match="no modules.json or config.json"):
        embed_texts(["x"], model=tmp_path, cache_dir=tmp_path)
    with pytest.raises(InputError, match="empty"):
        Embedder("")
    with pytest.raises(InputError, match="not-a-cached/model-name"):
        Embedder("not-a-cached/model-name")


def test_model_names(tmp_path: Path, minilm_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Embedder().path == minilm_path.resolve()
    by_name = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    assert by_name.path == minilm_path.resolve() and by_name.name == "all-MiniLM-L6-v2"
    local = tmp_path / "all-MiniLM-L6-v2"  # an existing directory wins over the bundled model's name
    local.mkdir()
    (local / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert Embedder("all-MiniLM-L6-v2").path == local.resolve()


def test_fingerprint_follows_content_not_location(tmp_path: Path, minilm_path: Path) -> None:
    copy = tmp_path / "copy"
    for src in minilm_path.rglob("*"):
        if src.is_file():
            dst = copy / src.relative_to(minilm_path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    a, b = Embedder(), Embedder(str(copy))
    assert a.fingerprint() == b.fingerprint() and a.cache_settings() == b.cache_settings()
    assert b.identity()["path"] == str(copy.resolve()) and b.identity()["name"] == "copy"

    config = copy / "config.json"
    data = json.loads(config.read_text())
    config.unlink()
    config.write_text(json.dumps({**data, "layer_norm_eps": 1e-6}))
    assert model_fingerprint(copy) != a.fingerprint()

    weights = copy / "model.safetensors"
    weights.unlink()
    shutil.copyfile(minilm_path / "model.safetensors", weights)
    with open(weights, "r+b") as f:  # one changed block in the middle of the weights
        f.seek(weights.stat().st_size // 2)
        f.write(b"\x00" * (64 << 10))
    config.unlink()
    config.symlink_to(minilm_path / "config.json")
    assert model_fingerprint(copy) != a.fingerprint()


def test_embedder_and_arguments_must_agree(tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        embed_texts(["x"], model=embedder, batch_size=embedder.batch_size + 1, cache_dir=tmp_path)
    empty = embed_texts([], model=embedder, cache_dir=tmp_path, progress=False)
    assert empty.shape == (0, 384)
