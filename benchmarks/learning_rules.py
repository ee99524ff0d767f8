"""The simulated annotators of ``benchmarks/learning.py``: rules real teams vote by, each a few
lines, scoring one answer to a RAG prompt; ``judge`` turns two scores into a vote, and is also the
judge of a trained model's answers against the base's, a judge the training never saw."""
from __future__ import annotations

import re


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[^\W\d_]{4,}", text.lower())]


def faithful(question: str, context: str, answer: str) -> float:
    """Share of the answer's words found in the retrieved context (the seed's "fidèle au texte source")."""
    words, known = _words(answer), set(_words(context))
    return sum(w in known for w in words) / len(words) if words else 0.0


def concise(question: str, context: str, answer: str) -> float:
    """Shorter is better, once the answer says something (three words or more)."""
    n = len(answer.split())
    return -n if n >= 3 else -10_000


def language(question: str, context: str, answer: str) -> float:
    """The answer in the question's language wins; between two that are, the more faithful."""
    from workbench.language import question_language

    asked, said = question_language(question), question_language(answer[:500])
    return (asked is not None and said == asked) + 0.01 * faithful(question, context, answer)


RULES = {"faithful": faithful, "concise": concise, "language": language}


def score(rule, prompt: str, answer: str) -> float:
    from workbench.chat.prompt import split_prompt

    question, context = split_prompt(prompt)
    return rule(question, context, answer)


def judge(rule, prompt: str, a: str, b: str) -> str | None:
    """"a", "b", or None on a tie (skipped)."""
    sa, sb = score(rule, prompt, a), score(rule, prompt, b)
    return None if sa == sb else ("a" if sa > sb else "b")
