"""HARP's three-level hierarchy over the pool: regions -> parents -> leaves, by recursive k-means (faiss).

docs/methods.md, "HARP", step 1. The paper clusters with approximate nearest neighbours and does not publish how;
our reconstruction (documented as such):

- rows are L2-normalised (the embeddings are compared by cosine everywhere else) and clustered with faiss
  k-means, seeded;
- ``leaf_size`` is the target number of examples per leaf; ``leaves_per_parent`` and ``parents_per_region``
  are the target branching of the two upper levels. The pool gets ``ceil(n / (leaf_size * leaves_per_parent *
  parents_per_region))`` regions; a region of ``m`` rows gets ``ceil(m / (leaf_size * leaves_per_parent))``
  parents; a parent of ``m`` rows gets ``max(1, round(m / leaf_size))`` leaves. Each level splits the rows of
  one node of the level above, so leaves nest in parents and parents in regions;
- k-means leaves are uneven (on the instruction pool with ``leaf_size=500``: 1 to 1,176 rows), and a leaf of a
  few rows is a noisy probe, one of thousands a probe that sees a small part of it. So leaves are balanced
  within their parent: a leaf over ``max_leaf_size`` (default ``2 * leaf_size``) is split again by k-means into
  ``ceil(m / leaf_size)``; then, smallest first, a leaf under ``min_leaf_size`` (default ``leaf_size // 4``)
  joins the sibling whose centroid is nearest its own (a parent's only leaf stays as it is);
- empty k-means clusters are dropped; node numbers are global and ordered (region, parent, leaf).

:meth:`Hierarchy.representatives` chooses the leaves to probe: round ``r`` takes every parent's ``r``-th leaf
nearest to the parent's centroid (parents by decreasing size), until the probe budget is spent. One per parent
is the paper's default; a larger budget gives several per parent, a smaller one skips the smallest parents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tasksift.index.search import normalize_rows
from tasksift.util.errors import InputError


@dataclass
class Hierarchy:
    """Which region, parent and leaf every pool row belongs to, and the centroids of parents and leaves.

    ``leaf_parent[g]`` is leaf ``g``'s parent, ``parent_region[p]`` parent ``p``'s region. Centroids are means
    of the normalised rows.
    """

    region: np.ndarray
    parent: np.ndarray
    leaf: np.ndarray
    leaf_parent: np.ndarray
    parent_region: np.ndarray
    leaf_centroids: np.ndarray
    parent_centroids: np.ndarray

    @property
    def n_leaves(self) -> int:
        return int(len(self.leaf_parent))

    @property
    def n_parents(self) -> int:
        return int(len(self.parent_region))

    @property
    def n_regions(self) -> int:
        return int(self.parent_region.max()) + 1 if len(self.parent_region) else 0

    def leaf_sizes(self) -> np.ndarray:
        return np.bincount(self.leaf, minlength=self.n_leaves)

    def members(self) -> list[np.ndarray]:
        """The pool rows of every leaf, in increasing row order."""
        order = np.argsort(self.leaf, kind="stable")
        return np.split(order, np.cumsum(self.leaf_sizes())[:-1])

    def representatives(self, probes: int | None = None) -> np.ndarray:
        """The leaves to probe (sorted): the leaf nearest each parent's centroid, then the next nearest, ...

        ``probes=None`` means one per parent. Parents are served in decreasing size (ties: lower number).
        """
        n_parents = self.n_parents
        budget = n_parents if probes is None else min(int(probes), self.n_leaves)
        by_parent: list[list[int]] = []
        for p in range(n_parents):
            leaves = np.flatnonzero(self.leaf_parent == p)
            dist = np.linalg.norm(self.leaf_centroids[leaves] - self.parent_centroids[p], axis=1)
            by_parent.append([int(leaves[i]) for i in np.lexsort((leaves, dist))])
        sizes = np.bincount(self.parent, minlength=n_parents)
        parent_order = np.lexsort((np.arange(n_parents), -sizes))
        chosen: list[int] = []
        depth = 0
        while len(chosen) < budget:
            for p in parent_order:
                if depth < len(by_parent[p]) and len(chosen) < budget:
                    chosen.append(by_parent[p][depth])
            depth += 1
        return np.array(sorted(chosen), dtype=np.int64)

    def info(self) -> dict[str, int | float]:
        sizes = self.leaf_sizes()
        return {"regions": self.n_regions, "parents": self.n_parents, "leaves": self.n_leaves,
                "leaf_size_min": int(sizes.min()), "leaf_size_median": float(np.median(sizes)),
                "leaf_size_max": int(sizes.max())}


def kmeans_split(x: np.ndarray, k: int, seed: int, niter: int = 20) -> np.ndarray:
    """Cluster labels ``0..k'-1`` of the rows of ``x`` (``k' <= k``: empty clusters dropped, numbered by first
    appearance in row order)."""
    import faiss

    n = x.shape[0]
    k = max(1, min(int(k), n))
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=int(seed), verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(256, math.ceil(n / k)))
    km.train(x)
    _, assign = km.index.search(x, 1)
    _, labels = np.unique(assign[:, 0], return_inverse=True)
    # renumber by first appearance so the numbering does not depend on faiss's centroid order
    first = {}
    for lab in labels:
        first.setdefault(int(lab), len(first))
    return np.array([first[int(lab)] for lab in labels], dtype=np.int64)


def balance_leaves(x: np.ndarray, labels: np.ndarray, *, leaf_size: int, min_size: int, max_size: int,
                   seed: int) -> np.ndarray:
    """Leaf labels of one parent's rows ``x`` after splitting leaves over ``max_size`` and merging those under
    ``min_size`` (see the module docstring); numbered by first appearance in row order."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    next_label = int(labels.max()) + 1 if len(labels) else 0
    for lab in range(next_label):
        rows = np.flatnonzero(labels == lab)
        if len(rows) > max_size:
            sub = kmeans_split(x[rows], math.ceil(len(rows) / leaf_size), seed + 104729 * (lab + 1))
            moved = sub > 0
            labels[rows[moved]] = next_label + sub[moved] - 1
            next_label += int(sub.max())
    while True:
        present, sizes = np.unique(labels, return_counts=True)
        if len(present) < 2 or sizes.min() >= min_size:
            break
        small = int(present[np.lexsort((present, sizes))[0]])
        centroids = np.stack([x[labels == lab].mean(axis=0) for lab in present])
        others = present != small
        dist = np.linalg.norm(centroids[others] - centroids[present == small][0], axis=1)
        labels[labels == small] = int(present[others][np.lexsort((present[others], dist))[0]])
    first: dict[int, int] = {}
    for lab in labels:
        first.setdefault(int(lab), len(first))
    return np.array([first[int(lab)] for lab in labels], dtype=np.int64)


