"""Files that come with a request or are asked for by URL, as an ASGI middleware in front of
Gradio:

- a call to a handler (``/gradio_api/queue/join``, ``/run/``, ``/call/``, ``/api/``) whose
  arguments hold a file given by an http(s) URL is refused before Gradio downloads it: files
  reach the app through the upload route, where they are counted against the quota and kept as
  their uploader's;
- a staged upload (``upload_quota.StagedUploads``) is served by ``/gradio_api/file=`` only to a
  user who uploaded it; to anyone else it does not exist (404). Files Gradio made for answers
  (an exported CSV, a report) are not staged uploads and are served as before.
"""
from __future__ import annotations

import json
from pathlib import Path

from workbench.ui.asgi import answer_json, read_body, replay, session_user
from workbench.ui.upload_quota import StagedUploads

CALLS = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/call/", "/gradio_api/api/")
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")
BODY_CAP = 8 * 2**20  # above the JSON call cap of http_policy, which refuses bigger bodies first


def remote_file(value) -> str | None:
    """The URL of the first file argument given by URL in a call's JSON, or None. Gradio fetches
    an input file whose ``path`` is a URL; its ``url`` (the page sends the server's own link to
    an upload there) is not read for inputs."""
    if isinstance(value, dict):
        meta = value.get("meta")
        if isinstance(meta, dict) and meta.get("_type") == "gradio.FileData":
            found = value.get("path")
            if isinstance(found, str) and found.strip().lower().startswith(("http://", "https://", "//")):
                return found
        values = value.values()
    elif isinstance(value, list):
        values = value
    else:
        return None
    return next((found for found in map(remote_file, values) if found), None)


class FileGuard:
    def __init__(self, app, staged: StagedUploads, signed_in: bool):
        self.app, self.staged, self.signed_in = app, staged, signed_in

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if scope["method"] == "POST" and any(route in path for route in CALLS):
            body = await read_body(scope, receive, BODY_CAP)
            if body is None:
                return await answer_json(send, 413, {"detail": "The request is too large."})
            try:
                url = remote_file(json.loads(body)) if body.strip().startswith(b"{") else None
            except ValueError:
                url = None  # not JSON: Gradio answers it
            if url:
                return await answer_json(send, 400, {"detail": "A file is uploaded (the upload route), not fetched "
                                                               f"from a URL: {url[:200]}"})
            return await self.app(scope, replay(body, receive), send)
        if self.signed_in and scope["method"] in ("GET", "HEAD"):
            for route in FILE_ROUTES:
                at = path.find(route)
                if at >= 0:
                    asked = Path(path[at + len(route):]).resolve()
                    owners = self.staged.owners(asked)
                    if owners and session_user(scope) not in owners:
                        return await answer_json(send, 404, {"detail": "File not found."})
        return await self.app(scope, receive, send)
