"""Pinned hashes: cache folders and shard files are named by these, so a cache built before is read after."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tasksift.features.cache import shard_key
from tasksift.util.hashing import canonical_json, file_sha256, settings_key, text_digest, update_with_file


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": [1, 2.5, None], "a": "é"}) == '{"a":"é","b":[1,2.5,null]}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


@pytest.mark.parametrize(("settings", "key"), [
    ({"model": "m", "normalize": True, "shard_size": 4},
     "d23ac53e0fb9b2cf4fb7003559c0d55f67e987c64cde416797ecd78f6feeb14c"),
    ({"b": [1, 2.5, None], "a": "é", "shard_size": 4096},
     "469dfbc2745fe4b32ffa062b3433a882a45cd108aca0757e7db51439597fb27b"),
])
def test_settings_key_is_pinned(settings: dict, key: str) -> None:
    assert settings_key(settings) == key
    assert settings_key(dict(reversed(list(settings.items())))) == key  # key order does not matter


def test_text_digest_and_shard_key_are_pinned() -> None:
    assert text_digest("hello").hex() == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    # a lone surrogate is hashed as it is (surrogatepass), not refused
    assert text_digest("naïve \ud800").hex() == "f02a6e48d8628ba5b90f4e4de6b7f006e8ad620765d7d6b604aeccba11c71dea"
    assert shard_key(["a", "b"]) == "e5a01fee14e0ed5c48714f22180f25ad8365b53f9779f79dc4a3d7e93963f94a"


def test_file_hashes_read_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 40
    path.write_bytes(data)
    assert file_sha256(path, chunk=100) == hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256(b"head")
    update_with_file(digest, path, chunk=7)
    assert digest.hexdigest() == hashlib.sha256(b"head" + data).hexdigest()
