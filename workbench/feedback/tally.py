"""The votes as counters need them: one small row per vote (no prompt, no answers), read from
``data/feedback.jsonl`` once per change of the file and kept in memory for the next page poll.

At 10,000 votes (33 MB of French RAG prompts and answers) a full read takes ~110 ms on two
cores and a cached one nothing (``benchmarks/annotation_stats.py``).
"""
from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from storage.jsonl import file_signature, iter_jsonl, lock_for


class VoteRow(NamedTuple):
    id: str
    pair_id: str
    annotator: str
    choice: str
    guidelines_version: int
    timestamp: str
    edited: bool


_cache: dict[str, tuple[tuple, list[VoteRow]]] = {}
_lock = threading.Lock()


def vote_rows(path: Path) -> list[VoteRow]:
    """One row per vote id (the last line of an id wins). Strict: a broken line raises
    ``JsonlError`` naming it, as every reader of the votes does."""
    path = Path(path)
    signature = file_signature(path)
    if signature is None:
        return []
    with _lock:
        cached = _cache.get(str(path))
        if cached and cached[0] == signature:
            return cached[1]
    latest: dict[str, VoteRow] = {}
    with lock_for(path):  # a line being appended is never read half-written
        for v in iter_jsonl(path):
            row = VoteRow(str(v.get("id", "")), str(v.get("pair_id", "")), str(v.get("annotator", "")),
                          str(v.get("choice", "")), _version(v.get("guidelines_version")), str(v.get("timestamp", "")),
                          bool((v.get("edited_answer") or "").strip()))
            latest[row.id] = row
    rows = list(latest.values())
    with _lock:
        _cache[str(path)] = (signature, rows)
    return rows


def _version(value) -> int:
    """A vote's guidelines version; 0 (none) for a line edited by hand into something else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def voters_by_pair(rows: list[VoteRow]) -> dict[str, dict[str, str]]:
    """pair id -> {annotator: choice}."""
    by_pair: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        by_pair[row.pair_id][row.annotator] = row.choice
    return by_pair
