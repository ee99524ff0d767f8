"""Uploads to Gradio's cache, ``/gradio_api/upload``: the route that stores a file before any
handler (and its role check) runs. An ASGI middleware in front of it:

- counts the bytes that arrive, per user (per client address when no auth is configured), as
  they arrive, whatever the transfer encoding and however many uploads run at once: a chunk
  that would pass the day's quota ends the upload with 413, the refusal goes to the audit log;
- holds the body in a spooled file of its own until it is whole, then hands it to Gradio one
  upload at a time, so that an upload Gradio refuses (a bad file name, a file over
  ``max_file_size``) has its leftovers removed and its bytes given back: a refused or failed
  upload leaves nothing behind;
- notes who staged each stored file (``StagedUploads``): a handler given a staged file accepts
  it only from the user who uploaded it, and a refusal deletes only the caller's own files.

The counts and owners live in the web process: a restart forgets them, as the cache's
clean-up (files older than a day) forgets the files.
"""
from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Callable

from workbench import audit
from workbench.ui.asgi import answer_json, declared_length, drain, session_user

WINDOW_S = 24 * 3600
CHUNK = 256 * 1024
SPOOL_IN_MEMORY = 2**20
DRAIN_BYTES = 64 * 2**20  # past this, a refused upload's connection is closed on it


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"


class UploadLedger:
    """Bytes uploaded per user over the last ``window_s`` seconds, kept as a running total: a
    charge costs the same whatever was uploaded before. ``charge`` checks and counts in one
    step, so uploads running at once never pass the quota together."""

    def __init__(self, quota_bytes: int, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time):
        self.quota, self.window_s, self.clock = quota_bytes, window_s, clock
        self._entries: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._totals: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def _used(self, who: str) -> int:
        entries, oldest = self._entries[who], self.clock() - self.window_s
        while entries and entries[0][0] < oldest:
            self._totals[who] -= entries.popleft()[1]
        return self._totals[who]

    def _add(self, who: str, size: int) -> None:
        entries, now = self._entries[who], self.clock()
        if entries and now - entries[-1][0] < 1.0:  # one entry a second at most: the deque stays short
            entries[-1] = (entries[-1][0], entries[-1][1] + size)
        else:
            entries.append((now, size))
        self._totals[who] += size

    def used(self, who: str) -> int:
        with self._lock:
            return self._used(who)

    def charge(self, who: str, size: int, so_far: int = 0) -> str | None:
        """Count ``size`` more bytes for ``who`` (whose current upload has brought ``so_far``
        already); why not (nothing counted) when they would pass the quota."""
        with self._lock:
            used = self._used(who)
            if self.quota > 0 and used + size > self.quota:
                return (f"Upload quota reached: {_size(used - so_far)} uploaded in the last 24 h, this upload "
                        f"passed the {_size(self.quota)} allowed per user after {_size(so_far + size)}. "
                        "Uploads free up as they age past a day.")
            self._add(who, size)
            return None

    def refund(self, who: str, size: int) -> None:
        if size:
            with self._lock:
                self._add(who, -size)


class StagedUploads:
    """Which user staged each file of Gradio's upload cache (Gradio names a file by its content,
    so two users uploading the same file share a path and both own it)."""

    def __init__(self):
        self._owners: dict[str, set[str]] = defaultdict(set)
        self._lock = threading.Lock()

    @staticmethod
    def _key(path) -> str:
        return str(Path(str(path)).resolve())

    def staged(self, user: str, paths: list[str]) -> None:
        with self._lock:
            for path in paths:
                self._owners[self._key(path)].add(user)

    def owners(self, path) -> set[str]:
        with self._lock:
            return set(self._owners.get(self._key(path), set()))

    def owns(self, user: str, path) -> bool:
        with self._lock:
            return user in self._owners.get(self._key(path), set())

    def release(self, user: str, path) -> bool:
        """Forget ``user``'s claim on ``path``; True when nobody else holds it (it may be deleted)."""
        with self._lock:
            owners = self._owners.get(self._key(path))
            if not owners or user not in owners:
                return False
            owners.discard(user)
            if owners:
                return False
            del self._owners[self._key(path)]
            return True


