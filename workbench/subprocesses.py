"""Child processes that must not outlive the process that started them (Linux)."""
from __future__ import annotations

import ctypes
import signal


PR_SET_PDEATHSIG = 1
# Looked up here, not in the child: between fork and exec of a threaded parent (a worker runs
# Huey and heartbeat threads) the child must not load libraries or take locks.
_prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when its parent dies, even by SIGKILL."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
