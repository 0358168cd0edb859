import json
import math
import re
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasksift.eval.taskgen.sources import bbc_news
from tasksift.selectors.dsir import DSIRSelector, log_importance_weights, ngram_buckets, tokenize


def test_tokenize_is_lowercase_wordpunct() -> None:
    assert tokenize("Hello, World! It's 3.5") == ["hello", ",", "world", "!", "it", "'", "s", "3", ".", "5"]


def test_buckets_are_sha256_mod_buckets() -> None:
    import hashlib

    b = ngram_buckets("A cat", num_buckets=97)
    expected = [int(hashlib.sha256(g.encode()).hexdigest(), 16) % 97 for g in ["a", "cat", "a cat"]]
    assert b.tolist() == expected


def _grams(text: str) -> list[str]:
    w = text.lower().split()
    return w + [f"{a} {b}" for a, b in zip(w, w[1:], strict=False)]


def test_weights_equal_hand_computation_on_toy_corpus() -> None:
    pool = ["the cat sat", "stocks fell", "the cat and the dog"]
    target = ["the cat", "a dog"]
    # Hand computation over n-gram strings: these n-grams fall in distinct buckets of the default 10,000
    # (checked below), so bucket frequencies are n-gram frequencies.
    grams = sorted({g for t in pool + target for g in _grams(t)})
    assert len({int(ngram_buckets(g.split()[0])[0]) if " " not in g else int(ngram_buckets(g)[-1])
                for g in grams}) == len(grams)
    p_counts = Counter(g for t in pool for g in _grams(t))
    t_counts = Counter(g for t in target for g in _grams(t))
    p_total, t_total = sum(p_counts.values()), sum(t_counts.values())

    def log_ratio(g: str) -> float:
        return math.log(t_counts[g] / t_total + 1e-8) - math.log(p_counts[g] / p_total + 1e-8)

    expected = [sum(log_ratio(g) for g in _grams(t)) for t in pool]
    got, lengths = log_importance_weights(pool, target, num_buckets=10_000)
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    assert lengths.tolist() == [5, 3, 9]
    # e.g. "stocks fell": three n-grams the target never has.
    assert expected[1] == pytest.approx(3 * math.log(1e-8) - 2 * math.log(1 / 17 + 1e-8) - math.log(1 / 17 + 1e-8))


def test_topk_takes_the_highest_weights_and_gumbel_is_seeded() -> None:
    pool = ["the cat sat", "stocks fell", "the cat and the dog", "cat", "market news today"]
    target = ["the cat", "a dog", "cat cat"]
    logw, _ = log_importance_weights(pool, target)
    sel = DSIRSelector(2, sampling="topk").fit(pool, target).selection_
    assert sel.indices.tolist() == np.argsort(-logw)[:2].tolist()
    assert sel.scores.tolist() == pytest.approx(logw[sel.indices].tolist())
    g1 = DSIRSelector(3, seed=4).fit(pool, target).selection_
    g2 = DSIRSelector(3, seed=4).fit(pool, target).selection_
    keys = logw + np.random.default_rng(4).gumbel(size=len(pool))
    assert g1.indices.tolist() == g2.indices.tolist() == np.argsort(-keys)[:3].tolist()


def test_examples_without_tokens_are_not_selected() -> None:
    pool = ["", "  ", "the cat", "dogs bark"]
    sel = DSIRSelector(2, sampling="topk").fit(pool, ["the cat"]).selection_
    assert sorted(sel.indices.tolist()) == [2, 3]


def test_tokenize_keeps_unicode_words_whole() -> None:
    """Word characters are Unicode's (the ``regex`` engine nltk tokenizes with): a Tamil word with its vowel
    signs, a decomposed accent and a connector stay one token; a superscript digit is punctuation."""
    assert tokenize("வணக்கம் நண்பா") == ["வணக்கம்", "நண்பா"]
    assert tokenize("Cafe\u0301 snake_case") == ["cafe\u0301", "snake_case"]
    assert tokenize("x² + ½") == ["x", "²", "+", "½"]


def nltk_wordpunct() -> Any:
    """nltk's WordPunctTokenizer.tokenize; skip where nltk is missing or older than 3.10.3, which compiled the
    pattern with ``re`` (the reference package's weights then differ on scripts with combining marks)."""
    tokenizer = pytest.importorskip("nltk.tokenize").WordPunctTokenizer()
    tokenizer.tokenize("")
    if isinstance(tokenizer._regexp, re.Pattern):
        pytest.skip("nltk older than 3.10.3 tokenizes with re, not regex")
    return tokenizer.tokenize


