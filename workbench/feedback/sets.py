"""Pair sets: the pairs created together (one "Create pairs", one CLI call) and the settings that
decide how they are annotated, kept in ``data/pair_sets.json``.

``votes_per_pair`` is how many annotators vote on each pair of the set: 1 covers the most pairs,
2 or 3 measure agreement. Changing it never changes a vote already cast: a pair whose target is
met simply leaves everyone's queue. Pairs written before sets existed belong to ``default``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from storage import Workspace
from storage.atomic import Unreadable, read_json, write_json_atomic
from storage.jsonl import lock_for
from storage.runs import now_iso
from workbench.errors import WorkbenchError

DEFAULT_SET = "default"
MAX_VOTES_PER_PAIR = 10
ORDERS = ("created", "informative")
NAME = re.compile(r"[^\W_][\w .-]{0,63}")  # letters of any language, digits, spaces, _ . -


@dataclass
class PairSet:
    name: str = DEFAULT_SET
    votes_per_pair: int = 1
    order: str = "created"  # created: oldest first; informative: where a vote teaches most first
    created: str = ""

    def validate(self) -> None:
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise WorkbenchError(f"pair set name {self.name!r}: use 1 to 64 letters, digits, spaces, '_', '-' "
                                 "or '.', starting with a letter or digit")
        votes = self.votes_per_pair
        if isinstance(votes, bool) or not isinstance(votes, int) or not 1 <= votes <= MAX_VOTES_PER_PAIR:
            raise WorkbenchError(f"votes per pair must be a whole number from 1 to {MAX_VOTES_PER_PAIR}, "
                                 f"got {votes!r}")
        if self.order not in ORDERS:
            raise WorkbenchError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")


def sets_file(workspace: Workspace) -> Path:
    return workspace.data / "pair_sets.json"


def read_sets(workspace: Workspace) -> dict[str, PairSet]:
    """Every set by name; ``default`` is always there (with its defaults until saved)."""
    stored = read_json(sets_file(workspace), default=None)
    if isinstance(stored, Unreadable):
        raise WorkbenchError(f"{stored.path}: {stored.reason}; fix the file or remove it (its sets go back to "
                             "one vote per pair)")
    known = {f.name for f in fields(PairSet)}
    sets = {DEFAULT_SET: PairSet()}
    for name, record in (stored or {}).items() if isinstance(stored, dict) else ():
        if isinstance(record, dict):
            found = PairSet(**{k: v for k, v in record.items() if k in known} | {"name": name})
            try:
                found.validate()
            except WorkbenchError as exc:
                raise WorkbenchError(f"{sets_file(workspace)}: set {name!r}: {exc}; fix the file or save the "
                                     "set again") from None
            sets[name] = found
    return sets


def pair_set(workspace: Workspace, name: str) -> PairSet:
    return read_sets(workspace).get(name or DEFAULT_SET) or PairSet(name)


def save_set(workspace: Workspace, name: str, votes_per_pair: int | None = None,
             order: str | None = None) -> PairSet:
    """Create a set or change its settings (only the ones given); validated before anything is written."""
    path = sets_file(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_for(path):
        sets = read_sets(workspace)
        current = sets.get(name) or PairSet(name, created=now_iso())
        updated = PairSet(name, current.votes_per_pair if votes_per_pair is None else votes_per_pair,
                          current.order if order is None else order, current.created or now_iso())
        updated.validate()
        sets[name] = updated
        write_json_atomic(path, {n: asdict(s) for n, s in sets.items()})
    return updated
