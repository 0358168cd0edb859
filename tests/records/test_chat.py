"""The chat text view: messages and ShareGPT conversations as turns with role tags, or a model's chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasksift.records import load_records, records_from_dicts
from tasksift.util.errors import InputError

MESSAGES = {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"},
                         {"role": "assistant", "content": "4"}], "source": "math"}
SHAREGPT = {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}], "source": "math"}


def test_messages_are_chosen_by_themselves_and_joined_with_role_tags() -> None:
    rs = records_from_dicts([MESSAGES])
    assert rs.texts == ["<|system|> Be terse.\n<|user|> 2+2?\n<|assistant|> 4"]
    assert rs.text_rule == "chat:messages"


def test_sharegpt_speakers_read_as_roles() -> None:
    rs = records_from_dicts([SHAREGPT], text_view="chat")
    assert rs.texts == ["<|user|> 2+2?\n<|assistant|> 4"] and rs.text_rule == "chat:conversations"


def test_content_parts_and_nulls() -> None:
    rec = {"messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image"}]},
                        {"role": "assistant", "content": None}]}
    assert records_from_dicts([rec]).texts == ["<|user|> look\n<|assistant|> "]


def test_a_text_field_wins_unless_chat_is_asked_for() -> None:
    rec = {**MESSAGES, "text": "plain"}
    assert records_from_dicts([rec]).texts == ["plain"]
    assert records_from_dicts([rec], text_view="chat").texts[0].startswith("<|system|>")


def test_bad_conversations_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(MESSAGES) + "\n" + json.dumps({"messages": [{"content": "who?"}]}) + "\n")
    with pytest.raises(InputError, match=r"chat\.jsonl:2: the record: turn 0 of field 'messages' has no 'role'"):
        load_records(path)
    with pytest.raises(InputError, match="no 'messages' or 'conversations' field"):
        records_from_dicts([{"text": "x"}], text_view="chat")
    with pytest.raises(InputError, match="unknown text view 'html'"):
        records_from_dicts([MESSAGES], text_view="html")
    with pytest.raises(InputError, match="not a list of turns"):
        records_from_dicts([{"messages": "hello"}])


def test_a_local_model_with_a_chat_template_renders_the_turns(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    tokenizer.chat_template = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
    tokenizer.save_pretrained(tmp_path / "lm")
    rs = records_from_dicts([SHAREGPT], chat_model=tmp_path / "lm")
    assert rs.texts == ["[user]2+2?[assistant]4"]
    assert rs.text_rule == f"chat-template:{tmp_path / 'lm'}:conversations"
    assert records_from_dicts([SHAREGPT], chat_model=tmp_path).texts == ["<|user|> 2+2?\n<|assistant|> 4"]
