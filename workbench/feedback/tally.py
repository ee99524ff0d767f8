"""The votes as counters need them: one small row per vote (no prompt, no answers), read from
the index the vote writers keep beside ``data/feedback.jsonl`` (``storage.jsonl_index``) once
per change of the file and kept in memory for the next page poll.

At 10,000 votes (30 MB of French RAG prompts and answers) reading the votes themselves takes
~110 ms on two cores, their index ~10 ms, and a cached read nothing
(``benchmarks/annotation_stats.py``).
"""
from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from storage.jsonl import file_signature
from storage.jsonl_index import IndexedJsonl


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
    for entry in vote_index(path).entries():
        row = VoteRow(*entry)
        latest[row.id] = row
    rows = list(latest.values())
    with _lock:
        _cache[str(path)] = (signature, rows)
    return rows


def vote_index(path: Path) -> IndexedJsonl:
    """The votes file with its index of ``VoteRow`` fields; the vote writers append through it.
    Strict: a broken line raises ``JsonlError`` naming it, and the index never covers it."""
    return IndexedJsonl(path, _row_fields)


def _row_fields(v: dict) -> list:
    return [str(v.get("id", "")), str(v.get("pair_id", "")), str(v.get("annotator", "")), str(v.get("choice", "")),
            _version(v.get("guidelines_version")), str(v.get("timestamp", "")), bool((v.get("edited_answer") or "").strip())]


def _version(value) -> int:
    """A vote's guidelines version; 0 (none) for a line edited by hand into something else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def voters_by_pair(rows: list[VoteRow]) -> dict[str, dict[str, str]]:
    """pair id -> {annotator: choice}."""
    by_pair: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        by_pair[row.pair_id][row.annotator] = row.choice
    return by_pair
