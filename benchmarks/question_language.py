"""Is a question's language read right? The language of a question picks the line asking for the
answer in it (``workbench.chat.prompt.answer_instruction``). Two sources of questions whose
language is known:

- the retrieval sets' user questions (``data/retrieval_<set>.tsv``: LilyPond's in French, the
  others in English), as written;
- questions across languages: each section title of a set's pages asked in the other language
  (English titles in French questions, LilyPond's French titles in English ones), once quoted
  and once unquoted, in one of two phrasings each time (by turns), as a team asking in its own
  language over documents in another quotes what it asks about, or does not.

Each question is read two ways in the same process: whole (``classify`` on the question, the
baseline, without the minimum of letters) and by ``question_language`` (its own words: quotes and code words left out); a
reading is right, wrong, or unclear (under ``QUESTION_CONFIDENCE``: no answer-language line).

    python benchmarks/question_language.py [--sets rust-book,lilypond-fr,django,postgres,erlang-pdf]
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fetch_docs import set_language  # noqa: E402

ASKED_IN = {  # the other language's phrasings: quoted, then unquoted
    "fr": ("Que dit la documentation sur « {} » ?", "Comment fonctionne « {} » ?",
           "Peux-tu m'expliquer {} ?", "Où est-ce que la doc parle de {} ?"),
    "en": ("What does the documentation say about “{}”?", 'How does "{}" work?',
           "Can you explain {}?", "Where does the manual talk about {}?"),
}


def user_questions(name: str) -> list[str]:
    with open(ROOT / "benchmarks" / "data" / f"retrieval_{name}.tsv", encoding="utf-8") as handle:
        return [row["question"].strip() for row in csv.DictReader(handle, delimiter="\t")]


def section_titles(name: str) -> list[str]:
    """The last part of each section heading of the set's HTML pages, once each."""
    from fetch_docs import fetch

    from workbench.corpus.parse import ParseError, parse_file

    seen: dict[str, None] = {}
    for path in sorted(fetch(name).rglob("*.htm*")):
        try:
            blocks = parse_file(path)
        except ParseError:
            continue
        for block in blocks:
            title = (block.section or "").split(" > ")[-1].strip()
            if 4 <= len(title) <= 80:
                seen.setdefault(title)
    return list(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="rust-book,lilypond-fr,django,postgres,erlang-pdf")
    args = parser.parse_args()

    from workbench.language import QUESTION_CONFIDENCE, _identifier, question_language

    def whole(question: str) -> str | None:
        language, confidence = _identifier().classify(question)
        return language if confidence >= QUESTION_CONFIDENCE else None

    groups: dict[str, tuple[str, list[str]]] = {}
    for name in args.sets.split(","):
        groups[f"{name}: user questions ({set_language(name)})"] = (set_language(name), user_questions(name))
        if name != "erlang-pdf":  # PDF pages have no section headings
            asked = "en" if set_language(name) == "fr" else "fr"
            titles = section_titles(name)
            for quoted, phrasings in (("quoted", ASKED_IN[asked][:2]), ("unquoted", ASKED_IN[asked][2:])):
                questions = [p.format(t) for i, t in enumerate(titles) for p in phrasings[i % 2:i % 2 + 1]]
                groups[f"{name}: section titles {quoted} in {asked}"] = (asked, questions)
    print(f"{'questions':52} {'n':>4}  whole: right unclear wrong   own words: right unclear wrong")
    for label, (language, questions) in groups.items():
        line = f"{label:52} {len(questions):4}"
        for read in (whole, question_language):
            said = Counter("right" if r == language else "unclear" if r is None else "wrong" for r in map(read, questions))
            line += f"  {'':6} {said['right']:5} {said['unclear']:7} {said['wrong']:5}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
