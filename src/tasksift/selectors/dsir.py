"""DSIR: data selection with importance resampling over hashed n-gram features (Xie et al., 2023).

As in the reference package (``data-selection``, ``HashedNgramDSIR``):

- text is lower-cased and split by the word-punct rule (runs of word characters, runs of other non-space
  characters), unigrams and bigrams (joined by a space) are hashed into ``num_buckets`` buckets by
  ``sha256(ngram) mod num_buckets``. The rule runs on the ``regex`` engine, as nltk's ``WordPunctTokenizer``
  does (nltk 3.10.3 on): its word characters are Unicode's (letters, combining marks, decimal digits, connector
  punctuation), where the standard ``re`` engine's stop at letters and digits, so a Tamil or Hindi word with a
  vowel sign, or a decomposed accent, would split into several tokens under ``re``;
- two bag-of-ngrams models, target and pool: bucket counts over all their texts, normalised;
- log importance weight of an example: ``sum_b count_b(x) * (log(p_target[b] + 1e-8) - log(p_pool[b] + 1e-8))``;
- ``budget`` examples by Gumbel top-k (sampling without replacement proportional to the importance weights),
  or plain top-k with ``sampling="topk"``.

Difference from the reference: its default drops examples shorter than 100 tokens (``min_example_length``);
our pools are often short instruction examples, so ``min_length`` defaults to 1 (only examples without a single
token are dropped: their weight, an empty sum, would be 0 and beat every real example).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import regex

from tasksift.records import TextColumn
from tasksift.selectors.base import Context, Selection, Selector
from tasksift.selectors.registry import register
from tasksift.util.errors import InputError
from tasksift.util.params import Interval, Options

#: nltk's WordPunctTokenizer pattern and flags, on the engine nltk compiles it with
_WORDPUNCT = regex.compile(r"\w+|[^\w\s]+", regex.UNICODE | regex.MULTILINE | regex.DOTALL)
SMOOTHING = 1e-8


def tokenize(text: str) -> list[str]:
    """Lower-cased word-punct tokens, as nltk's ``WordPunctTokenizer`` gives them."""
    return _WORDPUNCT.findall(text.lower())


@lru_cache(maxsize=1 << 20)
def _bucket(ngram: str, num_buckets: int) -> int:
    return int(hashlib.sha256(ngram.encode("utf-8")).hexdigest(), 16) % num_buckets


def ngram_buckets(text: str, num_buckets: int = 10_000, n: int = 2) -> np.ndarray:
    """Bucket of every unigram, bigram, ..., n-gram of ``text`` (one entry per occurrence)."""
    words = tokenize(text)
    grams = list(words)
    for size in range(2, n + 1):
        grams.extend(" ".join(words[i:i + size]) for i in range(len(words) - size + 1))
    return np.fromiter((_bucket(g, num_buckets) for g in grams), dtype=np.int64, count=len(grams))


