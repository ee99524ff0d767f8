"""Which pair an annotator sees next, so that a team's votes land where they are needed.

The next pair for an annotator is one they have not voted on nor skipped, whose set still wants
votes (``votes_per_pair``), and that is not already on the screens of enough other annotators to
meet that target. Showing a pair takes a lease on it (``data/leases.json``, one per annotator),
renewed while the pair stays on screen and dropped after ``LEASE_S`` of inactivity, so annotators
working at once never vote a pair past its target. Only a person renews a lease (showing the pair
again, after an undo or a refresh): a page left open on a pair lets it go. Pairs that already have votes come first (a
set's pairs are finished before new ones start); in a set ordered ``informative``, every other
pair is one the reward model is least sure of (``informative``); gold pairs sit at fixed random
places among the others, so nobody can tell them apart by their position.
"""
from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from pathlib import Path

from storage import Workspace
from storage.atomic import read_json, write_json_atomic
from storage.jsonl import lock_for
from workbench.feedback.informative import read_margins
from workbench.feedback.pairs import Pair, PairSummary, pair_store
from workbench.feedback.sets import PairSet, read_sets
from workbench.feedback.tally import vote_rows, voters_by_pair

LEASE_S = 300.0  # five minutes without a sign of the page: the pair goes back to the queue


def leases_file(workspace: Workspace) -> Path:
    return workspace.data / "leases.json"


def live_leases(workspace: Workspace, now: float | None = None) -> dict[str, dict]:
    """annotator -> {"pair_id", "expires"} for the leases not yet expired."""
    now = time.time() if now is None else now
    stored = read_json(leases_file(workspace), default={})
    if not isinstance(stored, dict):  # unreadable: leases are a courtesy, never a reason to stop voting
        return {}
    return {a: lease for a, lease in stored.items()
            if isinstance(lease, dict) and isinstance(lease.get("expires"), (int, float))
            and lease["expires"] > now and isinstance(lease.get("pair_id"), str)}


def target(pair: Pair | PairSummary, sets: dict[str, PairSet]) -> int:
    return (sets.get(pair.set_name) or PairSet(pair.set_name)).votes_per_pair


def _position(pair: Pair, index: int, count: int) -> int:
    if not pair.gold:
        return index
    return int.from_bytes(hashlib.sha256(pair.pair_id.encode()).digest()[:4], "big") % max(count, 1)


def queue_order(pairs: dict[str, Pair], voters: dict[str, dict[str, str]], sets: dict[str, PairSet],
                margins: dict[str, float]) -> list[Pair]:
    """Pairs with votes first (most first); then every other pair is the scored pair of an
    ``informative`` set whose two answers score closest, and the rest follow the order the pairs
    were made in. Doubt alone spends every vote on near-identical answers, which a young reward
    model cannot learn from yet (``benchmarks/informative.py``), so half the queue stays in order."""
    count = len(pairs)
    scored = [p.pair_id for p in pairs.values() if p.pair_id in margins
              and (sets.get(p.set_name) or PairSet(p.set_name)).order == "informative"]
    doubt = {pair_id: rank for rank, pair_id in enumerate(sorted(scored, key=lambda i: margins[i]))}

    def slot(pair: Pair, index: int) -> int:
        in_order = 2 * _position(pair, index, count) + 1
        return min(in_order, 2 * doubt[pair.pair_id]) if pair.pair_id in doubt else in_order

    keyed = [(-len(voters.get(p.pair_id, {})), slot(p, i), i, p) for i, p in enumerate(pairs.values())]
    return [p for *_, p in sorted(keyed, key=lambda k: k[:3])]


def claim_next_pair(workspace: Workspace, annotator: str, skipped: set[str] | None = None,
                    now: float | None = None) -> Pair | None:
    """The annotator's next pair, leased to them (the pair already on their screen while it still
    needs them); ``None`` when nothing is left for them, and their lease is dropped."""
    now = time.time() if now is None else now
    skipped = skipped or set()
    path = leases_file(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_for(path):
        leases = live_leases(workspace, now)
        pairs = pair_store(workspace).all()
        voters = voters_by_pair(vote_rows(workspace.feedback_file))
        sets = read_sets(workspace)
        holders: dict[str, set[str]] = defaultdict(set)
        for other, lease in leases.items():
            if other != annotator:
                holders[lease["pair_id"]].add(other)

        def open_to_me(pair: Pair) -> bool:
            taken = set(voters.get(pair.pair_id, {})) | holders[pair.pair_id]
            return (pair.ready and pair.pair_id not in skipped and annotator not in voters.get(pair.pair_id, {})
                    and len(taken) < target(pair, sets))

        mine = leases.get(annotator)
        current = pairs.get(mine["pair_id"]) if mine else None
        margins = read_margins(workspace) if any(s.order == "informative" for s in sets.values()) else {}
        chosen = current if current is not None and open_to_me(current) else next(
            (p for p in queue_order(pairs, voters, sets, margins) if open_to_me(p)), None)
        if chosen is None:
            leases.pop(annotator, None)
        else:
            leases[annotator] = {"pair_id": chosen.pair_id, "expires": now + LEASE_S}
        write_json_atomic(path, leases)
    return chosen


def renew_lease(workspace: Workspace, annotator: str, pair_id: str, now: float | None = None) -> None:
    """Keep the pair on screen leased (shown again to its annotator); written only when half the
    lease is gone. A vote past the target is still refused when it is cast (``annotation.cast_vote``)."""
    now = time.time() if now is None else now
    path = leases_file(workspace)
    with lock_for(path):
        leases = live_leases(workspace, now)
        lease = leases.get(annotator)
        if lease and lease["pair_id"] == pair_id and lease["expires"] - now > LEASE_S / 2:
            return
        leases[annotator] = {"pair_id": pair_id, "expires": now + LEASE_S}
        write_json_atomic(path, leases)


def release_lease(workspace: Workspace, annotator: str, now: float | None = None) -> None:
    """The annotator has voted or skipped: the pair is free for the others."""
    path = leases_file(workspace)
    if not path.exists():
        return
    with lock_for(path):
        leases = live_leases(workspace, now)
        if leases.pop(annotator, None) is not None:
            write_json_atomic(path, leases)
