"""What every tab shares: settings, users and the server-side permission check."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from workbench import audit
from workbench.auth import PermissionDenied, User, Users
from workbench.settings import Settings


@dataclass(frozen=True)
class UiContext:
    settings: Settings
    users: Users
    gated: list[tuple[str, Any]] = field(default_factory=list, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> "UiContext":
        return cls(settings, Users(settings.auth_file))

    def require(self, request: gr.Request | None, action: str, uploads=None) -> User:
        """The calling user if allowed to ``action``; a visible error otherwise.

        Gradio's API is callable without the page, so every handler that launches, cancels
        or deletes calls this first. Gradio stores an upload before the handler runs:
        ``uploads`` (a path or a list of them) are deleted at once when the call is refused.
        """
        username = getattr(request, "username", None) if request is not None else None
        try:
            return self.users.require(username, action)
        except PermissionDenied as exc:
            discard_uploads(uploads)
            audit.record(self.settings.workspace, username, action, outcome="refused", detail=str(exc),
                         address=getattr(getattr(request, "client", None), "host", None))
            raise gr.Error(f"Permission denied: {exc}") from None

    def only_for(self, action: str, *components) -> None:
        """Show ``components`` only to users allowed to ``action`` (set when the page loads). A
        convenience, not a guard: the handlers behind them check the permission themselves."""
        self.gated.extend((action, c) for c in components)

    def visibility(self, request: gr.Request | None) -> list:
        """(page load) One update per gated component, for the signed-in user."""
        username = getattr(request, "username", None) if request is not None else None
        try:
            user = self.users.get(username)
        except PermissionDenied:
            return [gr.update(visible=False) for _ in self.gated]
        return [gr.update(visible=user.can(action)) for action, _ in self.gated]


def discard_uploads(uploads) -> None:
    """Delete Gradio's stored copies of ``uploads`` (only files inside its upload folder)."""
    from gradio.utils import get_upload_folder

    if not uploads:
        return
    folder = Path(get_upload_folder()).resolve()
    for item in uploads if isinstance(uploads, (list, tuple)) else [uploads]:
        path = Path(str(item)).resolve()
        if path.is_relative_to(folder) and path.is_file():
            path.unlink(missing_ok=True)
