"""A selection's reasons in words: one small function per method turns the JSON reason a selector recorded for
an example into a sentence, and any other method (or a reason of an unexpected shape) gets a generic
``key value`` rendering."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}g}"


def _target(reason: Mapping[str, Any]) -> str:
    return f"target #{reason['target']}" if "target" in reason else "the target"


def knn(reason: Mapping[str, Any]) -> str:
    how = (f"similarity {_num(reason['similarity'])}" if "similarity" in reason
           else f"distance {_num(reason['distance'])}")
    return f"a nearest neighbour of {_target(reason)} ({how}), taken in round {_num(reason.get('round', '?'))}"


def tsds(reason: Mapping[str, Any]) -> str:
    return (f"{_target(reason)} sent it the most probability mass: distance {_num(reason['distance'])}, "
            f"local density {_num(reason['density'])} (dense regions are damped), "
            f"sampling probability {_num(reason['probability'])}")


def less(reason: Mapping[str, Any]) -> str:
    text = f"its gradient aligns with {_target(reason)}'s: cosine {_num(reason['cosine'])}"
    tasks = reason.get("tasks")
    if isinstance(tasks, Mapping) and tasks:
        text += "; per task " + ", ".join(f"{k} {_num(v)}" for k, v in tasks.items())
    return text


def spice(reason: Mapping[str, Any]) -> str:
    return (f"information gain {_num(reason['gain'])} minus gradient conflict {_num(reason['conflict'])} "
            f"(cosine {_num(reason['cosine'])} with the chosen set), picked at step {_num(reason['step'])} "
            f"in window {_num(reason['window'])}")


def harp(reason: Mapping[str, Any]) -> str:
    effect = reason.get("effect")
    effects = (", ".join(f"{k} {_num(v)}" for k, v in effect.items()) if isinstance(effect, Mapping)
               else _num(effect))
    how = "measured" if reason.get("measured") else f"estimated ({reason.get('estimate', '?')})"
    where = "in the kept prefix" if reason.get("in_prefix") else "filling the budget"
    return (f"leaf {_num(reason['leaf'])} (rank {_num(reason.get('leaf_rank', '?'))} by effect, {how}: "
            f"{effects}), region {_num(reason.get('region', '?'))}, {where}")


def dsir(reason: Mapping[str, Any]) -> str:
    return (f"its hashed n-grams look like the target's: log importance weight {_num(reason['log_importance'])} "
            f"over {_num(reason['ngrams'])} n-grams")


def random(reason: Mapping[str, Any]) -> str:
    return f"random draw #{_num(reason['draw'])}"


def opera(reason: Mapping[str, Any]) -> str:
    kept, total = reason.get("query_positives_kept", "?"), reason.get("query_positives", "?")
    return (f"query-document cosine {_num(reason['cosine'])}; its query {reason.get('query', '?')!r} keeps "
            f"{_num(kept)} of {_num(total)} positives")


def generic(reason: Any) -> str:
    if not isinstance(reason, Mapping):
        return str(reason)
    if not reason:
        return "no reason recorded"
    return ", ".join(f"{k} {_num(v)}" for k, v in reason.items())


DESCRIBE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "knn": knn, "tsds": tsds, "less": less, "spice": spice, "fishersft": spice, "harp-c": harp, "harp-e": harp,
    "harp-exhaustive": harp, "dsir": dsir, "random": random, "opera-sp": opera,
}


def describe(method: str | None, reason: Any) -> str:
    """The reason in words for ``method``; the generic rendering when the method is unknown or the reason lacks
    a field its sentence needs."""
    words = DESCRIBE.get(str(method))
    if words is None or not isinstance(reason, Mapping):
        return generic(reason)
    try:
        return words(reason)
    except (KeyError, TypeError, ValueError):
        return generic(reason)
