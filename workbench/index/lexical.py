"""The words the sparse side of hybrid search indexes and looks for, per language.

Each document's language is detected (py3langid, offline) when it is indexed and recorded. Under
the ``stems`` analysis its chunks are indexed as their words lower-cased, the language's stop
words left out, each word cut to its Snowball stem (PyStemmer) and its accents folded, so
``configurer``, ``configuration`` and ``configurés`` meet; a question is analysed once per
language of the corpus and the terms joined, so a mixed French and English corpus answers in
both; a language without a Snowball stemmer keeps its plain words (and a question in one gets a
note). ``words`` is the same without stems; ``plain`` (the default, see ``ANALYSIS``) leaves the
text to FTS5's tokenizer.

An index written before this (``lexical`` setting absent) holds plain words and is searched so;
the next ingest records its languages (``store_writes.upgrade_lexical``).
"""
from __future__ import annotations

import functools
import re
import unicodedata

from workbench.language import detect_language

VERSION = 2
# How the sparse side analyses text: ``plain`` (FTS5's own tokens: lower case, accents folded;
# English stop words left out of questions), ``words`` (also each document's language's stop
# words), ``stems`` (also Snowball stems). ``plain`` is the default: on five documentation sets
# (PostgreSQL, Django, Rust's book, LilyPond's French manual, Erlang's PDFs), with the fusion of
# ``index.search``, it had the best mean margin over dense search and the plain script; stems led
# on PostgreSQL, Rust's book and the PDFs but fell behind the plain script on Django and found
# fewer French pages in the top 5 (benchmarks/retrieval.py; the README has the table).
# An index keeps the analysis it was built with; ``workbench ingest --sparse-analysis`` changes it.
ANALYSES = ("plain", "words", "stems")
ANALYSIS = "plain"
# ISO 639-1 code (what py3langid answers) -> Snowball algorithm
STEMMERS = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german", "el": "greek",
    "en": "english", "es": "spanish", "et": "estonian", "eu": "basque", "fi": "finnish", "fr": "french",
    "ga": "irish", "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian",
    "lt": "lithuanian", "ne": "nepali", "nl": "dutch", "no": "norwegian", "nb": "norwegian", "pl": "polish",
    "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil",
    "tr": "turkish",
}
# Lucene's stop words for the two languages the team writes in (its English analyzer's, and the
# French analyzer's, which is Snowball's list); other languages keep their stop words, which
# BM25's inverse document frequency weighs down anyway.
STOP_WORDS = {
    "en": frozenset("a an and are as at be but by for if in into is it no not of on or such that the their then "
                    "there these they this to was will with".split()),
    "fr": frozenset("""au aux avec ce ces dans de des du elle en et eux il je la le leur lui ma mais me même mes
                    moi mon ne nos notre nous on ou par pas pour qu que qui sa se ses son sur ta te tes toi ton tu
                    un une vos votre vous c d j l à m n s t y été étée étées étés étant suis es est sommes êtes
                    sont serai seras sera serons serez seront serais serait serions seriez seraient étais était
                    étions étiez étaient fus fut fûmes fûtes furent sois soit soyons soyez soient fusse fusses fût
                    fussions fussiez fussent ayant eu eue eues eus ai as avons avez ont aurai auras aura aurons
                    aurez auront aurais aurait aurions auriez auraient avais avait avions aviez avaient eut eûmes
                    eûtes eurent aie aies ait ayons ayez aient eusse eusses eût eussions eussiez eussent ceci
                    cela celà cet cette ici ils les leurs quel quels quelle quelles sans soi""".split()),
}
_WORD = re.compile(r"[^\W_]+")


@functools.lru_cache(maxsize=None)
def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(STEMMERS[language])


def fold(word: str) -> str:
    """The word without its accents (``réseau`` -> ``reseau``)."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def analyse(text: str, language: str | None, stem: bool = True) -> list[str]:
    """The terms of ``text`` as the sparse side indexes them in ``language`` (None: plain words,
    English stop words left out); ``stem`` False keeps whole words (stop words still dropped)."""
    stop = STOP_WORDS.get(language or "en", frozenset())
    words = [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in stop]
    if stem and language in STEMMERS:
        words = _stemmer(language).stemWords(words)
    return [fold(w) for w in words]


def body(text: str, language: str | None, analysis: str = "stems") -> str:
    """What the FTS5 table holds for a chunk under ``analysis``: its text, or its terms in order."""
    if analysis == "plain":
        return text
    return " ".join(analyse(text, language, analysis == "stems"))


def query_terms(query: str, languages: list[str] | tuple[str, ...],
                analysis: str = "stems") -> tuple[list[str], str | None]:
    """(the terms a question looks for in a corpus of ``languages``, a note or None). The
    question is analysed in each language of the corpus; a question long enough to tell its
    language, in a language without a stemmer, is looked for with its plain words, with a note."""
    if analysis == "plain":
        return legacy_terms(query), None
    stem = analysis == "stems"
    spoken = detect_language(query)
    note = None
    if stem and spoken is not None and spoken not in STEMMERS and spoken not in languages:
        note = f"no stemmer for the question's language ({spoken}): its words are looked for as written"
    terms: dict[str, None] = {}
    for language in list(languages) or [None]:
        terms.update(dict.fromkeys(analyse(query, language, stem)))
    if note:
        terms.update(dict.fromkeys(analyse(query, None)))
    return list(terms), note


def legacy_terms(query: str) -> list[str]:
    """A question's plain words (English stop words left out): what ``plain`` looks for, and an
    index written before ``VERSION`` 2 holds."""
    return list(dict.fromkeys(t for t in _WORD.findall(query.lower()) if len(t) > 1 and t not in STOP_WORDS["en"]))
