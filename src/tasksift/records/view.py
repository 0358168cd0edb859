"""The text view, id and domain of each record, and the errors a bad record raises.

Ids are stable: the value of ``id_field`` when given, else the first 16 hex digits of the sha1 of the record's
canonical JSON. The k-th repeat (k >= 1) of identical content gets the suffix ``-k``, so identical records keep
distinct ids by position. The same record content gives the same id whatever the file format.

Null values render as the empty string in the text view (a text view that is empty is allowed); a record that
lacks the text field, a template field, the id field or the domain field altogether is an error.

The text view is a field, a template, or a conversation (``chat``, :mod:`.chat`): chosen with
``text_view="chat"``, or automatically when records have no ``text`` field but one of ``messages`` and
``conversations``.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.records.chat import CHAT_FIELDS, chat_field, renderer, turns
from tasksift.records.ids import ContentIds, FieldIds
from tasksift.util.errors import InputError
from tasksift.util.spill import SpilledArray

#: the text views a builder takes (``None``: a field or template, or chat when that is all records have)
TEXT_VIEWS = ("auto", "chat")


def compile_template(template: str) -> tuple[str, list[str]]:
    """Turn the CLI's two-character ``\\n`` and ``\\t`` into newline and tab, and list the fields used.

    Only named fields are allowed (``{instruction}``, ``{meta[lang]}``, ``{score:.2f}``); the name before any
    ``.`` or ``[`` is the record field that must exist.
    """
    text = template.replace("\\n", "\n").replace("\\t", "\t")
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise InputError(f"template {template!r} is not a valid format string: {e}",
                         fix='write fields in braces, e.g. "{instruction}\\n{output}"; double literal braces') from e
    for _, name, _, _ in parsed:
        if name is None:
            continue
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if base == "" or base.isdigit():
            raise InputError(f"template {template!r} has a positional field {{{name}}}",
                             fix="name the record field in the braces, e.g. {instruction}")
        if base not in names:
            names.append(base)
    if not names:
        raise InputError(f"template {template!r} uses no record field", fix="put field names in braces")
    return text, names


class Where:
    """Where a record sits in its file: a line number (jsonl, csv) or a 0-based record position."""

    __slots__ = ("line", "index")

    def __init__(self, line: int | None = None, index: int | None = None) -> None:
        self.line = line
        self.index = index

    def subject(self) -> str:
        return "the record" if self.line is not None else f"record {self.index}"

    def position(self) -> int:
        return self.line if self.line is not None else self.index

    def describe(self, position: int) -> str:
        """Name another position of the same file the way this one is named (for "first at line 3")."""
        return f"line {position}" if self.line is not None else f"record {position}"

    def shifted(self, k: int) -> Where:
        """The place ``k`` records further on."""
        return Where(line=self.line + k) if self.line is not None else Where(index=self.index + k)


class ViewBuilder:
    """Computes and keeps the id, text view and domain of each record, raising InputError on bad records.

    ``streamed``: keep no text (each is computed, checked and dropped; :meth:`text_of` computes it again from
    the record) and keep ids compactly (:mod:`.ids`); a repeated id field is then reported by :meth:`finish`,
    once the whole input is read, with the same message.
    """

    def __init__(self, path: Path | None, *, text_field: str | None, template: str | None,
                 id_field: str | None, domain_field: str | None, text_view: str | None = None,
                 chat_model: str | Path | None = None, streamed: bool = False) -> None:
        if text_field is not None and template is not None:
            raise InputError("give either a text field or a template, not both",
                             fix="drop --text-field or --template")
        if text_view not in (None, *TEXT_VIEWS):
            raise InputError(f"unknown text view {text_view!r}", fix=f"use one of {', '.join(TEXT_VIEWS)}")
        self.label = str(path) if path is not None else "<records>"
        self.path = path
        self.text_field = text_field
        self.template: str | None = None
        self.template_fields: list[str] = []
        if template is not None:
            self.template, self.template_fields = compile_template(template)
            self.text_rule = f"template:{template}"
        else:
            self.text_rule = f"field:{text_field}" if text_field is not None else ""
        self.id_field = id_field
        self.domain_field = domain_field
        self.streamed = streamed
        self.ids: Any = [] if not streamed else FieldIds() if id_field is not None else ContentIds()
        self.texts: list[str] | None = None if streamed else []
        self.domains: list[str] | None = [] if domain_field is not None else None
        self._seen: dict[str, Any] = {}  # id -> (file, first line or position); content hash -> repeat count
        self._names: dict[str, str] = {}  # one string object per distinct domain
        #: streamed with an id field: each record's line or position, and the first row of each file
        self._positions = SpilledArray(np.int64)
        self._files: list[tuple[int, Path | None, str]] = [(0, path, self.label)]
        self.text_view = text_view
        self.chat_model = chat_model
        self.chat_field: str | None = None
        if text_view == "chat":
            if template is not None:
                raise InputError("give either a template or --text-view chat, not both", fix="drop one of them")
            if text_field is not None:
                if text_field not in CHAT_FIELDS:
                    raise InputError(f"--text-view chat reads 'messages' or 'conversations', not {text_field!r}",
                                     fix="drop --text-field, or name one of those fields")
                self._use_chat(text_field)

    def at(self, path: Path | None) -> None:
        """Name ``path`` in the errors that follow (the file being read, for a source of several files)."""
        self.path = path
        self.label = str(path) if path is not None else "<records>"
        if path is not None:
            self._files = [f for f in self._files if f[0] < len(self.ids)] + [(len(self.ids), path, self.label)]

    def snapshot(self) -> tuple[Any, ...]:
        """The state to go back to with :meth:`restore` (to read one file again from its start)."""
        return len(self.ids), dict(self._seen), self.text_field, self.text_rule, self.chat_field

    def restore(self, state: tuple[Any, ...]) -> None:
        n, seen, self.text_field, self.text_rule, self.chat_field = state
        del self.ids[n:]
        self._positions.truncate(n)
        if self.texts is not None:
            del self.texts[n:]
        if self.domains is not None:
            del self.domains[n:]
        self._seen = seen

    def _use_chat(self, name: str) -> None:
        self._render, source = renderer(self.chat_model)
        self.text_field = self.chat_field = name
        self.text_rule = f"chat:{name}" if source is None else f"chat-template:{source}:{name}"

    @property
    def id_rule(self) -> str:
        return f"field:{self.id_field}" if self.id_field is not None else "content-sha1"

    def fail(self, what: str, where: Where, fix: str | None = None) -> InputError:
        return InputError(what, path=self.path, line=where.line, fix=fix)

    def resolve_default_text(self, fields: Iterable[str]) -> None:
        """Without a text field or template, use ``text`` if the first record has it, else its conversation
        (``messages`` or ``conversations``); else tell the user."""
        if self.template is not None or self.text_field is not None:
            return
        fields = list(fields)
        chat = chat_field(fields)
        if chat is not None and (self.text_view == "chat" or "text" not in fields):
            self._use_chat(chat)
            return
        if "text" not in fields or self.text_view == "chat":
            shown = ", ".join(fields[:30]) + (", ..." if len(fields) > 30 else "")
            wanted = "'messages' or 'conversations'" if self.text_view == "chat" else "'text'"
            raise InputError(f"records have no {wanted} field (fields found in the first record: {shown})",
                             path=self.path,
                             fix='pass --text-field NAME or --template "{field1}\\n{field2}"')
        self.text_field = "text"
        self.text_rule = "field:text"

    def add(self, rec: dict[str, Any], where: Where, *, check_surrogates: bool = False) -> None:
        if not len(self.ids):
            self.resolve_default_text(rec.keys())
        text = self._text(rec, where)
        if check_surrogates:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise self.fail(f"the text of {where.subject()} is not valid UTF-8 (a lone surrogate \\u escape)",
                                where,
                                fix="fix or drop this record") from e
        if self.domains is not None:
            domain = self._required(rec, self.domain_field, "domain", where)
            self.domains.append(self._names.setdefault(domain, domain))
        self.ids.append(self._id(rec, where))
        if self.texts is not None:
            self.texts.append(text)

    def text_of(self, rec: dict[str, Any], row: int) -> str:
        """The text view of ``rec`` (row ``row``), by the rule the load settled on (for a streamed column)."""
        return self._text(rec, Where(index=row))

    def finish(self) -> None:
        """After the last record: drop what only the load needed; streamed, number content repeats or raise
        for the first repeated id (its file and line, and where it first was)."""
        self._seen, self._names = {}, {}
        if isinstance(self.ids, ContentIds):
            self.ids.finish()
        elif isinstance(self.ids, FieldIds):
            repeat = self.ids.first_repeat()
            positions, self._positions = self._positions.values(), SpilledArray(np.int64)
            if repeat is not None:
                row, first = repeat
                (_, path, label), (_, _, first_label) = self._file_of(row), self._file_of(first)
                where, first_where = (self._where(positions, row), self._where(positions, first))
                place = first_where.describe(first_where.position())
                place = place if first_label == label else f"{first_label} {place}"
                self.at(path)
                raise self.fail(f"{where.subject()} repeats id {self.ids[row]!r} of field '{self.id_field}' "
                                f"(first at {place})", where,
                                fix="ids must be unique; pick another --id-field or drop it to hash content")

    def _file_of(self, row: int) -> tuple[int, Path | None, str]:
        return [f for f in self._files if f[0] <= row][-1]

    def _where(self, positions: np.ndarray, row: int) -> Where:
        at = int(positions[row])
        return Where(line=at) if at >= 0 else Where(index=-at - 1)

    def _text(self, rec: dict[str, Any], where: Where) -> str:
        if self.template is None:
            if self.text_field not in rec:
                raise self.fail(f"{where.subject()} has no text field '{self.text_field}'", where,
                                fix="pass --text-field or --template naming fields every record has")
            value = rec[self.text_field]
            if self.chat_field is not None:
                return self._chat_text(value, where)
            return value if isinstance(value, str) else "" if value is None else str(value)
        for name in self.template_fields:
            if name not in rec:
                raise self.fail(f"{where.subject()} has no field '{name}' used by the template", where,
                                fix="use only fields every record has in --template")
        values = {name: "" if rec[name] is None else rec[name] for name in self.template_fields}
        try:
            return self.template.format_map(values)
        except (KeyError, IndexError, AttributeError, ValueError, TypeError) as e:
            raise self.fail(f"the template cannot be filled from {where.subject()}: {e!r}", where,
                            fix="check the template's fields and format specs") from e

    def _chat_text(self, value: Any, where: Where) -> str:
        conversation = turns(value, self.chat_field)
        if isinstance(conversation, str):
            raise self.fail(f"{where.subject()}: {conversation}", where,
                            fix="give turns as role/content (messages) or from/value (conversations) objects")
        return self._render(conversation)

    def _required(self, rec: dict[str, Any], name: str, role: str, where: Where) -> str:
        value = rec.get(name)
        if value is None:
            missing = "has no" if name not in rec else "has a null"
            raise self.fail(f"{where.subject()} {missing} {role} field '{name}'", where,
                            fix=f"give every record a value in '{name}' or choose another {role} field")
        return value if isinstance(value, str) else str(value)

    def _id(self, rec: dict[str, Any], where: Where) -> str:
        if self.id_field is not None:
            rid = self._required(rec, self.id_field, "id", where)
            if self.streamed:  # repeats are found by finish()
                self._positions.append(where.line if where.line is not None else -where.index - 1)
                return rid
            first_path, first = self._seen.setdefault(rid, (self.label, where.position()))
            if (first_path, first) != (self.label, where.position()):
                place = where.describe(first) if first_path == self.label else f"{first_path} {where.describe(first)}"
                raise self.fail(f"{where.subject()} repeats id {rid!r} of field '{self.id_field}' "
                                f"(first at {place})", where,
                                fix="ids must be unique; pick another --id-field or drop it to hash content")
            return rid
        digest = content_hash(rec)
        if self.streamed:  # repeats are numbered by finish()
            return digest
        k = self._seen.get(digest, 0)
        self._seen[digest] = k + 1
        return digest if k == 0 else f"{digest}-{k}"

    def check_not_empty(self) -> None:
        """Raise when the file held no record."""
        if not self.ids:
            raise InputError(f"no records in {self.label}", path=self.path,
                             fix="give a file with at least one record")


def canonical_record(rec: dict[str, Any]) -> bytes:
    """The record's canonical JSON (sorted keys, values JSON cannot hold written with ``str``) in UTF-8."""
    return json.dumps(rec, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")


def content_hash(rec: dict[str, Any]) -> str:
    """First 16 hex digits of the sha1 of the record's canonical JSON (sorted keys, UTF-8)."""
    return hashlib.sha1(canonical_record(rec)).hexdigest()[:16]


