"""A per-user quota on Gradio's upload cache: an ASGI middleware in front of
``/gradio_api/upload``, the route that stores a file before any handler (and its role check)
runs. Each user (each client address when no auth is configured) may upload ``quota`` bytes per
day, the age at which the cache's clean-up deletes uploads; past it, an upload is answered 413
with the figures and the refusal goes to the audit log. Gradio's own ``max_file_size`` still
bounds a single file.

The counts live in the web process: a restart forgets them, as the clean-up forgets the files.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from http.cookies import SimpleCookie
from typing import Callable

from workbench import audit
from workbench.ui.asgi import answer_json, call_noting_status

WINDOW_S = 24 * 3600


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"


class UploadLedger:
    """Bytes uploaded per user over the last ``window_s`` seconds."""

    def __init__(self, quota_bytes: int, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time):
        self.quota, self.window_s, self.clock = quota_bytes, window_s, clock
        self._entries: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def used(self, who: str) -> int:
        with self._lock:
            entries = self._entries[who]
            while entries and entries[0][0] < self.clock() - self.window_s:
                entries.popleft()
            return sum(size for _, size in entries)

    def add(self, who: str, size: int) -> None:
        with self._lock:
            self._entries[who].append((self.clock(), size))

    def refusal(self, who: str, incoming: int) -> str | None:
        """Why an upload of ``incoming`` bytes is refused, or None when it fits."""
        used = self.used(who)
        if used + incoming <= self.quota:
            return None
        return (f"Upload quota reached: {_size(used)} uploaded in the last 24 h, {_size(incoming)} more "
                f"would pass the {_size(self.quota)} allowed per user. Uploads free up as they age past a day.")


def _user(scope) -> str | None:
    """The signed-in user of the request, from Gradio's session cookie."""
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if not tokens or cookie_id is None:
        return None
    cookies = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            cookies.load(value.decode("latin-1"))
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        if name in cookies and cookies[name].value in tokens:
            return tokens[cookies[name].value]
    return None


class UploadQuota:
    def __init__(self, app, workspace, quota_bytes: int, ledger: UploadLedger | None = None):
        self.app, self.workspace = app, workspace
        self.ledger = ledger or UploadLedger(quota_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or \
                not scope["path"].rstrip("/").endswith("/gradio_api/upload"):
            return await self.app(scope, receive, send)
        address = (scope.get("client") or (None,))[0]
        user = _user(scope)
        who = user or f"address {address}"
        length = next((int(v) for k, v in scope.get("headers", []) if k == b"content-length" and v.isdigit()), 0)
        reason = self.ledger.refusal(who, length)
        if reason:
            audit.record(self.workspace, user, "upload", outcome="refused", address=address, detail=reason)
            return await answer_json(send, 413, {"detail": reason})
        received = 0

        async def counting():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        if await call_noting_status(self.app, scope, counting, send) == 200:
            self.ledger.add(who, received)
