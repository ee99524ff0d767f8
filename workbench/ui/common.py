"""What every tab shares: settings, users, the server-side permission check and the uploads
each user staged."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from workbench.audit import Refusals
from workbench.auth import PermissionDenied, User, Users
from workbench.settings import Settings
from workbench.ui.upload_quota import StagedUploads

log = logging.getLogger("workbench.ui")


# Each tab and the action that opens it to a role. A page starts on the first tab of LANDING
# whose action the role holds: whoever adds documents on Corpus, an annotator on Annotate, a
# viewer on Monitor.
TABS = {"corpus": "chat", "chat": "chat", "annotate": "annotate", "train": "launch", "evaluate": "view",
        "monitor": "view"}
LANDING = (("corpus", "corpus"), ("annotate", "annotate"), ("monitor", "view"))


def _username(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def _paths(uploads) -> list[str]:
    if not uploads:
        return []
    return [str(u) for u in (uploads if isinstance(uploads, (list, tuple)) else [uploads]) if u]


@dataclass(frozen=True)
class UiContext:
    settings: Settings
    users: Users
    staged: StagedUploads = field(default_factory=StagedUploads, compare=False)
    refusals: Refusals | None = field(default=None, compare=False)
    gated: list[tuple[str, Any]] = field(default_factory=list, compare=False)
    timers: list[tuple[str, Any]] = field(default_factory=list, compare=False)

    def __post_init__(self):
        if self.refusals is None:
            object.__setattr__(self, "refusals", Refusals(self.settings.workspace))

    @classmethod
    def from_settings(cls, settings: Settings, users: Users | None = None,
                      staged: StagedUploads | None = None) -> "UiContext":
        return cls(settings, users or Users(settings.auth_file), staged or StagedUploads())

    def require(self, request: gr.Request | None, action: str, uploads=None) -> User:
        """The calling user if allowed to ``action``; a visible error otherwise.

        Gradio's API is callable without the page, so every handler that launches, cancels
        or deletes calls this first. Gradio stores an upload before the handler runs:
        ``uploads`` (a path or a list of them) must be the caller's own; when the call is
        refused, the caller's own are deleted at once (another user's are left alone).
        A refusal is one line in the server log and the audit log (repeats are counted).
        """
        username = _username(request)
        try:
            user = self.users.require(username, action)
        except PermissionDenied as exc:
            self.discard_uploads(username, uploads)
            address = getattr(getattr(request, "client", None), "host", None)
            if self.refusals.record(username, action, str(exc), address):
                log.warning("refused: %s", exc)
            raise gr.Error(f"Permission denied: {exc}", print_exception=False) from None
        if self.users.enabled and any(not self.staged.owns(user.username, p) for p in _paths(uploads)):
            raise gr.Error("That upload is not one of yours: choose the file again.", print_exception=False)
        return user

    def allowed(self, request: gr.Request | None, action: str) -> User | None:
        """The calling user when allowed to ``action``, else None, recording nothing: for what
        the page does by itself (a timer, a tab opening), never for an action a user asked for."""
        try:
            return self.users.require(_username(request), action)
        except PermissionDenied:
            return None

    def discard_uploads(self, username: str | None, uploads) -> None:
        """Delete Gradio's stored copies of ``uploads`` that are ``username``'s alone (only
        files inside its upload folder; without auth, every such file is the local admin's)."""
        from gradio.utils import get_upload_folder

        folder = Path(get_upload_folder()).resolve()
        for item in _paths(uploads):
            path = Path(item).resolve()
            if not path.is_relative_to(folder) or not path.is_file():
                continue
            if not self.users.enabled or self.staged.release(username or "", path):
                path.unlink(missing_ok=True)

    def only_for(self, action: str, *components) -> None:
        """Show ``components`` only to users allowed to ``action`` (set when the page loads). A
        convenience, not a guard: the handlers behind them check the permission themselves."""
        self.gated.extend((action, c) for c in components)

    def ticks_for(self, action: str, timer: gr.Timer) -> None:
        """Run ``timer`` only for users allowed to ``action``: the page load switches it off for
        the others, so a page never polls a handler its user may not call."""
        self.timers.append((action, timer))

    def landing(self, request: gr.Request | None, asked: str) -> tuple[str, str]:
        """(page load) The tab to open, the one in the page's address when the user may see it,
        else the one their role starts from; and the line naming who is signed in."""
        if not self.users.enabled:
            return (asked if asked in TABS else "corpus"), ""
        try:
            user = self.users.get(_username(request))
        except PermissionDenied:
            return "monitor", ""
        open_to = [tab for tab, action in TABS.items() if user.can(action)]
        start = asked if asked in open_to else next(t for t, action in LANDING if user.can(action))
        return start, f"Signed in as **{user.username}** ({user.role}) · [Sign out](logout)"

    def page_state(self, request: gr.Request | None) -> list:
        """(page load) One update per gated component, then one per gated timer, for the signed-in user."""
        try:
            user = self.users.get(_username(request))
        except PermissionDenied:
            user = None
        can = (lambda action: user is not None and user.can(action))
        # What the user may use is built visible and left alone: an update re-draws a container's
        # children from the server's copy, and what a person typed there meanwhile was lost (a
        # system prompt saved empty, a step count back to 0). A Tab ignores visible=False once
        # the page is drawn; "hidden" takes its button away.
        return ([gr.skip() if can(action) else gr.update(visible="hidden" if isinstance(c, gr.Tab) else False)
                 for action, c in self.gated]
                + [gr.skip() if can(action) else gr.Timer(active=False) for action, _ in self.timers])
