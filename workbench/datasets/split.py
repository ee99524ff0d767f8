"""Deterministic train/test splits: a row goes to test when a hash of its key and the seed falls
in the first ``fraction`` of the hash space, so the same data and seed always split the same."""
from __future__ import annotations

import hashlib


def in_test_share(key: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
