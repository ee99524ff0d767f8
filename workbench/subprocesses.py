"""Child processes that must not outlive the process that started them (Linux)."""
from __future__ import annotations

import ctypes
import os
import signal


PR_SET_PDEATHSIG = 1
# Looked up here, not in the child: between fork and exec of a threaded parent (a worker runs
# Huey and heartbeat threads) the child must not load libraries or take locks.
_prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when its parent dies, even by SIGKILL."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                found += [int(c) for c in handle.read().split()]
    except OSError:
        pass
    return found


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants now (0 once they are gone)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/statm", encoding="ascii") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
        todo += _children(current)
    return total


def machine_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def killed_by_signal_9(returncode: int | None, output: list[str]) -> bool:
    """The process (or, under torchrun, one of its ranks) ended by SIGKILL: on a machine without
    a human sending it, the kernel's out-of-memory killer."""
    return returncode == -signal.SIGKILL or any("Signal 9 (SIGKILL)" in line or "exitcode  : -9" in line
                                                for line in output)
