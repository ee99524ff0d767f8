"""Sign-in throttling, per user name and per client address: a few free failures, then each
attempt waits a doubling delay after the last failure, then a lock-out. While a key waits or is
locked out, its attempts are answered without checking the password, so the right password
does not get in either. A success clears both keys. State is kept in the web process.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

FREE_FAILURES = 5  # failures before the first delay
MAX_DELAY_S = 60.0
LOCK_AFTER = 15  # failures within WINDOW_S that lock the key out
LOCKOUT_S = 15 * 60.0
WINDOW_S = 15 * 60.0  # failures older than this are forgotten


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    wait_s: float = 0.0
    reason: str = ""  # "backoff" or "locked"


class LoginThrottle:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._keys: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(username: str, address: str | None) -> list[str]:
        return [f"user:{username.lower()}"] + ([f"address:{address}"] if address else [])

    def check(self, username: str, address: str | None) -> Verdict:
        """May this attempt be checked now? The longest wait of its keys otherwise."""
        now, worst = self._clock(), Verdict(True)
        with self._lock:
            for key in self.keys(username, address):
                entry = self._current(key, now)
                if entry is None:
                    continue
                if entry.locked_until > now:
                    verdict = Verdict(False, entry.locked_until - now, "locked")
                elif entry.count >= FREE_FAILURES:
                    delay = min(MAX_DELAY_S, 2.0 ** (entry.count - FREE_FAILURES))
                    verdict = Verdict(entry.last + delay <= now, max(0.0, entry.last + delay - now), "backoff")
                else:
                    continue
                if not verdict.allowed and verdict.wait_s > worst.wait_s:
                    worst = verdict
        return worst

    def record(self, username: str, address: str | None, success: bool) -> bool:
        """Count the outcome of a checked attempt; True when this failure locked a key out."""
        now, locked = self._clock(), False
        with self._lock:
            for key in self.keys(username, address):
                if success:
                    self._keys.pop(key, None)
                    continue
                entry = self._current(key, now) or self._keys.setdefault(key, _Failures())
                entry.count, entry.last = entry.count + 1, now
                if entry.count >= LOCK_AFTER and entry.locked_until <= now:
                    entry.locked_until, locked = now + LOCKOUT_S, True
        return locked

    def _current(self, key: str, now: float) -> _Failures | None:
        entry = self._keys.get(key)
        if entry is not None and entry.locked_until <= now and now - entry.last > WINDOW_S:
            del self._keys[key]  # forgotten: old failures and an expired lock-out
            return None
        if entry is not None and entry.locked_until and entry.locked_until <= now:
            entry.count, entry.locked_until = FREE_FAILURES, 0.0  # after a lock-out: delays at once again
        return entry
