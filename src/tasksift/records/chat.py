"""The ``chat`` text view: a conversation record read as one text, without a template.

A record holds its turns in ``messages`` (``{"role": ..., "content": ...}``, the OpenAI / TRL layout) or
``conversations`` (``{"from": ..., "value": ...}``, ShareGPT). Without a model, the view is each turn as
``<|role|> content``, turns joined by one newline, e.g.::

    <|system|> You are terse.
    <|user|> What is 2+2?
    <|assistant|> 4

ShareGPT speakers are named as in ``messages``: ``human`` -> ``user``, ``gpt`` -> ``assistant`` (others are kept
as written). A ``content`` that is a list of parts (``[{"type": "text", "text": ...}, ...]``) keeps its text
parts, joined by a newline; a null content is empty.

With a model that is a local directory whose tokenizer has a chat template, the view is that template applied
to the turns (``apply_chat_template(..., tokenize=False)``); any other model (a name, or a model without a chat
template) falls back to the role tags.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the fields that hold a conversation, and the keys of a turn's speaker and text in each
CHAT_FIELDS = {"messages": ("role", "content"), "conversations": ("from", "value")}
#: ShareGPT speaker names and the ``messages`` role each one means
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user",
                  "assistant": "assistant"}

Render = Callable[[list[dict[str, str]]], str]


def chat_field(fields: Any) -> str | None:
    """The one conversation field among ``fields`` (``messages`` or ``conversations``), else None."""
    found = [name for name in CHAT_FIELDS if name in fields]
    return found[0] if len(found) == 1 else None


def turns(value: Any, field: str) -> list[dict[str, str]] | str:
    """The turns of a conversation as ``{"role", "content"}`` dicts, or a message saying what is wrong."""
    if not isinstance(value, list):
        return f"field '{field}' is not a list of turns"
    speaker, text = CHAT_FIELDS[field]
    out = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or speaker not in turn:
            return f"turn {i} of field '{field}' has no '{speaker}'"
        role = str(turn[speaker])
        if field == "conversations":
            role = SHAREGPT_ROLES.get(role, role)
        out.append({"role": role, "content": _content(turn.get(text))})
    return out


def role_tags(conversation: list[dict[str, str]]) -> str:
    """Each turn as ``<|role|> content``, joined by newlines."""
    return "\n".join(f"<|{turn['role']}|> {turn['content']}" for turn in conversation)


def renderer(model: str | Path | None) -> tuple[Render, str | None]:
    """How to render turns for ``model``: its tokenizer's chat template when ``model`` is a local directory
    with one (and the directory, for the text rule), else the role tags (and None)."""
    path = Path(model) if model is not None else None
    if path is None or not path.is_dir() or not _has_chat_template(path):
        return role_tags, None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)

    def render(conversation: list[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(conversation, tokenize=False)

    return render, str(path)


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    config = path / "tokenizer_config.json"
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _content(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [p.get("text") if isinstance(p, dict) else p for p in value]
        return "\n".join(p for p in parts if isinstance(p, str))
    return str(value)
