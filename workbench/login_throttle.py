"""Sign-in throttling. Three counters of failures: per user name, per client address, and per
(name, address). Each allows a few free failures, then each attempt waits a doubling delay after
the last failure. The name's delay holds back only addresses that have failed as that name, and
only the (name, address) counter locks out: strangers failing as ``admin`` from anywhere else
neither delay nor lock the admin signing in from an address that has not failed; each new
address a stranger uses gets one attempt before the name's delay holds it back too.

``begin`` decides and counts in one step under a lock: an attempt is counted as a failure the
moment it is let through, so many attempts sent at once are checked no more often than one at a
time would be. ``finish`` settles it: a success clears the name's counters and gives the address
its attempt back. While a key waits or is locked out, attempts are answered without checking the
password, so the right password does not get in either. State is kept in the web process.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

FREE_FAILURES = 5  # failures of a name (or of a name from one address) before the first delay
ADDRESS_FREE_FAILURES = 10  # a team behind one NAT address mistypes more often than one person
MAX_DELAY_S = 60.0
LOCK_AFTER = 15  # failures of one name from one address within WINDOW_S that lock that pair out
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


@dataclass(frozen=True)
class _Key:
    name: str
    free: int
    locks: bool


class LoginThrottle:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._keys: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(username: str, address: str | None) -> list[_Key]:
        name = username.strip().lower()
        keys = [_Key(f"user:{name}", FREE_FAILURES, False)]
        if address:
            keys += [_Key(f"address:{address}", ADDRESS_FREE_FAILURES, False),
                     _Key(f"pair:{name}\x00{address}", FREE_FAILURES, True)]
        return keys

    def begin(self, username: str, address: str | None) -> Verdict:
        """May this attempt be checked now? If so it is counted as a failure until ``finish``."""
        now = self._clock()
        with self._lock:
            verdict = self._verdict(username, address, now)
            if verdict.allowed:
                for key in self.keys(username, address):
                    entry = self._current(key.name, now) or self._keys.setdefault(key.name, _Failures())
                    entry.count, entry.last = entry.count + 1, now
        return verdict

    def check(self, username: str, address: str | None) -> Verdict:
        """The verdict ``begin`` would give, without counting anything."""
        with self._lock:
            return self._verdict(username, address, self._clock())

    def finish(self, username: str, address: str | None, success: bool) -> bool:
        """Settle an attempt ``begin`` let through; True when this failure locked the pair out."""
        now, locked = self._clock(), False
        with self._lock:
            for key in self.keys(username, address):
                entry = self._keys.get(key.name)
                if entry is None:
                    continue
                if success:
                    if key.name.startswith("address:"):
                        entry.count = max(0, entry.count - 1)
                    else:
                        del self._keys[key.name]
                elif key.locks and entry.count >= LOCK_AFTER and entry.locked_until <= now:
                    entry.locked_until, locked = now + LOCKOUT_S, True
        return locked

    def _verdict(self, username: str, address: str | None, now: float) -> Verdict:
        worst = Verdict(True)
        keys = self.keys(username, address)
        pair = self._current(keys[-1].name, now) if address else None
        for key in keys:
            if key.name.startswith("user:") and address and pair is None:
                continue  # the name's delay holds back addresses that failed as it, not a clean one
            entry = self._current(key.name, now)
            if entry is None:
                continue
            if entry.locked_until > now:
                verdict = Verdict(False, entry.locked_until - now, "locked")
            elif entry.count >= key.free:
                delay = min(MAX_DELAY_S, 2.0 ** (entry.count - key.free))
                verdict = Verdict(entry.last + delay <= now, max(0.0, entry.last + delay - now), "backoff")
            else:
                continue
            if not verdict.allowed and (worst.allowed or verdict.wait_s > worst.wait_s):
                worst = verdict
        return worst

    def _current(self, key: str, now: float) -> _Failures | None:
        entry = self._keys.get(key)
        if entry is not None and entry.locked_until <= now and now - entry.last > WINDOW_S:
            del self._keys[key]  # forgotten: old failures and an expired lock-out
            return None
        if entry is not None and entry.locked_until and entry.locked_until <= now:
            entry.count, entry.locked_until = FREE_FAILURES, 0.0  # after a lock-out: delays at once again
        return entry
