"""Gold pairs: pairs whose right answer is known, mixed unannounced among the others to measure
each annotator's reliability (``stats``, and the merge's gold threshold).

A trainer marks a pair (``mark_gold``), imports pairs with their right answer (``gold_from_file``),
or lets the workbench make them (``make_gold``): a question's own answer against the answer to
another question, which nobody reading carefully should prefer.
"""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from storage import Workspace
from storage.jsonl import JsonlError, iter_jsonl
from workbench.errors import WorkbenchError
from workbench.feedback.pairs import Pair, Side, make_pair, pair_store
from workbench.feedback.sets import DEFAULT_SET
from workbench.limits import ANSWER_CHARS, PROMPT_CHARS, check_text

SIDES = ("a", "b")


def mark_gold(workspace: Workspace, pair_id: str, right: str) -> Pair:
    """Mark side ``right`` ("a" or "b", as ``workbench pairs list`` names them) of a pair as the right one."""
    if right not in SIDES:
        raise WorkbenchError(f"the right side is 'a' or 'b', got {right!r}")
    store = pair_store(workspace)
    pair = store.all().get(pair_id)
    if pair is None:
        raise WorkbenchError(f"no pair {pair_id!r}: see `workbench pairs list`")
    if not pair.ready:
        raise WorkbenchError(f"pair {pair_id} has no answers yet: mark it once they are generated")
    marked = replace(pair, gold=right)
    store.put([marked])
    return marked


def gold_pair(record: dict[str, Any], set_name: str) -> Pair:
    """A pair from ``{"prompt", "answer_a", "answer_b", "right"}``, ``right`` being "a", "b" or the
    text of one of the two answers."""
    for name in ("prompt", "answer_a", "answer_b", "right"):
        if not isinstance(record.get(name), str) or not record[name].strip():
            raise WorkbenchError(f"{name} must be a non-empty string")
    check_text("the prompt", record["prompt"], PROMPT_CHARS)
    a, b, right = record["answer_a"].strip(), record["answer_b"].strip(), record["right"].strip()
    for answer in (a, b):
        check_text("an answer", answer, ANSWER_CHARS)
    if a == b:
        raise WorkbenchError("answer_a and answer_b are the same text: a gold pair needs a right and a wrong answer")
    side = right if right in SIDES else {a: "a", b: "b"}.get(right)
    if side is None:
        raise WorkbenchError("the right answer is neither answer_a nor answer_b: give \"a\", \"b\" or the "
                             "exact text of one of them")
    return make_pair(record["prompt"].strip(), "gold", Side("gold", answer=a), Side("gold", answer=b),
                     set_name=set_name, gold=side)


def gold_from_file(workspace: Workspace, path: Path, set_name: str = DEFAULT_SET) -> dict[str, int]:
    """Every line is checked before anything is written; the first bad one is named."""
    pairs = []
    for line_no, record in iter_jsonl(Path(path), numbered=True):
        try:
            pairs.append(gold_pair(record, set_name))
        except WorkbenchError as exc:
            raise JsonlError(Path(path), line_no, str(exc)) from None
    if not pairs:
        raise WorkbenchError(f"{Path(path).name}: no gold pairs in the file")
    return pair_store(workspace).add(pairs)


def make_gold(workspace: Workspace, count: int, set_name: str = DEFAULT_SET, seed: int | None = None) -> dict[str, int]:
    """``count`` gold pairs from the set's answered pairs whose question has none yet: a
    question's answer (right) against an answer to another question (wrong), the right one on a
    random side. Both sides are named ``gold``: the pair compares no models."""
    if count < 1:
        raise WorkbenchError(f"make at least one gold pair, got {count}")
    pairs_now = pair_store(workspace).all().values()
    checked = {p.prompt for p in pairs_now if p.gold}
    pool = [p for p in pairs_now if p.ready and not p.gold and p.set_name == set_name]
    if len({p.prompt for p in pool}) < 2:
        raise WorkbenchError(f"set {set_name!r} needs answered pairs on at least two different questions "
                             "to make gold pairs from")
    fresh = [p for p in pool if p.prompt not in checked]
    if not fresh:
        raise WorkbenchError(f"every question of set {set_name!r} already has a gold pair")
    rng = random.Random(seed)
    chosen = rng.sample(fresh, min(count, len(fresh)))
    pairs = []
    for pair in chosen:
        other = rng.choice([p for p in pool if p.prompt != pair.prompt])
        right = Side("gold", answer=rng.choice([pair.a, pair.b]).answer)
        wrong = Side("gold", answer=rng.choice([other.a, other.b]).answer)
        if right.answer.strip() == wrong.answer.strip():
            continue
        side = rng.choice(SIDES)
        a, b = (right, wrong) if side == "a" else (wrong, right)
        pairs.append(make_pair(pair.prompt, "gold", a, b, pair.chunk_ids, set_name, gold=side))
    return pair_store(workspace).add(pairs)
