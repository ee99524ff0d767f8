"""The audit log, ``audit.jsonl`` in the workspace: one line per launch, cancel, delete, merge,
import, sign-in and refusal (who, when, what, on which run or file, with what outcome). Appended
under the file's lock; read newest first by the Monitor tab (admins only) and ``workbench audit``.
"""
from __future__ import annotations

import getpass
import threading
import time
from typing import Any

from storage import Workspace
from storage.jsonl import append_jsonl, iter_jsonl
from storage.runs import now_iso

COLUMNS = ["time", "user", "action", "target", "outcome", "detail"]


def cli_user() -> str:
    """Who a command-line call is recorded as: the account that ran it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def record(workspace: Workspace, user: str | None, action: str, target: str | None = None,
           outcome: str = "done", detail: str = "", **extra: Any) -> None:
    entry = {"time": now_iso(), "user": user or "?", "action": action, "target": target,
             "outcome": outcome, "detail": detail, **extra}
    append_jsonl(workspace.audit_file, [entry])


def recent(workspace: Workspace, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, newest first (a damaged line is skipped, not fatal)."""
    if not workspace.audit_file.exists():
        return []
    entries = [e for e in iter_jsonl(workspace.audit_file, strict=False) if isinstance(e, dict)]
    return entries[::-1][:limit]


def rows(entries: list[dict[str, Any]]) -> list[list[Any]]:
    return [[e.get(c) or "" for c in COLUMNS] for e in entries]


class Refusals:
    """Permission refusals for the audit log, without a flood: the first refusal of a kind (user,
    action, reason) is written at once; identical ones within ``window_s`` are only counted, and
    the count rides on the next line written for that kind (``repeated``). A page left open
    whose timer keeps asking writes a line per ``window_s``, not one per tick."""

    def __init__(self, workspace: Workspace, window_s: float = 600.0, clock=time.monotonic):
        self.workspace, self.window_s, self.clock = workspace, window_s, clock
        self._seen: dict[tuple, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def record(self, user: str | None, action: str, detail: str, address: str | None = None) -> bool:
        """Count a refusal; True when it was written to the log (False: counted only)."""
        key, now = (user, action, detail), self.clock()
        with self._lock:
            written_at, repeats = self._seen.get(key, (None, 0))
            if written_at is not None and now - written_at < self.window_s:
                self._seen[key] = (written_at, repeats + 1)
                return False
            self._seen[key] = (now, 0)
        extra = {"repeated": repeats} if repeats else {}
        record(self.workspace, user, action, outcome="refused", detail=detail, address=address, **extra)
        return True
