"""What the ASGI middlewares in front of Gradio share: answering a request themselves, reading a
body up to a cap and handing it on, and finding the request's session."""
from __future__ import annotations

import json


async def answer_json(send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def replay(body: bytes, receive):
    """A ``receive`` that hands the app ``body`` (already read) first, then what the client sends."""
    sent = False

    async def replayed():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def declared_length(scope) -> int | None:
    """The request's Content-Length, or None when it sends none (chunked transfer)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(scope, receive, cap: int) -> bytes | None:
    """The whole body, or None as soon as it is known to pass ``cap`` bytes (from its declared
    length, else while it streams in): a big body is refused before it is held in memory."""
    length = declared_length(scope)
    if length is not None and length > cap:
        return None
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def drain(receive, limit: int, more: bool = True) -> None:
    """Read and drop the rest of a refused request body (up to ``limit`` bytes), so the client
    reads the answer instead of a broken connection while it is still sending."""
    dropped = 0
    while more and dropped < limit:
        message = await receive()
        dropped += len(message.get("body", b""))
        more = message["type"] != "http.disconnect" and message.get("more_body", False)


def _cookies(scope) -> dict[str, str]:
    """The request's cookies exactly as Starlette (so Gradio) reads them: the first Cookie header,
    parsed leniently."""
    from starlette.requests import cookie_parser

    header = next((value for name, value in scope.get("headers", []) if name == b"cookie"), None)
    return cookie_parser(header.decode("latin-1")) if header else {}


def session_tokens(scope) -> list[str]:
    """Every Gradio session token the request carries (the secure cookie's and the other's)."""
    cookie_id = getattr(scope.get("app"), "cookie_id", None)
    if cookie_id is None:
        return []
    cookies = _cookies(scope)
    found = [cookies.get(f"access-token-{cookie_id}"), cookies.get(f"access-token-unsecure-{cookie_id}")]
    return [token for token in found if token]


def session_user(scope) -> str | None:
    """The signed-in user of the request, picked as Gradio picks it (the secure cookie if it is
    set, else the other)."""
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if not tokens or cookie_id is None:
        return None
    cookies = _cookies(scope)
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return tokens.get(token) if token else None
