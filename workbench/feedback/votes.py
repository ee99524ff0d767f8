"""Preference votes: one line of ``data/feedback.jsonl`` per vote.

A vote's id is derived from its pair and its annotator, so a second submit of the same vote
(a double click, a re-vote after undo) replaces the earlier line instead of adding one. Appends
are locked and flushed: many annotators at once never lose or interleave lines.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from storage.jsonl import iter_jsonl, lock_for
from storage.runs import now_iso
from workbench.errors import WorkbenchError
from workbench.feedback.tally import VoteRow, vote_index
from workbench.limits import ANSWER_CHARS, COMMENT_CHARS, check_text

CHOICES = ("a", "b", "tie", "both_bad")


class VoteError(WorkbenchError):
    pass


def vote_id(pair_id: str, annotator: str) -> str:
    return hashlib.sha256(f"{pair_id}\x00{annotator}".encode()).hexdigest()[:16]


@dataclass
class Vote:
    pair_id: str
    prompt: str
    answer_a: str
    answer_b: str
    choice: str
    annotator: str
    model_a: str = ""
    model_b: str = ""
    edited_answer: str = ""  # a better answer written by the annotator: chosen against both
    comment: str = ""
    chunk_ids: list[str] = field(default_factory=list)
    timestamp: str = ""
    id: str = ""
    guidelines_version: int = 0  # the annotation guidelines on screen when the vote was cast (0: none)

    def __post_init__(self):
        self.id = self.id or vote_id(self.pair_id, self.annotator)
        self.timestamp = self.timestamp or now_iso()

    def validate(self) -> None:
        for name in ("pair_id", "annotator"):
            if not str(getattr(self, name) or "").strip():
                raise VoteError(f"{name} is empty")
        if not self.prompt.strip():
            raise VoteError("the prompt is empty")
        if not self.answer_a.strip() or not self.answer_b.strip():
            raise VoteError("an answer is empty: both answers are needed for a vote")
        if self.choice not in CHOICES:
            raise VoteError(f"choice must be one of {', '.join(CHOICES)}, got {self.choice!r}")
        check_text("the comment", self.comment, COMMENT_CHARS)
        check_text("the written answer", self.edited_answer, ANSWER_CHARS)
        if isinstance(self.guidelines_version, bool) or not isinstance(self.guidelines_version, int) \
                or self.guidelines_version < 0:
            raise VoteError(f"guidelines_version must be a whole number from 0, got {self.guidelines_version!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rewrite_without(path: Path, ids: set[str]) -> int:
    """Drop the lines of ``ids`` (caller holds the lock); returns how many were dropped."""
    kept, dropped = [], 0
    with open(path, "rb") as handle:
        for raw in handle:
            if _record_id(raw) in ids:
                dropped += 1
            else:
                kept.append(raw)
    if dropped:
        vote_index(path).replace_lines(kept)
    return dropped


def _record_id(raw: bytes) -> str | None:
    """The ``id`` of one JSONL line, parsed (a line that is not a JSON object has none)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record.get("id") if isinstance(record, dict) else None


def record_votes(path: Path, votes: list[Vote],
                 admit: Callable[[Vote, set[str]], None] | None = None) -> dict[str, int]:
    """Validate every vote first (nothing is written if one is bad), then write them: a vote
    whose id is already in the file replaces that line. ``admit(vote, annotators who already
    voted on its pair)`` runs under the file's lock and may refuse a vote by raising."""
    for vote in votes:
        vote.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = {v.id for v in votes}
    with lock_for(path):
        index = vote_index(path)
        rows = [VoteRow(*entry) for entry in index.entries(strict=False)]  # a broken line is the readers' to report
        if admit is not None:
            voters: dict[str, set[str]] = {}
            for row in rows:
                voters.setdefault(row.pair_id, set()).add(row.annotator)
            for vote in votes:
                admit(vote, voters.get(vote.pair_id, set()))
        present = ids & {row.id for row in rows}
        replaced = _rewrite_without(path, present) if present else 0
        index.append([v.to_dict() for v in votes])
    return {"written": len(votes), "replaced": replaced}


def record_vote(path: Path, vote: Vote, admit: Callable[[Vote, set[str]], None] | None = None) -> dict[str, int]:
    return record_votes(path, [vote], admit)


def read_votes(path: Path) -> list[dict[str, Any]]:
    """Every vote in the file (strict: a broken line raises ``JsonlError`` with its number)."""
    return list(iter_jsonl(Path(path)))


def remove_vote(path: Path, pair_id: str, annotator: str) -> bool:
    """Undo: drop this annotator's vote on this pair."""
    path = Path(path)
    if not path.exists():
        return False
    ids = {vote_id(pair_id, annotator)}
    with lock_for(path):
        if not ids & {entry[0] for entry in vote_index(path).entries(strict=False)}:
            return False
        return _rewrite_without(path, ids) > 0
