"""The audit log, ``audit.jsonl`` in the workspace: one line per launch, cancel, delete, merge,
import, sign-in and refusal (who, when, what, on which run or file, with what outcome). Appended
under the file's lock; read newest first by the Monitor tab (admins only) and ``workbench audit``.
"""
from __future__ import annotations

import getpass
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
