"""Sign-in and sessions, as ASGI middlewares in front of Gradio.

``LoginGuard`` wraps Gradio's ``/login`` route: the form is capped in size before it is read,
attempts are throttled per user name, per client address and per pair of both
(``workbench.login_throttle``), and every sign-in, failure, delay and lock-out goes to the audit
log. A throttled attempt is answered 429 without the password being checked. A successful
sign-in's session token is noted with the user's credential stamp.

``SessionGuard`` checks that stamp on every request: a session whose user was disabled or
removed, or whose password changed since it signed in, is ended there and then (Gradio forgets
the token, so the request is answered as signed out).

The client address is the connection's peer, or what a proxy listed in
``WORKBENCH_TRUSTED_PROXIES`` forwarded (uvicorn rewrites it before these middlewares run).
"""
from __future__ import annotations

import threading
from http.cookies import SimpleCookie

from workbench import audit
from workbench.auth import Users
from workbench.limits import SIGN_IN_BODY_BYTES
from workbench.login_throttle import LoginThrottle
from workbench.ui.asgi import answer_json, read_body, replay, session_tokens


class Sessions:
    """Session token -> (user, credential stamp at sign-in)."""

    def __init__(self):
        self._stamps: dict[str, tuple[str, str | None]] = {}
        self._swept = 0
        self._lock = threading.Lock()

    def opened(self, token: str, username: str, stamp: str | None) -> None:
        with self._lock:
            self._stamps[token] = (username, stamp)

    def valid(self, token: str, username: str, users: Users) -> bool:
        with self._lock:
            noted = self._stamps.get(token)
        current = users.stamp(username)
        return noted is not None and noted[0] == username and current is not None and noted[1] == current

    def close(self, token: str) -> None:
        with self._lock:
            self._stamps.pop(token, None)

    def forget_all_but(self, live: dict, every: int = 1000) -> None:
        """Drop the stamps of sessions Gradio no longer holds (signed out), once the table has
        grown by ``every`` entries since the last sweep."""
        with self._lock:
            if len(self._stamps) < self._swept + every:
                return
            self._stamps = {t: v for t, v in self._stamps.items() if t in live}
            self._swept = len(self._stamps)


class LoginGuard:
    def __init__(self, app, workspace, users: Users, sessions: Sessions, throttle: LoginThrottle | None = None):
        self.app, self.workspace, self.users, self.sessions = app, workspace, users, sessions
        self.throttle = throttle or LoginThrottle()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        body = await read_body(scope, receive, SIGN_IN_BODY_BYTES)
        if body is None:
            return await answer_json(send, 413, {"detail": f"A sign-in form is at most {SIGN_IN_BODY_BYTES // 1024} KB."})
        username = await _username(scope, body)
        address = (scope.get("client") or (None,))[0]
        verdict = self.throttle.begin(username, address)
        if not verdict.allowed:
            audit.record(self.workspace, username, "login", outcome="throttled", address=address,
                         detail=f"{verdict.reason}: {verdict.wait_s:.0f} s to wait")
            detail = (f"Too many failed sign-ins: try again in {max(1, round(verdict.wait_s))} s."
                      if verdict.reason == "backoff" else
                      f"Sign-in locked after repeated failures: try again in {max(1, round(verdict.wait_s / 60))} min.")
            return await answer_json(send, 429, {"detail": detail},
                                     [(b"retry-after", str(max(1, round(verdict.wait_s))).encode())])

        stamp_before, answer = self.users.stamp(username), []

        async def keep(message):
            answer.append(message)

        await self.app(scope, replay(body, receive), keep)
        start = next((m for m in answer if m["type"] == "http.response.start"), {})
        success = start.get("status") == 200
        if success:
            token = _session_cookie(start.get("headers", []))
            if token:  # a password changed while this one was checked leaves the session unstamped: ended
                stamp = self.users.stamp(username)
                self.sessions.opened(token, username, stamp if stamp == stamp_before else None)
        locked = self.throttle.finish(username, address, success)
        audit.record(self.workspace, username, "login", outcome="done" if success else "failed", address=address,
                     detail="locked out" if locked else "")
        for message in answer:  # the client hears back once the session and the outcome are recorded
            await send(message)


def _session_cookie(headers) -> str | None:
    for name, value in headers:
        if name.lower() == b"set-cookie":
            cookie = SimpleCookie(value.decode("latin-1"))
            token = next((m.value for k, m in cookie.items() if k.startswith("access-token")), None)
            if token:
                return token
    return None


class SessionGuard:
    """Ends, on its next request, a session whose account changed since it signed in. Every
    session token the request carries is checked (whichever cookie Gradio would read)."""

    def __init__(self, app, users: Users, sessions: Sessions):
        self.app, self.users, self.sessions = app, users, sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            tokens = getattr(scope.get("app"), "tokens", None)
            for token in session_tokens(scope) if tokens is not None else []:
                if token in tokens and not self.sessions.valid(token, tokens[token], self.users):
                    tokens.pop(token, None)
                    self.sessions.close(token)
            if tokens is not None:
                self.sessions.forget_all_but(tokens)
        return await self.app(scope, receive, send)


async def _username(scope, body: bytes) -> str:
    """The user name of a sign-in form, URL-encoded (API clients) or multipart (Gradio's page)."""
    from starlette.requests import Request

    async def once():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
    except Exception:  # noqa: BLE001 - an unreadable form signs nobody in; Gradio answers it
        return ""
    return str(form.get("username") or "").strip()[:256]
