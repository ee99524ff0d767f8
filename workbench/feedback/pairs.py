"""A/B pairs to annotate, kept in ``data/pairs.jsonl`` (the last line of a pair id wins).

A pair is a prompt (with its RAG context when it has one) and two sides, each a model and its
sampling settings: two models, or one model with two settings. Answers are generated once, in
batches, by a ``pairs.generate`` job and saved here; the Annotate tab shows a pair only when both
answers are ready. Prompts come from Chat turns, typed text, an uploaded JSONL file or
``data/test.jsonl``.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from storage import Workspace
from storage.jsonl import JsonlError, file_signature, iter_jsonl
from storage.jsonl_index import IndexedJsonl
from storage.runs import now_iso
from workbench.errors import WorkbenchError
from workbench.feedback.sets import DEFAULT_SET

PROMPT_KEYS = ("prompt", "question", "instruction")
EMPTY_ANSWER = "(empty answer)"


@dataclass
class Side:
    model: str = "base"
    temperature: float = 0.0
    max_new_tokens: int = 256
    answer: str = ""
    repetition_penalty: float | None = None  # None: the model's default (see models.generation)
    stop_loops: bool = True
    note: str = ""  # e.g. the prompt was cut to fit the model's context

    def label(self) -> str:
        return f"{self.model} (temperature {self.temperature:g})"

    def sampling(self):
        from workbench.models.generation import Sampling

        return Sampling(self.temperature, self.max_new_tokens, self.repetition_penalty, self.stop_loops)


@dataclass
class Pair:
    pair_id: str
    prompt: str
    source: str  # chat, typed, upload, test
    a: Side
    b: Side
    chunk_ids: list[str] = field(default_factory=list)
    created: str = ""
    set_name: str = DEFAULT_SET
    gold: str = ""  # "a" or "b": the side known to be right (a check of the annotators), "" otherwise

    @property
    def ready(self) -> bool:
        """Both answers are there: the pair can be shown."""
        return bool(self.a.answer and self.b.answer)

    @property
    def swapped(self) -> bool:
        return swapped(self.pair_id)

    def shown(self) -> tuple[Side, Side]:
        return (self.b, self.a) if self.swapped else (self.a, self.b)

    def shown_letter(self, side: str) -> str:
        return shown_letter(self.pair_id, side)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pair:
        """A stored pair; ``TypeError`` for one edited by hand out of shape (readers skip it)."""
        pair = cls(**{**data, "a": Side(**data["a"]), "b": Side(**data["b"])})
        if not all(isinstance(v, str) for v in (pair.pair_id, pair.prompt, pair.set_name, pair.a.answer, pair.b.answer)) \
                or pair.gold not in ("", "a", "b"):
            raise TypeError(f"pair {data.get('pair_id')!r} is out of shape")
        return pair


class PairSummary(NamedTuple):
    """What counters need of a pair, read from the pair store's index."""
    pair_id: str
    set_name: str
    ready: bool
    gold: str

    def shown_letter(self, side: str) -> str:
        return shown_letter(self.pair_id, side)


def swapped(pair_id: str) -> bool:
    """Blind display order: which side shows on the left is fixed per pair, not per page."""
    return hashlib.sha256(pair_id.encode()).digest()[0] % 2 == 1


def shown_letter(pair_id: str, side: str) -> str:
    """The letter (a = left) that side ``a`` or ``b`` of the pair is shown under."""
    return {"a": "b", "b": "a"}[side] if swapped(pair_id) else side


def _summary_fields(record: dict[str, Any]) -> list:
    """``PairSummary`` fields of a stored pair; none for a pair edited out of shape (readers skip it)."""
    try:
        pair = Pair.from_dict(record)
    except (KeyError, TypeError):
        return []
    return [pair.pair_id, pair.set_name, pair.ready, pair.gold]


