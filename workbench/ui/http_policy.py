"""What every request may weigh and every answer carries, as one ASGI middleware in front of
Gradio:

- a request body over ``REQUEST_BODY_BYTES`` is answered 413 before it is held in memory
  (uploads go through ``upload_quota`` and Gradio's ``max_file_size`` instead; the sign-in form
  has its own, smaller cap in ``login``);
- every answer carries a Content-Security-Policy that lets the page load scripts, styles,
  images and fonts from this server only (``data:`` and ``blob:`` images for charts), so text
  from a document, a prompt or a model answer cannot make a browser fetch from another host,
  plus ``nosniff`` and a same-origin referrer policy;
- over TLS (the request's scheme is ``https``, directly or from a trusted proxy), every cookie
  is marked ``Secure``.
"""
from __future__ import annotations

from workbench.limits import REQUEST_BODY_BYTES
from workbench.ui.asgi import answer_json, declared_length, drain

CSP = "; ".join([
    "default-src 'self'",
    # Gradio's front end runs inline bootstrap code and compiles templates at run time
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "media-src 'self' data: blob:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "frame-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'self'",
])
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin")]
DRAIN_BYTES = 16 * 2**20  # a refused body up to this size is read to its end, so the client hears why
UNCAPPED = ("/gradio_api/upload",)  # counted and capped by the upload quota instead


class HttpPolicy:
    def __init__(self, app, body_cap: int = REQUEST_BODY_BYTES):
        self.app, self.body_cap = app, body_cap

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        secure = scope.get("scheme") == "https"

        async def dressed(message):
            if message["type"] == "http.response.start":
                headers = [(k, _secure_cookie(v) if secure and k.lower() == b"set-cookie" else v)
                           for k, v in message.get("headers", [])]
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in HEADERS if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] in ("POST", "PUT", "PATCH") and not scope["path"].rstrip("/").endswith(UNCAPPED):
            length = declared_length(scope)
            if length is not None and length > self.body_cap:
                if length <= DRAIN_BYTES:
                    await drain(receive, DRAIN_BYTES)
                return await self._too_big(dressed)
            receive = self._capped(receive)
        try:
            await self.app(scope, receive, dressed)
        except _TooBig:
            await drain(receive, DRAIN_BYTES)
            await self._too_big(dressed)

    def _capped(self, receive):
        size = 0

        async def capped():
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > self.body_cap:
                raise _TooBig
            return message

        return capped

    async def _too_big(self, send):
        await answer_json(send, 413, {"detail": f"The request is over {self.body_cap // 2**20} MB."},
                          [(b"connection", b"close")])


class _TooBig(Exception):
    pass


def _secure_cookie(value: bytes) -> bytes:
    return value if b"secure" in value.lower().replace(b" ", b"").split(b";") else value + b"; Secure"
