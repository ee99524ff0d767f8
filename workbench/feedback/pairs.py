"""A/B pairs to annotate, kept in ``data/pairs.jsonl`` (the last line of a pair id wins).

A pair is a prompt (with its RAG context when it has one) and two sides, each a model and its
sampling settings: two models, or one model with two settings. Answers are generated when the
pair is first shown and saved here, so a page reload shows the same answers instead of new ones.
Prompts come from Chat turns, typed text, an uploaded JSONL file or ``data/test.jsonl``.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from storage import append_jsonl
from storage.jsonl import JsonlError, iter_jsonl
from storage.runs import now_iso
from workbench.errors import WorkbenchError

PROMPT_KEYS = ("prompt", "question", "instruction")


@dataclass
class Side:
    model: str = "base"
    temperature: float = 0.0
    max_new_tokens: int = 256
    answer: str = ""

    def label(self) -> str:
        return f"{self.model} (temperature {self.temperature:g})"


@dataclass
class Pair:
    pair_id: str
    prompt: str
    source: str  # chat, typed, upload, test
    a: Side
    b: Side
    chunk_ids: list[str] = field(default_factory=list)
    created: str = ""

    @property
    def swapped(self) -> bool:
        """Blind display order: which side shows on the left is fixed per pair, not per page."""
        return hashlib.sha256(self.pair_id.encode()).digest()[0] % 2 == 1

    def shown(self) -> tuple[Side, Side]:
        return (self.b, self.a) if self.swapped else (self.a, self.b)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pair:
        return cls(**{**data, "a": Side(**data["a"]), "b": Side(**data["b"])})


def make_pair(prompt: str, source: str, a: Side, b: Side, chunk_ids: list[str] | None = None) -> Pair:
    if not prompt or not prompt.strip():
        raise WorkbenchError("the prompt is empty")
    if (a.model, a.temperature) == (b.model, b.temperature) and a.temperature == 0:
        raise WorkbenchError("both sides would give the same greedy answer: pick two models or a "
                             "temperature above 0")
    key = "\x00".join([prompt, a.model, f"{a.temperature:g}", b.model, f"{b.temperature:g}", str(a.max_new_tokens)])
    pair_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Pair(pair_id, prompt, source, a, b, list(chunk_ids or []), now_iso())


class PairStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def all(self) -> dict[str, Pair]:
        pairs: dict[str, Pair] = {}
        for record in iter_jsonl(self.path, strict=False):
            try:
                pairs[record["pair_id"]] = Pair.from_dict(record)
            except (KeyError, TypeError):
                continue
        return pairs

    def add(self, pairs: list[Pair]) -> dict[str, int]:
        """Store new pairs; a pair already there (same prompt and sides) keeps its answers."""
        existing = self.all()
        fresh = [p for p in pairs if p.pair_id not in existing]
        fresh = list({p.pair_id: p for p in fresh}.values())
        append_jsonl(self.path, [p.to_dict() for p in fresh])
        return {"added": len(fresh), "already_there": len(pairs) - len(fresh)}

    def save_answer(self, pair: Pair, side: str, answer: str) -> None:
        getattr(pair, side).answer = answer
        append_jsonl(self.path, [pair.to_dict()])


def prompts_from_jsonl(path: Path) -> list[str]:
    """Prompts of an uploaded JSONL file: ``prompt``/``question``/``instruction`` (Alpaca
    ``input`` appended), or the last user turn of chat ``messages``."""
    prompts = []
    for line_no, record in iter_jsonl(Path(path), numbered=True):
        prompt = prompt_of(record)
        if not prompt:
            raise JsonlError(Path(path), line_no, "no prompt: expected a prompt, question, "
                                                  "instruction or messages field with text")
        prompts.append(prompt)
    if not prompts:
        raise WorkbenchError(f"{Path(path).name}: no prompts in the file")
    return prompts


def prompt_of(record: dict[str, Any]) -> str:
    for key in PROMPT_KEYS:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            extra = record.get("input") if key == "instruction" else None
            return value.strip() + (f"\n\n{extra.strip()}" if isinstance(extra, str) and extra.strip() else "")
        if isinstance(value, list):  # conversational prompt: [{"role": "user", "content": ...}]
            record = {"messages": value}
    messages = record.get("messages")
    if isinstance(messages, list):
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[-1], str) and users[-1].strip():
            return users[-1].strip()
    return ""


def prompts_from_text(text: str) -> list[str]:
    """Typed prompts: one per line."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]
