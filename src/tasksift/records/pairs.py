"""The (prompt, response) view of records whose text is a template ending in one field.

A causal LM is finetuned on the response tokens of an instruction / response pair, its prompt masked. Records
read with a template whose last part is one plain field (``"{instruction}\\n{input}\\n{output}"``: the response
is ``output``, the prompt ``"{instruction}\\n{input}\\n"``) have that split; records read by one text field or as
a conversation have none here (a conversation's split is not built: its whole text is the response).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from tasksift.records.recordset import RecordSet

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def response_split(text_rule: str) -> tuple[str, str] | None:
    """``(prompt_template, response_field)`` of a ``template:...`` text rule whose template ends with one plain
    field (no format spec, conversion or index) and has a field before it; else ``None``."""
    if not text_rule.startswith("template:"):
        return None
    template = text_rule[len("template:"):].replace("\\n", "\n").replace("\\t", "\t")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return None
    if not parts:
        return None
    literal, name, spec, conversion = parts[-1]
    if name is None or spec or conversion or not _PLAIN_NAME.match(name):
        return None
    if not any(p[1] for p in parts[:-1]):
        return None
    prompt = "".join(_unparse(p) for p in parts[:-1]) + _escape(literal)
    return prompt, name


def pair_views(records: RecordSet) -> tuple[Sequence[str], Sequence[str]] | None:
    """Prompts and responses of ``records`` (see :func:`response_split`), in row order; ``None`` when their text
    view has no such split. The file is read again under the two views."""
    split = response_split(records.text_rule)
    if split is None:
        return None
    prompt_template, field = split
    prompts = records.with_text(template=prompt_template).texts
    responses = records.with_text(text_field=field).texts
    return prompts, responses


def _escape(literal: str) -> str:
    return literal.replace("{", "{{").replace("}", "}}")


def _unparse(part: tuple[str, str | None, str | None, str | None]) -> str:
    literal, name, spec, conversion = part
    out = _escape(literal)
    if name is not None:
        out += "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    return out
