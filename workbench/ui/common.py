"""What every tab shares: settings, users and the server-side permission check."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from workbench.auth import PermissionDenied, User, Users
from workbench.settings import Settings


@dataclass(frozen=True)
class UiContext:
    settings: Settings
    users: Users

    @classmethod
    def from_settings(cls, settings: Settings) -> "UiContext":
        return cls(settings, Users(settings.auth_file))

    def require(self, request: gr.Request | None, action: str) -> User:
        """The calling user if allowed to ``action``; a visible error otherwise.

        Gradio's API is callable without the page, so every handler that launches, cancels
        or deletes calls this first.
        """
        username = getattr(request, "username", None) if request is not None else None
        try:
            return self.users.require(username, action)
        except PermissionDenied as exc:
            raise gr.Error(f"Permission denied: {exc}") from None
