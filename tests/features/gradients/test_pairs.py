"""Prompt / response pairs: SmolLM2's gradient rows are the loss of the response only, the prompt masked, as a
per-example loop builds it by hand; the pair view of records; the default proxy of the gradient selectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tasksift.features.gradients.pairs import PAIR_SEPARATOR, join_pairs, split_pair
from tasksift.features.gradients.proxy import load_proxy
from tasksift.features.gradients.recipe import DEFAULT_GRADIENT_MODEL, gradient_model, gradient_texts
from tasksift.records import load_records
from tasksift.records.pairs import pair_views, response_split
from tasksift.util.errors import InputError
from tests.features.gradients.helpers import LLAMA_TEXTS, max_relative_error, randomise_lora_b

PROMPTS = ["Classify the sentiment of this review.\nA warm, funny film.\n", "Define the word.\nlantern\n",
           "Which section of a fortune-cookie collection does this quotation come from?\nEat dessert first.\n"]
RESPONSES = ["positive", "a lamp with a transparent case protecting the flame", "food"]


@pytest.fixture(scope="module")
def smollm2():
    proxy = load_proxy("smollm2", max_length=48)
    randomise_lora_b(proxy, 0.02)
    return proxy


def _loop_gradient(proxy, prompt: str, response: str, max_length: int) -> torch.Tensor:
    """One pair by hand: the chat template's user turn with its generation prompt, the response and the end
    token, the prompt cut from its start when too long; the model's own loss with the prompt labelled -100."""
    tok = proxy.tokenizer
    chat = tok.apply_chat_template([{"role": "user", "content": prompt.strip()}], tokenize=False,
                                   add_generation_prompt=True)
    p_ids = tok(chat, add_special_tokens=False)["input_ids"]
    a_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    if len(p_ids) + len(a_ids) > max_length:
        a_ids = a_ids[:max(max_length - len(p_ids), max_length // 2)]
        p_ids = p_ids[len(p_ids) - (max_length - len(a_ids)):]
    ids = torch.tensor([p_ids + a_ids])
    labels = ids.clone()
    labels[0, :len(p_ids)] = -100
    proxy.module.zero_grad(set_to_none=True)
    proxy.module(input_ids=ids, labels=labels).loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in proxy.trainable_parameters()])


def test_smollm2_pair_gradients_equal_a_per_example_loop_with_the_prompt_masked(smollm2) -> None:
    texts = join_pairs(PROMPTS, RESPONSES)
    batched = smollm2.gradients(texts)
    loop = torch.stack([_loop_gradient(smollm2, p, r, 48) for p, r in zip(PROMPTS, RESPONSES, strict=True)])
    assert max_relative_error(batched, loop) <= 1e-4
    # the third pair is longer than 48 tokens: it was cut, its response kept
    assert len(smollm2.batch(texts[2:]).input_ids[0]) == 48
    # the prompt is masked: the whole-text gradient of the same pair is another vector
    whole = smollm2.gradients([p + r for p, r in zip(PROMPTS, RESPONSES, strict=True)])
    assert float((whole - batched).norm(dim=1).min()) > 0.1 * float(batched.norm(dim=1).min())


def test_pairs_and_whole_texts_mix_in_one_batch(llama_dir: Path) -> None:
    proxy = load_proxy(llama_dir)
    randomise_lora_b(proxy, 0.1)
    pairs = join_pairs(["What colour is the fruit ?", "It says moo ."], ["apple red", "cow"])
    mixed = proxy.gradients([pairs[0], LLAMA_TEXTS[1], pairs[1]])
    alone = torch.cat([proxy.gradients([pairs[0]]), proxy.gradients([LLAMA_TEXTS[1]]), proxy.gradients([pairs[1]])])
    assert max_relative_error(mixed, alone) <= 1e-4
    batch = proxy.batch([pairs[1]])
    n_answer = int((batch.labels != -100).sum())
    assert n_answer == len(proxy.tokenizer("cow", add_special_tokens=False)["input_ids"]) + 1  # + the end token


def test_join_and_split_pairs() -> None:
    joined = join_pairs(["a\n", ""], ["b", "c"])
    assert joined == ["a\n" + PAIR_SEPARATOR + "b", PAIR_SEPARATOR + "c"]
    assert [split_pair(t) for t in joined] == [("a\n", "b"), ("", "c")]
    assert split_pair("whole text") is None
    with pytest.raises(InputError, match="row 1 holds the control character U\\+001E"):
        join_pairs(["a", "b" + PAIR_SEPARATOR], ["x", "y"])


