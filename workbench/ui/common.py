"""What every tab shares: settings, users and the server-side permission check."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from workbench import audit
from workbench.auth import PermissionDenied, User, Users
from workbench.settings import Settings


@dataclass(frozen=True)
class UiContext:
    settings: Settings
    users: Users

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
