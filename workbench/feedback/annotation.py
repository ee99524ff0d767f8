"""The annotation loop behind the Annotate tab: create pairs, pick the next one for an
annotator, stream (or reuse) its two answers, record a blind vote, undo, count progress."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from collections.abc import Iterator
from typing import Any

from storage import Workspace
from storage.jsonl import iter_jsonl
from workbench.chat.model_cache import CACHE
from workbench.chat.prompt import build_prompt
from workbench.chat.session import stream_generate
from workbench.errors import WorkbenchError
from workbench.feedback.pairs import Pair, PairStore, Side, make_pair
from workbench.feedback.votes import CHOICES, Vote, read_votes, record_vote, remove_vote
from workbench.models.loading import resolve
from workbench.settings import Settings

def pair_store(workspace: Workspace) -> PairStore:
    return PairStore(workspace.data / "pairs.jsonl")


def check_models(settings: Settings, *sides: Side) -> None:
    """Unknown models are refused before anything is generated."""
    for side in sides:
        resolve(side.model, settings.workspace, settings.base_model)
        if not 0 <= side.temperature <= 2 or not 1 <= side.max_new_tokens <= 4096:
            raise WorkbenchError("temperature must be in [0, 2] and max new tokens in [1, 4096]")


def create_pairs(settings: Settings, prompts: list[str], source: str, a: Side, b: Side,
                 rag: bool = False, k: int = 3) -> dict[str, int]:
    check_models(settings, a, b)
    if not prompts:
        raise WorkbenchError("no prompts given")
    pairs = []
    for question in prompts:
        chunk_ids: list[str] = []
        prompt = question
        if rag:
            from workbench.index.search import retriever_for

            hits = retriever_for(settings.workspace, settings.embedding_model).search(question, k)
            prompt, chunk_ids = build_prompt(question, [h.text for h in hits]), [h.chunk_id for h in hits]
        pairs.append(make_pair(prompt, source, replace(a, answer=""), replace(b, answer=""), chunk_ids))
    return pair_store(settings.workspace).add(pairs)


def pairs_from_chat_turns(settings: Settings, b: Side) -> dict[str, int]:
    """Each turn sent from Chat becomes a pair: its answer on one side, ``b`` generates the other."""
    turns = list(iter_jsonl(settings.workspace.chat_turns_file, strict=False))
    if not turns:
        raise WorkbenchError("no chat turns yet: use “Send to Annotate” in the Chat tab")
    check_models(settings, b)
    pairs = []
    for t in turns:
        request = t.get("request") or {}
        a = Side(t.get("model", "base"), float(request.get("temperature", 0.0)),
                 int(request.get("max_new_tokens", 256)), t["answer"])
        if (a.model, a.temperature) == (b.model, b.temperature) and b.temperature == 0:
            continue
        pairs.append(make_pair(t["prompt"], "chat", a, replace(b, answer=""), t.get("chunk_ids")))
    return pair_store(settings.workspace).add(pairs)


def my_votes(workspace: Workspace, annotator: str) -> list[dict[str, Any]]:
    if not workspace.feedback_file.exists():
        return []
    return [v for v in read_votes(workspace.feedback_file) if v["annotator"] == annotator]


def next_pair(workspace: Workspace, annotator: str, skipped: set[str] | None = None) -> Pair | None:
    done = {v["pair_id"] for v in my_votes(workspace, annotator)}
    for pair in pair_store(workspace).all().values():
        if pair.pair_id not in done and pair.pair_id not in (skipped or set()):
            return pair
    return None


def stream_answers(settings: Settings, pair: Pair) -> Iterator[tuple[str, str]]:
    """(left, right) answers as they grow; each side is generated once and saved."""
    store = pair_store(settings.workspace)
    texts = {"a": pair.a.answer, "b": pair.b.answer}
    order = ("b", "a") if pair.swapped else ("a", "b")

    def current():
        return texts[order[0]], texts[order[1]]

    yield current()
    for name in ("a", "b"):
        side = getattr(pair, name)
        if side.answer:
            continue
        loaded = CACHE.get(side.model, settings.workspace, settings.base_model)
        for piece, _ in stream_generate(loaded, pair.prompt, side.temperature, side.max_new_tokens):
            texts[name] += piece
            yield current()
        store.save_answer(pair, name, texts[name].strip())
        texts[name] = texts[name].strip()
    yield current()


def cast_vote(workspace: Workspace, pair: Pair, annotator: str, choice: str, comment: str = "",
              edited_answer: str = "") -> dict[str, Any]:
    """Record a vote in the order the annotator saw the answers (A = left)."""
    if choice not in CHOICES:
        raise WorkbenchError(f"unknown choice {choice!r}")
    left, right = pair.shown()
    if not left.answer or not right.answer:
        raise WorkbenchError("wait for both answers before voting")
    vote = Vote(pair_id=pair.pair_id, prompt=pair.prompt, answer_a=left.answer, answer_b=right.answer,
                choice=choice, annotator=annotator, model_a=left.label(), model_b=right.label(),
                edited_answer=(edited_answer or "").strip(), comment=(comment or "").strip(),
                chunk_ids=pair.chunk_ids)
    record_vote(workspace.feedback_file, vote)
    return vote.to_dict()


def undo_last(workspace: Workspace, annotator: str) -> str | None:
    """Remove this annotator's latest vote; returns its pair id (to show it again)."""
    mine = my_votes(workspace, annotator)
    if not mine:
        return None
    last = mine[-1]
    remove_vote(workspace.feedback_file, last["pair_id"], annotator)
    return last["pair_id"]


def progress(workspace: Workspace, annotator: str) -> dict[str, Any]:
    pairs = pair_store(workspace).all()
    votes = read_votes(workspace.feedback_file) if workspace.feedback_file.exists() else []
    per = Counter(v["annotator"] for v in votes)
    mine = {v["pair_id"] for v in votes if v["annotator"] == annotator} & set(pairs)
    return {"mine": len(mine), "left": len(pairs) - len(mine), "total": len(pairs),
            "per_annotator": dict(per)}


def progress_text(p: dict[str, Any]) -> str:
    totals = ", ".join(f"{a}: {n}" for a, n in sorted(p["per_annotator"].items())) or "none yet"
    return f"**{p['mine']} voted · {p['left']} left** of {p['total']} pairs · all annotators: {totals}"