@pytest.mark.parametrize(("rule", "split"), [
    ("template:{instruction}\\n{input}\\n{output}", ("{instruction}\n{input}\n", "output")),
    ("template:Q: {q} A: {a}", ("Q: {q} A: ", "a")),
    ("template:{{literal}} {q}: {a}", ("{{literal}} {q}: ", "a")),
    ("template:{instruction}\n{output}.", None),  # text after the last field
    ("template:{q}{a:>5}", None),  # a format spec on the response
    ("template:{a}", None),  # no prompt field
    ("template:{q}{meta[x]}", None),  # an index, not a plain field
    ("field:text", None),
    ("chat:messages", None),
])
def test_response_split_of_text_rules(rule: str, split: tuple[str, str] | None) -> None:
    assert response_split(rule) == split


def test_pair_views_and_gradient_texts_of_records(tmp_path: Path) -> None:
    rows = [{"instruction": "Say it.", "input": "x", "output": "y"},
            {"instruction": "Again.", "input": "", "output": 3}]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    records = load_records(path, template="{instruction}\\n{input}\\n{output}")
    assert pair_views(records) == (["Say it.\nx\n", "Again.\n\n"], ["y", "3"])
    pool, target, loss = gradient_texts(records, records, None)
    assert loss == "response" and pool == target == join_pairs(["Say it.\nx\n", "Again.\n\n"], ["y", "3"])
    # the cheap encoder proxy reads the text view; so does a causal LM when the target has no split
    assert gradient_texts(records, None, "minilm") == (records.texts, None, "text")
    plain = load_records(path, text_field="instruction")
    assert gradient_texts(records, plain, None) == (records.texts, plain.texts, "text")
    assert gradient_model(None) == DEFAULT_GRADIENT_MODEL == "smollm2" and gradient_model("minilm") == "minilm"


@pytest.mark.slow
def test_a_gradient_selection_takes_smollm2_by_default_and_records_it(tmp_path: Path) -> None:
    """The default proxy is SmolLM2 with the prompt masked, recorded in the manifest; its cache serves the next
    selection with nothing computed again; ``model="minilm"`` is the cheap proxy."""
    import tasksift

    rows = [{"instruction": "Define the word.", "input": w, "output": d} for w, d in
            [("lantern", "a lamp"), ("anvil", "an iron block"), ("quill", "a feather pen"), ("kiln", "an oven")]]
    out = tmp_path / "run"
    tasksift.select(rows, None, method="spice", budget=2, cache_dir=tmp_path / "cache", out=out,
                    template="{instruction}\\n{input}\\n{output}")
    features = json.loads((out / "manifest.json").read_text())["features"]
    assert features["proxy"] == "smollm2" and features["loss"] == "response"
    assert features["pool"]["meta"]["model_name"] == "SmolLM2-135M-Instruct"
    assert features["pool"]["settings"]["proxy"]["pairs"] == "response-only, prompt format auto"
    assert features["pool"]["shards"]["computed"] == 1
    tasksift.select(rows, None, method="fishersft", budget=2, cache_dir=tmp_path / "cache", out=tmp_path / "f",
                    template="{instruction}\\n{input}\\n{output}")
    reused = json.loads((tmp_path / "f" / "manifest.json").read_text())["features"]["pool"]
    assert reused["shards"]["computed"] == 0 and reused["settings_key"] == features["pool"]["settings_key"]
    again = tasksift.select(rows, None, method="spice", budget=2, cache_dir=tmp_path / "cache", model="minilm",
                            template="{instruction}\\n{input}\\n{output}", out=tmp_path / "cheap")
    cheap = json.loads((tmp_path / "cheap" / "manifest.json").read_text())["features"]
    assert cheap["proxy"] == "minilm" and cheap["loss"] == "text" and len(again.indices) == 2


def test_proxy_kind_is_known_without_converting_the_model(llama_dir: Path, tmp_path: Path) -> None:
    from tasksift.features.gradients.proxy import proxy_kind

    assert proxy_kind(None) == proxy_kind("minilm") == "encoder"
    assert proxy_kind("smollm2") == proxy_kind("SmolLM2-135M-Instruct") == proxy_kind(llama_dir) == "causal-lm"
    assert proxy_kind("smollm2", "encoder") == "encoder"
    (tmp_path / "m.gguf").write_bytes(b"")
    assert proxy_kind(tmp_path / "m.gguf") == "causal-lm"
    with pytest.raises(InputError, match="proxy model not found"):
        proxy_kind(tmp_path / "absent")
