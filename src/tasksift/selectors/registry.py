"""The registry of selectors by name.

A selector module defines one :class:`~tasksift.selectors.base.Selector` subclass and decorates it with
:func:`register`. Built-in modules are imported on first use of the registry, so importing tasksift stays
light.
"""

from __future__ import annotations

import importlib

from tasksift.selectors.base import Selector
from tasksift.util.errors import InputError

_REGISTRY: dict[str, type[Selector]] = {}
_BUILTIN_MODULES = ("random", "knn", "dsir", "tsds", "less", "spice", "opera", "harp")
#: names of training-time samplers, which select nothing: where to use them instead
_TRAINING_TIME = {"opera-dp": "dynamic", "infobatch": "infobatch"}
_loaded = False


def register(cls: type[Selector]) -> type[Selector]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"two selectors are registered as {name!r}")
    _REGISTRY[name] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(f"tasksift.selectors.{module}")
        _loaded = True


def available() -> dict[str, type[Selector]]:
    """Every registered selector by name, sorted."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> type[Selector]:
    methods = available()
    if name in _TRAINING_TIME and name not in methods:
        raise InputError(f"{name!r} prunes while training, it does not select",
                         fix=f"run `tasksift retriever train --task DIR --pruning {_TRAINING_TIME[name]}`")
    if name not in methods:
        raise InputError(f"unknown method {name!r}", fix=f"choose one of: {', '.join(methods)}")
    return methods[name]
