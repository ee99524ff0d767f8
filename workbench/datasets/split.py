"""Deterministic train/test splits: a row goes to test when a hash of its key and the seed falls
in the first ``fraction`` of the hash space, so the same data and seed always split the same."""
from __future__ import annotations

import hashlib


def share_point(key: str, seed: int) -> float:
    """Where ``key`` falls in [0, 1), the same on every machine and run."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_test_share(key: str, fraction: float, seed: int) -> bool:
    return share_point(key, seed) < fraction
