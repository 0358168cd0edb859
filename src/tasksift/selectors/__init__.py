"""Selectors, registered by name (:mod:`tasksift.selectors.registry`); the contract is in
:mod:`tasksift.selectors.base`."""

from tasksift.selectors.base import Context, Inputs, Selection, Selector
from tasksift.selectors.registry import available, get, register

__all__ = ["Context", "Inputs", "Selection", "Selector", "available", "get", "register"]