def hashed_counts(texts: Sequence[str], num_buckets: int = 10_000, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Per-text hashed n-gram counts in CSR form: ``(offsets, buckets)``; text ``i`` has
    ``buckets[offsets[i]:offsets[i+1]]`` (one entry per occurrence)."""
    parts = [ngram_buckets(t, num_buckets, n) for t in texts]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    buckets = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return offsets, buckets


def bag_of_ngrams(buckets: np.ndarray, num_buckets: int) -> np.ndarray:
    """Normalised bucket frequencies (all zero for an empty corpus)."""
    counts = np.bincount(buckets, minlength=num_buckets).astype(np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


#: pool texts hashed at a time when the pool is read from its file (:class:`tasksift.records.TextColumn`)
STREAM_ROWS = 8192


def log_importance_weights(pool_texts: Sequence[str], target_texts: Sequence[str], num_buckets: int = 10_000,
                           n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(log importance weight per pool text, n-gram count per pool text)``.

    A pool held as a list is hashed once and its n-grams kept. A pool read from its file (a
    :class:`tasksift.records.TextColumn`) is read twice, ``STREAM_ROWS`` texts at a time: once for the pool's
    bucket counts, once for each text's weight, so memory holds two numbers per text, not its n-grams. The
    numbers are the same: integer counts add up exactly, and each text's sum runs over its own n-grams in order.
    """
    _, target_buckets = hashed_counts(list(target_texts), num_buckets, n)
    streamed = isinstance(pool_texts, TextColumn)
    parts = [(0, *hashed_counts(pool_texts, num_buckets, n))] if not streamed else None
    pool_counts = np.zeros(num_buckets, dtype=np.int64)
    for _, _, buckets in parts if parts is not None else _pool_chunks(pool_texts, num_buckets, n):
        pool_counts += np.bincount(buckets, minlength=num_buckets)
    total = pool_counts.sum()
    pool_model = pool_counts / total if total > 0 else pool_counts.astype(np.float64)
    log_diff = np.log(bag_of_ngrams(target_buckets, num_buckets) + SMOOTHING) - np.log(pool_model + SMOOTHING)
    sums, lengths = np.zeros(len(pool_texts)), np.zeros(len(pool_texts), dtype=np.int64)
    for lo, offsets, buckets in parts if parts is not None else _pool_chunks(pool_texts, num_buckets, n):
        counts = np.diff(offsets)
        owner = np.repeat(np.arange(len(counts)), counts)
        sums[lo:lo + len(counts)] = np.bincount(owner, weights=log_diff[buckets], minlength=len(counts))
        lengths[lo:lo + len(counts)] = counts
    return sums, lengths


def _pool_chunks(texts: Sequence[str], num_buckets: int, n: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(first row, offsets, buckets)`` of ``STREAM_ROWS`` texts at a time (:func:`hashed_counts`)."""
    for lo in range(0, len(texts), STREAM_ROWS):
        yield (lo, *hashed_counts(texts[lo:lo + STREAM_ROWS], num_buckets, n))


@register
class DSIRSelector(Selector):
    """DSIR with hashed unigram+bigram features; see the module docstring for the formulas.

    Score: the log importance weight. Reason: the log importance weight and the example's n-gram count.
    """

    name = "dsir"
    needs = "texts"
    summary = "importance resampling on hashed n-gram models of target vs pool"
    parameters = {"num_buckets": [Interval(int, 1)], "ngrams": [Interval(int, 1)], "min_length": [Interval(int, 0)],
                  "sampling": [Options("gumbel", "topk")]}

    def __init__(self, budget: int, *, seed: int = 0, num_buckets: int = 10_000, ngrams: int = 2,
                 min_length: int = 1, sampling: str = "gumbel") -> None:
        super().__init__(budget, seed=seed)
        self._keep(locals())

    def _select(self, pool: Any, target: Any, ctx: Context) -> Selection:
        logw, lengths = log_importance_weights(pool, target, int(self.num_buckets), int(self.ngrams))
        self.log_importance_weights_ = logw
        # The reference counts an example's length as its number of unigrams: (grams + n(n-1)/2) // n.
        tokens = (lengths + self.ngrams * (self.ngrams - 1) // 2) // self.ngrams
        eligible = np.flatnonzero(tokens >= self.min_length)
        if len(eligible) < self.budget:
            raise InputError(f"dsir: only {len(eligible)} pool examples have at least {self.min_length} tokens, "
                             f"fewer than the budget {self.budget}", fix="lower min_length or the budget")
        keys = logw[eligible].copy()
        if self.sampling == "gumbel":
            keys += np.random.default_rng(self.seed).gumbel(size=len(keys))
        order = np.argsort(-keys, kind="stable")[: self.budget]
        rows = eligible[order]
        return Selection(
            indices=rows,
            weights=np.ones(len(rows)),
            scores=logw[rows],
            reasons=[{"log_importance": float(logw[r]), "ngrams": int(lengths[r])} for r in rows],
        )
