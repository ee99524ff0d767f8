"""The simulated annotators of ``benchmarks/learning.py``: rules real teams vote by, each a few
lines, scoring one answer to a RAG prompt; ``judge`` turns two scores into a vote, and is also the
judge of a trained model's answers against the base's, a judge the training never saw; ``written``
is the answer an annotator who writes answers gives when neither side is what its rule asks for.

A rule reads the question, the retrieved context, the answer, ``covered``: whether the context
holds the page the question is about (the benchmark knows each question's page and the pages of
the chunks retrieved for it, as an annotator who reads the context knows whether it answers), and
``page``: the text of that page, as an annotator who knows the documentation knows where the
answer is ("" where the benchmark has no page to give)."""
from __future__ import annotations

import re

# "the documents do not say", in English and French, as small models and people put it: the phrase
# names the documents, the context or the information ("Rust does not provide a garbage
# collector" is an answer, not a refusal)
_SOURCE_EN = r"(?:documentation|documents?|context|text|passages?|sources?|manual)"
_SOURCE_FR = r"(?:documentation|documents?|contexte|texte|passages?|sources?|manuel)"
NOT_IN_DOCUMENTS = re.compile(
    rf"\b(?:{_SOURCE_EN}\s+(?:does|do|did)(?: not|n't)\s+(?:say|mention|contain|cover|answer|provide|specify|include|explain|state|give)"
    rf"|not\s+(?:mentioned|covered|provided|specified|given|found|explained|stated)\s+in\s+the\s+{_SOURCE_EN}"
    r"|no (?:information|mention|details?) (?:about|on|of|regarding|is given)|not enough (?:information|context)"
    r"|I (?:cannot|can't|am unable to) (?:answer|find|tell)|I (?:don't|do not) know"
    rf"|{_SOURCE_FR}\s+ne\s+(?:dit|mentionne|contient|précise|indique|répond|couvre|parle|donne|explique)\s+pas"
    rf"|{_SOURCE_FR}\s+n'(?:aborde|indique|explique|évoque|précise|mentionne)\s+pas"
    rf"|(?:n'est|ne sont) pas (?:mentionnée?s?|précisée?s?|indiquée?s?) dans (?:le|la|les) {_SOURCE_FR}"
    r"|aucune (?:information|mention)|pas d'informations?|je ne sais pas|je ne peux pas répondre|impossible de répondre"
    # whatever is said not to answer ("La structure ne répond pas à cette question.")
    r"|(?:does|do|did)(?: not|n't) answer (?:this|the|your) question|ne répond pas à (?:cette|la|votre) question)",
    re.IGNORECASE)


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[^\W\d_]{4,}", text.lower())]


def _share_in(answer: str, text: str) -> float:
    """Share of the answer's words found in ``text``."""
    words, known = _words(answer), set(_words(text))
    return sum(w in known for w in words) / len(words) if words else 0.0


def faithful(question: str, context: str, answer: str, covered: bool = True, page: str = "") -> float:
    """Share of the answer's words found in the retrieved context (the seed's "fidèle au texte source")."""
    return _share_in(answer, context)


def concise(question: str, context: str, answer: str, covered: bool = True, page: str = "") -> float:
    """Shorter is better, once the answer says something (three words or more)."""
    n = len(answer.split())
    return -n if n >= 3 else -10_000


def language(question: str, context: str, answer: str, covered: bool = True, page: str = "") -> float:
    """An answer in another language than the question's loses; between two that are not, the
    more faithful. An answer whose language the detector cannot tell (mostly code, a few words)
    is not in another language: on Rust's book, counting it as one had this rule prefer the
    prose answer in 15 of 234 pairs, all English, 12 of them against ``faithful`` (answers read whole
    then; code words are now left out, ``workbench.language.question_language``)."""
    from workbench.language import question_language

    asked, said = question_language(question), question_language(answer[:500])
    return (asked is None or said is None or said == asked) + 0.01 * faithful(question, context, answer)


def abstains(question: str, context: str, answer: str, covered: bool = True, page: str = "") -> float:
    """Says the documents do not answer when the context lacks the question's page, and answers
    when it holds it; between two alike, the more faithful."""
    said_not = bool(NOT_IN_DOCUMENTS.search(answer))
    return (said_not != covered) + 0.01 * faithful(question, context, answer)


def from_page(question: str, context: str, answer: str, covered: bool = True, page: str = "") -> float:
    """Share of the answer's words found in the page the question is about, whether or not the
    retrieved context holds it: the answer drawn from where the documentation answers, not from
    whatever passage was retrieved (``faithful`` cannot tell the two apart)."""
    return _share_in(answer, page)


RULES = {"faithful": faithful, "concise": concise, "language": language, "abstains": abstains,
         "from_page": from_page}

# what an annotator who writes answers writes when neither side is what the rule asks for: the
# house phrase of a team that wants "not in the documents" said plainly, in the question's language
REFUSAL = {"en": "The documentation does not answer this question.",
           "fr": "La documentation ne répond pas à cette question."}


def refusal(question: str, context: str, a: str, b: str, covered: bool = True) -> str | None:
    """``abstains``'s written answer: the refusal, when the context lacks the question's page and
    neither answer says so."""
    from workbench.language import question_language

    if covered or NOT_IN_DOCUMENTS.search(a) or NOT_IN_DOCUMENTS.search(b):
        return None
    return REFUSAL.get(question_language(question) or "en", REFUSAL["en"])


WRITERS = {"abstains": refusal}


def score(rule, prompt: str, answer: str, covered: bool = True, page: str = "") -> float:
    from workbench.chat.prompt import split_prompt

    question, context = split_prompt(prompt)
    return rule(question, context, answer, covered, page)


def written(rule_name: str, prompt: str, a: str, b: str, covered: bool = True) -> str | None:
    """The answer an annotator following ``rule_name`` writes for this pair, or None (then it votes)."""
    from workbench.chat.prompt import split_prompt

    writer = WRITERS.get(rule_name)
    return writer(*split_prompt(prompt), a, b, covered) if writer else None


def judge(rule, prompt: str, a: str, b: str, covered: bool = True, page: str = "") -> str | None:
    """"a", "b", or None on a tie (skipped)."""
    sa, sb = score(rule, prompt, a, covered, page), score(rule, prompt, b, covered, page)
    return None if sa == sb else ("a" if sa > sb else "b")