def build_hierarchy(vectors: np.ndarray, *, leaf_size: int, leaves_per_parent: int = 8,
                    parents_per_region: int = 8, seed: int = 0, min_leaf_size: int | None = None,
                    max_leaf_size: int | None = None) -> Hierarchy:
    """Regions -> parents -> leaves over the rows of ``vectors`` (see the module docstring)."""
    for name, value in (("leaf_size", leaf_size), ("leaves_per_parent", leaves_per_parent),
                        ("parents_per_region", parents_per_region)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise InputError(f"harp: {name} {value!r} must be a positive whole number")
    min_size = max(1, leaf_size // 4) if min_leaf_size is None else min_leaf_size
    max_size = 2 * leaf_size if max_leaf_size is None else max_leaf_size
    for name, value in (("min_leaf_size", min_size), ("max_leaf_size", max_size)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise InputError(f"harp: {name} {value!r} must be a positive whole number")
    if not min_size <= leaf_size <= max_size:
        raise InputError(f"harp: min_leaf_size {min_size}, leaf_size {leaf_size} and max_leaf_size {max_size} "
                         "must be in increasing order", fix="choose min_leaf_size <= leaf_size <= max_leaf_size")
    x = normalize_rows(np.asarray(vectors, dtype=np.float32))
    n = x.shape[0]
    region = kmeans_split(x, math.ceil(n / (leaf_size * leaves_per_parent * parents_per_region)), seed)
    parent = np.empty(n, dtype=np.int64)
    leaf = np.empty(n, dtype=np.int64)
    parent_region: list[int] = []
    leaf_parent: list[int] = []
    for r in range(int(region.max()) + 1):
        rows_r = np.flatnonzero(region == r)
        sub = kmeans_split(x[rows_r], math.ceil(len(rows_r) / (leaf_size * leaves_per_parent)), seed + 1 + r)
        for p_local in range(int(sub.max()) + 1):
            rows_p = rows_r[sub == p_local]
            p = len(parent_region)
            parent_region.append(r)
            parent[rows_p] = p
            k = max(1, round(len(rows_p) / leaf_size))
            leaves = balance_leaves(x[rows_p], kmeans_split(x[rows_p], k, seed + 7919 * (p + 1)),
                                    leaf_size=leaf_size, min_size=min_size, max_size=max_size,
                                    seed=seed + 7919 * (p + 1))
            for g_local in range(int(leaves.max()) + 1):
                leaf[rows_p[leaves == g_local]] = len(leaf_parent)
                leaf_parent.append(p)
    leaf_parent_arr = np.array(leaf_parent, dtype=np.int64)
    parent_region_arr = np.array(parent_region, dtype=np.int64)
    return Hierarchy(region=region, parent=parent, leaf=leaf, leaf_parent=leaf_parent_arr,
                     parent_region=parent_region_arr, leaf_centroids=_means(x, leaf, len(leaf_parent_arr)),
                     parent_centroids=_means(x, parent, len(parent_region_arr)))


def _means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, x)
    return (sums / np.bincount(labels, minlength=k)[:, None]).astype(np.float32)
