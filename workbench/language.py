"""Which language a text is in (py3langid): a document's, for the sparse index's stemming, and a
question's, so the answer comes back in the language it was asked in."""
from __future__ import annotations

import functools
import re

MIN_LETTERS_TO_DETECT = 40  # below this a document-level guess is noise
# A question is short: its language is believed when py3langid's normalised probability reaches
# this. Measured on 24 user questions (12 French, 12 English, 3-12 words): every one at or over
# 0.6 was right; "Django ORM select_related" (0.09, "ms") and "VACUUM FULL" (0.50, "la") were not.
QUESTION_CONFIDENCE = 0.6
MIN_QUESTION_LETTERS = 8
# What a question quotes from the documents (a title in quotes, a name in backticks) and its code
# words (Box<T>, std::fs, read_to_string()) are the documents' language, not the asker's: of Rust's
# book's 496 section titles quoted in a French question ("Que dit la documentation sur « Creating a
# New Vector » ?"), read whole, 159 came out unclear (no answer-language line) and 57 in another
# language; with the quote left out, the phrasing around it was read right every time, on every
# set both ways (`python benchmarks/question_language.py`).
_QUOTED = re.compile(r"«[^»]*»|“[^”]*”|„[^“”]*[“”]|\"[^\"]*\"|`[^`]*`")
_CODE_WORD = re.compile(r"\S*(?:[<>{}\[\]=_|\\/#]|::|\(\)|\w\.\w)\S*")


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of ``text``'s language, or None when there is too little text."""
    sample = text[:20000]
    if sum(c.isalpha() for c in sample) < MIN_LETTERS_TO_DETECT:
        return None
    import py3langid

    return py3langid.classify(sample)[0]


@functools.lru_cache(maxsize=1)
def _identifier():
    import os

    import py3langid
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(os.path.join(os.path.dirname(py3langid.__file__), MODEL_FILE),
                                             norm_probs=True)


def question_language(question: str) -> str | None:
    """The language of a question when it is clear enough to answer in it; None otherwise
    (a few words, code, product names). Read in the question's own words: what it quotes and its
    code words are left out, unless nothing else is left (then the question is read whole); too
    few own words to tell ("Que fait `entry` ?") is None, not the quote's language."""
    question = question[:2000]
    own = _CODE_WORD.sub(" ", _QUOTED.sub(" ", question))
    letters = sum(c.isalpha() for c in own)
    if letters == 0:  # all quotes and code: read it whole
        own, letters = question, sum(c.isalpha() for c in question)
    if letters < MIN_QUESTION_LETTERS:
        return None
    language, confidence = _identifier().classify(own)
    return language if confidence >= QUESTION_CONFIDENCE else None
