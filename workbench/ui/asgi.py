"""What the ASGI middlewares in front of Gradio share: answering a request themselves, and
calling the app while noting the status it answers with."""
from __future__ import annotations

import json


async def answer_json(send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


async def call_noting_status(app, scope, receive, send) -> int | None:
    """Run the app on the request; the HTTP status it answered with."""
    status: dict[str, int] = {}

    async def watch(message):
        if message["type"] == "http.response.start":
            status["code"] = message["status"]
        await send(message)

    await app(scope, receive, watch)
    return status.get("code")
