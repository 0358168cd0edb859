"""The TSDS benchmark's data: two seeded generators of unit vectors with near-copies (see ``tsds.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DIM = 384


@dataclass(frozen=True)
class Geometry:
    """Topic and subtopic centres; rows are drawn around them (see the module docstring)."""

    topics: int = 100
    subtopics: int = 20
    topic_spread: float = 0.7
    row_spread: float = 0.5
    dup_fraction: float = 0.02
    seed: int = 0

    def centres(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        topic = _unit(rng.standard_normal((self.topics, DIM), dtype=np.float32))
        noise = rng.standard_normal((self.topics * self.subtopics, DIM), dtype=np.float32) / np.sqrt(DIM)
        return _unit(np.repeat(topic, self.subtopics, axis=0) + self.topic_spread * noise)

    def pool(self, n: int, chunk: int = 100_000) -> np.ndarray:
        """``n`` rows, written chunk by chunk into one float32 matrix (peak memory: the matrix and a chunk)."""
        centres = self.centres()
        out = np.empty((n, DIM), dtype=np.float32)
        for lo in range(0, n, chunk):
            rng = np.random.default_rng([self.seed, 1, lo])
            k = min(chunk, n - lo)
            rows = self._around(centres[rng.integers(0, len(centres), k)], rng)
            copies = int(k * self.dup_fraction)
            if copies:
                sizes = rng.integers(1, 10, copies)  # copies per source row: groups of 2 to 10
                sizes = sizes[:int(np.searchsorted(np.cumsum(sizes), copies)) + 1]
                sizes[-1] -= int(sizes.sum()) - copies
                order = rng.permutation(k)
                source = np.repeat(order[:len(sizes)], sizes)
                copy = order[len(sizes):len(sizes) + copies]
                noise = rng.standard_normal((copies, DIM), dtype=np.float32) / np.sqrt(DIM)
                rows[copy] = _unit(rows[source] + 0.05 * noise)
            out[lo:lo + k] = rows
        return out

    def targets(self, m: int, topics: int) -> np.ndarray:
        centres = self.centres()
        rng = np.random.default_rng([self.seed, 2])
        chosen = rng.choice(self.topics, topics, replace=False)
        sub = chosen[rng.integers(0, topics, m)] * self.subtopics + rng.integers(0, self.subtopics, m)
        return self._around(centres[sub], rng)

    def _around(self, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal(centres.shape, dtype=np.float32) / np.sqrt(DIM)
        return _unit(centres + self.row_spread * noise)


@dataclass(frozen=True)
class Topical:
    """Topics of Zipf-distributed sizes, each row its topic's centre plus a spread along ``rank`` directions of
    the topic (variances decaying as ``i^-2 decay``) plus isotropic ``noise``, normalised; a share
    ``copy_share`` of the rows are near-copies of another row (see the module docstring)."""

    topics: int = 300
    zipf: float = 1.0
    rank: int = 24
    spread: float = 1.0
    decay: float = 0.7
    noise: float = 1.2
    copy_share: float = 0.01
    copy_noise: float = 0.04
    seed: int = 0

    def _topics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 100])
        centres = _unit(rng.standard_normal((self.topics, DIM), dtype=np.float32))
        bases = np.linalg.qr(rng.standard_normal((self.topics, DIM, self.rank)))[0].astype(np.float32)
        weight = 1.0 / np.arange(1, self.topics + 1) ** self.zipf
        scale = np.arange(1, self.rank + 1) ** -self.decay
        scale = (self.spread * scale / np.sqrt((scale**2).sum())).astype(np.float32)
        return centres, bases, weight / weight.sum(), scale

    def _rows(self, topic: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        centres, bases, _, scale = self._topics()
        spread = rng.standard_normal((len(topic), self.rank), dtype=np.float32) * scale
        rows = centres[topic] + self.noise * rng.standard_normal((len(topic), DIM), dtype=np.float32) / np.sqrt(DIM)
        order = np.argsort(topic, kind="stable")
        bounds = np.flatnonzero(np.diff(topic[order])) + 1
        for group in np.split(order, bounds):
            rows[group] += spread[group] @ bases[topic[group[0]]].T
        return _unit(rows)

    def pool(self, n: int, chunk: int = 50_000) -> np.ndarray:
        weight = self._topics()[2]
        out = np.empty((n, DIM), dtype=np.float32)
        for lo in range(0, n, chunk):
            rng = np.random.default_rng([self.seed, 1, lo])
            k = min(chunk, n - lo)
            rows = self._rows(rng.choice(self.topics, k, p=weight), rng)
            copies = int(k * self.copy_share)
            source, copy = rng.integers(0, k, copies), rng.choice(k, copies, replace=False)
            noise = rng.standard_normal((copies, DIM), dtype=np.float32) / np.sqrt(DIM)
            rows[copy] = _unit(rows[source] + self.copy_noise * noise)
            out[lo:lo + k] = rows
        return out

    def targets(self, m: int, topics: int) -> np.ndarray:
        """Draws from ``topics`` topics outside the largest tenth."""
        rng = np.random.default_rng([self.seed, 2])
        chosen = rng.choice(np.arange(self.topics // 10, self.topics), topics, replace=False)
        return self._rows(chosen[rng.integers(0, topics, m)], rng)


GENERATORS = ("geometry", "topical")


def generator(name: str, **settings: Any) -> Geometry | Topical:
    return Geometry(**settings) if name == "geometry" else Topical(**settings)


def _unit(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)