def test_tokenize_equals_nltk_wordpunct_on_many_scripts() -> None:
    nltk_tokenize = nltk_wordpunct()
    texts = ["Hello, World! It's 3.5", "नमस्ते, आप कैसे हैं?", "Привет — как дела?", "Ünïcödé\u0301 x²½ ﬁne",
             "tab\there\x1cfile\x1fsep", "日本語のテキスト。", "emoji 🙂🙂 and ‘quotes’"]
    for text in texts:
        assert tokenize(text) == nltk_tokenize(text.lower()), text


def _chatterbot_texts(english: bool) -> list[str]:
    """Every conversation of the chatterbot corpus, English or every other language, one text each."""
    import yaml

    root = Path(str(resources.files("chatterbot_corpus"))) / "data"
    texts = []
    for path in sorted(root.glob("*/*.yml")):
        if (path.parent.name == "english") != english:
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        texts += [" ".join(str(turn) for turn in conv) for conv in doc.get("conversations") or []]
    return texts


def _mixed_texts(n_pool: int) -> tuple[list[str], list[str]]:
    """A pool of real text, 40% BBC News articles, 40% English and 20% other-language chatterbot conversations
    (Tamil, Hindi, Russian, Chinese, ...), and a target of 50 BBC business articles outside the pool."""
    articles = bbc_news()
    bbc = [f"{a['headline']}\n{a['body']}" for a in articles]
    business = [i for i, a in enumerate(articles) if a["topic"] == "business"]
    rng = np.random.default_rng(0)
    target_rows = set(rng.choice(business, size=50, replace=False).tolist())
    rest = [t for i, t in enumerate(bbc) if i not in target_rows]
    english, other = _chatterbot_texts(True), _chatterbot_texts(False)
    n_bbc, n_other = int(n_pool * 0.4), int(n_pool * 0.2)
    pool = [rest[i] for i in rng.choice(len(rest), n_bbc, replace=False)]
    pool += [english[i] for i in rng.choice(len(english), n_pool - n_bbc - n_other, replace=False)]
    pool += [other[i] for i in rng.choice(len(other), n_other, replace=False)]
    return pool, [bbc[i] for i in sorted(target_rows)]


def _package_weights(pool: list[str], target: list[str], tmp_path: Path) -> np.ndarray:
    """Log importance weights from ``data-selection``'s HashedNgramDSIR (10,000 buckets, bigrams, wordpunct,
    the pool model fitted on all its tokens), in pool order."""
    from data_selection import HashedNgramDSIR

    for name, texts in (("pool", pool), ("target", target)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts),
                                                encoding="utf-8")
    dsir = HashedNgramDSIR([str(tmp_path / "pool.jsonl")], [str(tmp_path / "target.jsonl")],
                           cache_dir=str(tmp_path / "cache"), num_proc=1, ngrams=2, num_buckets=10_000,
                           tokenizer="wordpunct", min_example_length=0)
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    return np.load(tmp_path / "cache" / "log_importance_weights" / "0.npy")


@pytest.mark.parametrize("n_pool", [200, pytest.param(2000, marks=pytest.mark.slow)])
def test_weights_equal_the_data_selection_package_on_real_text(n_pool: int, tmp_path: Path) -> None:
    pytest.importorskip("data_selection")
    nltk_wordpunct()
    pool, target = _mixed_texts(n_pool)
    expected = _package_weights(pool, target, tmp_path)
    got, lengths = log_importance_weights(pool, target, num_buckets=10_000, n=2)
    assert len(got) == n_pool and np.all(lengths > 0)
    # The same n-gram counts summed in another order: equal to rounding (the weights reach thousands).
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
    sel = DSIRSelector(20, sampling="topk").fit(pool, target).selection_
    assert sel.indices.tolist() == np.argsort(-expected, kind="stable")[:20].tolist()


def test_a_pool_read_from_its_file_gives_the_same_weights_chunk_by_chunk(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tasksift.records import TextColumn, load_records
    from tasksift.selectors import dsir

    texts = [f"{a['headline']} {a['body'][:400]}" for a in bbc_news()[::40]][:60] + ["", "one"]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    column = load_records(path, stream=True).texts
    assert isinstance(column, TextColumn)
    monkeypatch.setattr(dsir, "STREAM_ROWS", 7)  # several chunks, the last one short
    target = texts[:5]
    streamed = log_importance_weights(column, target, 500, 2)
    whole = log_importance_weights(texts, target, 500, 2)
    assert np.array_equal(streamed[0], whole[0]) and np.array_equal(streamed[1], whole[1])
    rows = DSIRSelector(10, num_buckets=500).fit(column, target).selection_.indices
    assert rows.tolist() == DSIRSelector(10, num_buckets=500).fit(texts, target).selection_.indices.tolist()
