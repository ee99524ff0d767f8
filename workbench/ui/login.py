"""The sign-in guard: an ASGI middleware in front of Gradio's ``/login`` route that throttles
attempts per user name and per client address (``workbench.login_throttle``) and writes every
sign-in, failure, delay and lock-out to the audit log. A throttled attempt is answered 429
without the password being checked."""
from __future__ import annotations

from workbench import audit
from workbench.login_throttle import LoginThrottle
from workbench.ui.asgi import answer_json, call_noting_status


class LoginGuard:
    def __init__(self, app, workspace, throttle: LoginThrottle | None = None):
        self.app, self.workspace = app, workspace
        self.throttle = throttle or LoginThrottle()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        username = await _username(scope, body)
        address = (scope.get("client") or (None,))[0]
        verdict = self.throttle.check(username, address)
        if not verdict.allowed:
            audit.record(self.workspace, username, "login", outcome="throttled", address=address,
                         detail=f"{verdict.reason}: {verdict.wait_s:.0f} s to wait")
            detail = (f"Too many failed sign-ins: try again in {max(1, round(verdict.wait_s))} s."
                      if verdict.reason == "backoff" else
                      f"Sign-in locked after repeated failures: try again in {max(1, round(verdict.wait_s / 60))} min.")
            return await answer_json(send, 429, {"detail": detail},
                                     [(b"retry-after", str(max(1, round(verdict.wait_s))).encode())])

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        success = await call_noting_status(self.app, scope, replay, send) == 200
        locked = self.throttle.record(username, address, success)
        audit.record(self.workspace, username, "login", outcome="done" if success else "failed", address=address,
                     detail="locked out" if locked else "")


async def _username(scope, body: bytes) -> str:
    """The user name of a sign-in form, URL-encoded (API clients) or multipart (Gradio's page)."""
    from starlette.requests import Request

    async def once():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
    except Exception:  # noqa: BLE001 - an unreadable form signs nobody in; Gradio answers it
        return ""
    return str(form.get("username") or "").strip()