class UploadQuota:
    def __init__(self, app, workspace, quota_bytes: int, staged: StagedUploads, upload_dir: Path,
                 request_cap: int, signed_in_only: bool, ledger: UploadLedger | None = None):
        self.app, self.workspace, self.staged = app, workspace, staged
        self.upload_dir = Path(upload_dir)
        self.request_cap, self.signed_in_only = request_cap, signed_in_only
        self.ledger = ledger or UploadLedger(quota_bytes)
        self._one_at_a_time = asyncio.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or \
                not scope["path"].rstrip("/").endswith("/gradio_api/upload"):
            return await self.app(scope, receive, send)
        address = (scope.get("client") or (None,))[0]
        user = session_user(scope)
        if user is None and self.signed_in_only:  # before a byte is read or stored
            return await answer_json(send, 401, {"detail": "Not authenticated"}, [(b"connection", b"close")])
        length = declared_length(scope)
        if length is not None and length > self.request_cap:
            return await answer_json(send, 413, {"detail": self._too_big()}, [(b"connection", b"close")])
        who = user or f"address {address}"
        self.workspace.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=self.workspace.cache) as spool:
            charged, more = 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.ledger.refund(who, charged)
                    return
                chunk = message.get("body", b"")
                reason = self._too_big() if charged + len(chunk) > self.request_cap else \
                    self.ledger.charge(who, len(chunk), charged)
                if reason:
                    self.ledger.refund(who, charged)
                    audit.record(self.workspace, user, "upload", outcome="refused", address=address, detail=reason)
                    await drain(receive, DRAIN_BYTES, message.get("more_body", False))
                    return await answer_json(send, 413, {"detail": reason}, [(b"connection", b"close")])
                charged += len(chunk)
                spool.write(chunk)
                more = message.get("more_body", False)
            spool.seek(0)
            status, body, answer = await self._forward(scope, spool)
        if status == 200:
            try:
                paths = [str(p) for p in json.loads(body)]
            except (ValueError, TypeError):
                paths = []
            self.staged.staged(who, paths)
        else:
            self.ledger.refund(who, charged)
        for message in answer:  # the client hears back once the owners are noted (or the leftovers gone)
            await send(message)

    def _too_big(self) -> str:
        return f"An upload request carries at most {_size(self.request_cap)} (WORKBENCH_MAX_UPLOAD_MB per file)."

    async def _forward(self, scope, spool) -> tuple[int | None, bytes, list[dict]]:
        """Hand the whole body to Gradio and keep its answer: (status, body, the messages). On
        an answer other than 200, remove the temporary files it left in the upload folder. One
        upload at a time, so those files are this one's."""
        answer: list[dict] = []

        async def replay():
            chunk = await asyncio.to_thread(spool.read, CHUNK)
            return {"type": "http.request", "body": chunk, "more_body": len(chunk) == CHUNK}

        async def keep(message):
            answer.append(message)

        async with self._one_at_a_time:
            before = self._loose_files()
            await self.app(scope, replay, keep)
            status = next((m["status"] for m in answer if m["type"] == "http.response.start"), None)
            if status != 200:
                for path in self._loose_files() - before:
                    path.unlink(missing_ok=True)
        body = b"".join(m.get("body", b"") for m in answer if m["type"] == "http.response.body")
        return status, body, answer

    def _loose_files(self) -> set[Path]:
        """Files directly in the upload folder: Gradio's temporary files (a stored upload lives
        in a folder named by its content's hash)."""
        if not self.upload_dir.is_dir():
            return set()
        return {p for p in self.upload_dir.iterdir() if p.is_file()}