def make_pair(prompt: str, source: str, a: Side, b: Side, chunk_ids: list[str] | None = None,
              set_name: str = DEFAULT_SET, gold: str = "", variant: str = "") -> Pair:
    """A pair with an id derived from what makes it: prompt, sides, set, ``variant`` (e.g. the
    versions of the two models), so creating it again finds the one already there."""
    if not prompt or not prompt.strip():
        raise WorkbenchError("the prompt is empty")
    if not gold and (a.model, a.temperature) == (b.model, b.temperature) and a.temperature == 0:
        raise WorkbenchError("both sides would give the same greedy answer: pick two models or a "
                             "temperature above 0")
    parts = [prompt, a.model, f"{a.temperature:g}", b.model, f"{b.temperature:g}", str(a.max_new_tokens)]
    if set_name != DEFAULT_SET:  # the same prompt may be asked again in another set
        parts.append(set_name)
    if gold:  # a check pair: its sides are fixed answers, not settings
        parts += [a.answer, b.answer]
    if variant:
        parts.append(variant)
    pair_id = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
    return Pair(pair_id, prompt, source, a, b, list(chunk_ids or []), now_iso(), set_name, gold)


_read: dict[tuple[str, str], tuple[tuple, dict]] = {}  # (path, what) -> (file signature, pairs): read once per change
_read_lock = threading.Lock()


class PairStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = IndexedJsonl(self.path, _summary_fields, strict=False)

    def summaries(self) -> dict[str, PairSummary]:
        """Every pair's id, set, readiness and gold side, from the store's index (a 16 MB store of
        5,000 RAG pairs: ~8 ms instead of ~100 ms for ``all``)."""
        return self._read_once("summaries", lambda: {e[0]: PairSummary(*e) for e in self.file.entries() if e})

    def all(self) -> dict[str, Pair]:
        """Every pair by id. The pairs are shared with the next reader until the file changes:
        never change one in place (``dataclasses.replace``, then ``put``)."""
        def parse() -> dict[str, Pair]:
            pairs: dict[str, Pair] = {}
            for record in iter_jsonl(self.path, strict=False):
                try:
                    pairs[record["pair_id"]] = Pair.from_dict(record)
                except (KeyError, TypeError):
                    continue
            return pairs
        return self._read_once("pairs", parse)

    def _read_once(self, what: str, read) -> dict:
        """``read()``, kept in memory until the file changes; a copy of the dict each call."""
        signature = file_signature(self.path)
        if signature is None:
            return {}
        key = (str(self.path), what)
        with _read_lock:
            cached = _read.get(key)
        if cached and cached[0] == signature:
            return dict(cached[1])
        value = read()
        with _read_lock:
            _read[key] = (signature, value)
        return dict(value)

    def add(self, pairs: list[Pair]) -> dict[str, int]:
        """Store new pairs; a pair already there (same prompt and sides) keeps its answers."""
        existing = self.summaries()
        fresh = [p for p in pairs if p.pair_id not in existing]
        fresh = list({p.pair_id: p for p in fresh}.values())
        self.file.append([p.to_dict() for p in fresh])
        return {"added": len(fresh), "already_there": len(pairs) - len(fresh)}

    def put(self, pairs: list[Pair]) -> None:
        """Store new versions of pairs already there (the last line of a pair id wins)."""
        self.file.append([p.to_dict() for p in pairs])

    def save_answers(self, answers: list[tuple[str, str, str, str]]) -> int:
        """Store generated answers, ``(pair_id, side "a"|"b", answer, note)``, in one append; a side
        answered meanwhile keeps its first answer, an empty one is stored as ``EMPTY_ANSWER``.
        Returns how many were stored."""
        pairs = self.all()
        changed: dict[str, Pair] = {}
        stored = 0
        for pair_id, side_name, answer, note in answers:
            pair = changed.get(pair_id) or pairs.get(pair_id)
            side = getattr(pair, side_name) if pair else None
            if side is None or side.answer:
                continue
            if not answer.strip():  # still a side to vote against (and the pair must not wait forever)
                answer, note = EMPTY_ANSWER, "; ".join(filter(None, [note, "the model returned no text"]))
            changed[pair_id] = replace(pair, **{side_name: replace(side, answer=answer.strip(), note=note)})
            stored += 1
        self.file.append([p.to_dict() for p in changed.values()])
        return stored


def pair_store(workspace: Workspace) -> PairStore:
    return PairStore(workspace.data / "pairs.jsonl")


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
