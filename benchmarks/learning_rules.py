"""The simulated annotators of ``benchmarks/learning.py``: rules real teams vote by, each a few
lines, scoring one answer to a RAG prompt; ``judge`` turns two scores into a vote, and is also the
judge of a trained model's answers against the base's, a judge the training never saw.

A rule reads the question, the retrieved context, the answer and ``covered``: whether the context
holds the page the question is about (the benchmark knows each question's page and the pages of
the chunks retrieved for it, as an annotator who reads the context knows whether it answers)."""
from __future__ import annotations

import re

# "the documents do not say", in English and French, as small models and people put it
NOT_IN_DOCUMENTS = re.compile(
    r"\b(?:(?:does|do|did)(?: not|n't) (?:say|mention|contain|cover|answer|provide|specify|include|explain|state)"
    r"|(?:is|are)(?: not|n't) (?:mentioned|covered|provided|specified|given|found|explained|stated)"
    r"|no (?:information|mention|details?)|not enough (?:information|context)|(?:cannot|can't|unable to) (?:answer|find|tell)"
    r"|(?:don't|do not) know|ne (?:dit|mentionne|contient|précise|indique|répond|couvre|parle|donne|explique|permet) pas"
    r"|n'(?:aborde|indique|explique|évoque|est pas (?:mentionné|précisé|indiqué|question))|aucune (?:information|mention)"
    r"|pas d'informations?|je ne (?:sais|peux) pas|impossible de répondre)", re.IGNORECASE)


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[^\W\d_]{4,}", text.lower())]


def faithful(question: str, context: str, answer: str, covered: bool = True) -> float:
    """Share of the answer's words found in the retrieved context (the seed's "fidèle au texte source")."""
    words, known = _words(answer), set(_words(context))
    return sum(w in known for w in words) / len(words) if words else 0.0


def concise(question: str, context: str, answer: str, covered: bool = True) -> float:
    """Shorter is better, once the answer says something (three words or more)."""
    n = len(answer.split())
    return -n if n >= 3 else -10_000


def language(question: str, context: str, answer: str, covered: bool = True) -> float:
    """The answer in the question's language wins; between two that are, the more faithful."""
    from workbench.language import question_language

    asked, said = question_language(question), question_language(answer[:500])
    return (asked is not None and said == asked) + 0.01 * faithful(question, context, answer)


def abstains(question: str, context: str, answer: str, covered: bool = True) -> float:
    """Says the documents do not answer when the context lacks the question's page, and answers
    when it holds it; between two alike, the more faithful."""
    said_not = bool(NOT_IN_DOCUMENTS.search(answer))
    return (said_not != covered) + 0.01 * faithful(question, context, answer)


RULES = {"faithful": faithful, "concise": concise, "language": language, "abstains": abstains}


def score(rule, prompt: str, answer: str, covered: bool = True) -> float:
    from workbench.chat.prompt import split_prompt

    question, context = split_prompt(prompt)
    return rule(question, context, answer, covered)


def judge(rule, prompt: str, a: str, b: str, covered: bool = True) -> str | None:
    """"a", "b", or None on a tie (skipped)."""
    sa, sb = score(rule, prompt, a, covered), score(rule, prompt, b, covered)
    return None if sa == sb else ("a" if sa > sb else "b")
