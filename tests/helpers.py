"""Builders shared by test modules: workspace content made as the product makes it."""
from __future__ import annotations


def ready_pairs(workspace, count: int, set_name: str = "default", lang: str = "fr") -> list:
    """Answered pairs, as a generation job leaves them."""
    from workbench.feedback.pairs import Side, make_pair, pair_store

    question = "Comment configurer le serveur n°{}, d'après le contexte ?" if lang == "fr" else "How to set up server {}?"
    pairs = [make_pair(question.format(i), "typed", Side("base", 0.0, answer=f"Réponse précise {i}."),
                       Side("base", 0.8, answer=f"Réponse vague {i}."), set_name=set_name) for i in range(count)]
    pair_store(workspace).add(pairs)
    return pairs


def queued_runs(settings, kind: str) -> list[str]:
    """Ids of the runs of ``kind`` waiting in the queue (e.g. queued by a run that succeeded)."""
    from jobs import control

    return [r["id"] for r in control.store(settings).list() if r["kind"] == kind and r["status"] == "queued"]
