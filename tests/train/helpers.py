"""Tiny hand-written task directories and a tiny random Llama, shared by the train and eval tests."""

from __future__ import annotations

import json
from pathlib import Path

COLOURS = ["red", "blue", "green", "yellow"]
FRUITS = {"apple": "red", "banana": "yellow", "lime": "green", "plum": "blue", "cherry": "red",
          "lemon": "yellow", "kiwi": "green", "grape": "blue"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def instruction_task(root: Path, *, pool_in_dir: bool = False) -> Path:
    """A colour-of-the-fruit task written by hand: pool outside the task directory (``../pool.jsonl``)."""
    task = root / "fruit-task"
    task.mkdir(parents=True)
    pool = [{"instruction": "What colour is the fruit?", "input": fruit, "output": colour, "source": "hand",
             "task": "fruit"} for fruit, colour in FRUITS.items()]
    pool += [{"instruction": "Name the animal.", "input": f"It says {s}.", "output": a, "source": "hand",
              "task": "animal"} for s, a in (("moo", "cow"), ("woof", "dog"), ("meow", "cat"), ("baa", "sheep"))]
    pool_path = task / "pool.jsonl" if pool_in_dir else root / "pool.jsonl"
    write_jsonl(pool_path, pool)
    test = [{"instruction": "What colour is the fruit?", "input": fruit, "output": colour, "options": COLOURS,
             "source": "hand", "task": "fruit"} for fruit, colour in list(FRUITS.items())[:6]]
    write_jsonl(task / "test.jsonl", test)
    write_jsonl(task / "target.jsonl", pool[:2])
    spec = {"name": "fruit", "kind": "instruction", "metric": "accuracy",
            "pool": "pool.jsonl" if pool_in_dir else "../pool.jsonl",
            "text_template": "{instruction}\n{input}\n{output}", "prompt_template": "{instruction}\n{input}\n",
            "answer_field": "output", "options_field": "options"}
    (task / "task.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return task


def classification_task(root: Path) -> Path:
    task = root / "sentiment"
    task.mkdir(parents=True)
    good = ["a wonderful film", "I loved every minute", "great acting and a great story", "a joy to watch",
            "brilliant and moving", "the best film this year", "funny, warm and clever", "superb from start to end"]
    bad = ["a dreadful film", "I hated every minute", "poor acting and a dull story", "a chore to watch",
           "boring and lifeless", "the worst film this year", "flat, cold and stupid", "awful from start to end"]
    pool = [{"text": t, "label": "pos"} for t in good] + [{"text": t, "label": "neg"} for t in bad]
    write_jsonl(task / "pool.jsonl", pool)
    write_jsonl(task / "test.jsonl", [{"text": "a lovely, wonderful story", "label": "pos"},
                                      {"text": "dull and dreadful", "label": "neg"},
                                      {"text": "great fun", "label": "pos"},
                                      {"text": "the worst, most boring film", "label": "neg"}])
    spec = {"name": "sentiment", "kind": "classification", "metric": "accuracy", "pool": "pool.jsonl",
            "text_field": "text", "label_field": "label", "labels": ["neg", "pos"]}
    (task / "task.json").write_text(json.dumps(spec), encoding="utf-8")
    return task


def retrieval_task(root: Path) -> Path:
    task = root / "glossary"
    task.mkdir(parents=True)
    terms = {"cpu": "the processor that executes the instructions of a program",
             "ram": "memory that holds running programs and their data",
             "disk": "storage that keeps files when the power is off",
             "compiler": "a program that translates source code into machine code",
             "kernel": "the core of an operating system that manages hardware",
             "router": "a device that forwards packets between networks",
             "cache": "a small fast memory that keeps recently used data",
             "firewall": "a system that blocks unwanted network traffic",
             "pixel": "the smallest element of a picture on a screen",
             "modem": "a device that turns digital data into signals on a line"}
    corpus = [{"doc_id": f"d{i}", "document": doc} for i, doc in enumerate(terms.values())]
    corpus += [{"doc_id": "x1", "document": "a recipe for apple pie with cinnamon"},
               {"doc_id": "x2", "document": "the rules of football and how to score a goal"}]
    write_jsonl(task / "corpus.jsonl", corpus)
    pool = [{"query_id": f"q{i}", "query": f"what is a {term}", "doc_id": f"d{i}", "document": doc}
            for i, (term, doc) in enumerate(terms.items())]
    write_jsonl(task / "pool.jsonl", pool)
    test = [{"query_id": "t0", "query": "which part runs program instructions", "relevant": ["d0"]},
            {"query_id": "t1", "query": "where are files stored when the computer is off", "relevant": ["d2"]},
            {"query_id": "t2", "query": "network devices", "relevant": ["d5", "d9", "d7"]}]
    write_jsonl(task / "test.jsonl", test)
    spec = {"name": "glossary", "kind": "retrieval", "metric": "ndcg@10", "pool": "pool.jsonl",
            "query_field": "query", "doc_field": "document"}
    (task / "task.json").write_text(json.dumps(spec), encoding="utf-8")
    return task


def tiny_llama(path: Path, *, seed: int = 0) -> Path:
    """A randomly initialised 2-layer Llama with a word-level tokenizer over the tiny tasks' words."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = set()
    for text in ["What colour is the fruit?", "Name the animal.", "It says moo woof meow baa .",
                 "cow dog cat sheep", *FRUITS, *COLOURS]:
        words.update(text.replace("?", " ?").replace(".", " .").split())
    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2}
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, pad_token_id=0, eos_token_id=2, bos_token_id=None)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(str(path))
    fast.save_pretrained(str(path))
    return path
