"""Bring votes made elsewhere into ``data/feedback.jsonl``: full vote lines (the fields of
``Vote``) or plain preference pairs (``prompt``, ``chosen``, ``rejected``). Every line is checked
before anything is written; the first bad one is reported with its line number."""
from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path
from typing import Any

from storage.jsonl import JsonlError, iter_jsonl
from workbench.feedback.votes import Vote, VoteError, record_votes

VOTE_FIELDS = {f.name for f in fields(Vote)}


def vote_from_line(record: dict[str, Any], default_annotator: str) -> Vote:
    if {"chosen", "rejected"} <= set(record):
        for name in ("prompt", "chosen", "rejected"):
            if not isinstance(record.get(name), str):
                raise VoteError(f"{name} must be a string")
        pair = hashlib.sha256("\x00".join((record["prompt"], record["chosen"], record["rejected"])).encode()).hexdigest()[:16]
        return Vote(pair_id=str(record.get("pair_id") or pair), prompt=record["prompt"],
                    answer_a=record["chosen"], answer_b=record["rejected"], choice="a",
                    annotator=str(record.get("annotator") or default_annotator),
                    comment=str(record.get("annotator_comment") or record.get("comment") or ""),
                    model_a=str(record.get("model_chosen") or ""), model_b=str(record.get("model_rejected") or ""),
                    timestamp=str(record.get("timestamp") or ""))
    unknown = set(record) - VOTE_FIELDS
    if unknown:
        raise VoteError(f"unknown field(s) {', '.join(sorted(unknown))}: expected vote fields or prompt/chosen/rejected")
    missing = {"pair_id", "prompt", "answer_a", "answer_b", "choice"} - set(record)
    if missing:
        raise VoteError(f"missing field(s): {', '.join(sorted(missing))}")
    data = dict(record)
    data.setdefault("annotator", default_annotator)
    data.pop("id", None)  # recomputed from pair and annotator, so re-imports replace
    return Vote(**data)


def import_votes(source: Path, feedback: Path, default_annotator: str = "import") -> dict[str, int]:
    votes = []
    for line_no, record in iter_jsonl(Path(source), numbered=True):
        try:
            vote = vote_from_line(record, default_annotator)
            vote.validate()
        except (VoteError, TypeError) as exc:
            raise JsonlError(Path(source), line_no, str(exc)) from None
        votes.append(vote)
    if not votes:
        raise VoteError(f"{source}: no votes in the file")
    return record_votes(feedback, votes)
