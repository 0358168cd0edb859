"""The registry of selectors by name.

A selector module (or package) of :mod:`tasksift.selectors` defines a :class:`~tasksift.selectors.base.Selector`
subclass and decorates it with :func:`register`. Every module of the package is imported on first use of the
registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from tasksift.selectors.base import Selector
from tasksift.train.samplers import TRAINING_TIME
from tasksift.util.errors import InputError

_REGISTRY: dict[str, type[Selector]] = {}
#: modules of the package that hold no selector
_FRAMEWORK = ("base", "registry")
_loaded = False


def register(cls: type[Selector]) -> type[Selector]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"two selectors are registered as {name!r}")
    _REGISTRY[name] = cls
    return cls


def _load_builtins() -> None:
    """Import every module and package of :mod:`tasksift.selectors` once: each registers its selectors, so a
    new method is found by dropping its module in the package."""
    global _loaded
    if not _loaded:
        package = Path(__file__).parent
        for info in sorted(pkgutil.iter_modules([str(package)]), key=lambda i: i.name):
            if info.name not in _FRAMEWORK and not info.name.startswith("_"):
                importlib.import_module(f"tasksift.selectors.{info.name}")
        _loaded = True


def available() -> dict[str, type[Selector]]:
    """Every registered selector by name, sorted."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> type[Selector]:
    methods = available()
    if name in TRAINING_TIME and name not in methods:
        raise InputError(f"{name!r} prunes while training, it does not select",
                         fix=f"run `tasksift retriever train --task DIR --pruning {TRAINING_TIME[name]}`")
    if name not in methods:
        raise InputError(f"unknown method {name!r}", fix=f"choose one of: {', '.join(methods)}")
    return methods[name]
