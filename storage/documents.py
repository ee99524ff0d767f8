"""The document registry: ``data/documents.json`` lists every uploaded original kept in
``data/documents/`` (safe, unique names), its sha256 and where it stands in the index.

One lock (``data/.corpus.lock``) guards the registry and the index files together, so an upload
in the web process, a delete from the CLI and an indexing job never write over each other.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from storage.atomic import Unreadable, read_json, write_json_atomic
from storage.paths import Workspace, safe_name
from storage.runs import now_iso

if TYPE_CHECKING:
    from filelock import FileLock  # imported when a lock is taken: 30 ms a command otherwise

PENDING, INDEXED, FAILED = "pending", "indexed", "failed"


class RegistryError(RuntimeError):
    """The registry file exists but cannot be read; nothing is written over it."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class DocumentStore:
    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.folder = workspace.documents
        self.registry = workspace.documents_file

    def lock(self) -> FileLock:
        """Held while the registry or the index files change: exclusive across processes and
        threads, re-entrant within a thread (one lock object per file in a process)."""
        self.workspace.data.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        return FileLock(str(self.workspace.data / ".corpus.lock"), is_singleton=True)

    def _load(self) -> list[dict[str, Any]]:
        data = read_json(self.registry, default={"documents": []})
        if isinstance(data, Unreadable):
            raise RegistryError(f"{data.path}: {data.reason}")
        return list(data.get("documents", []))

    def _save(self, documents: list[dict[str, Any]]) -> None:
        write_json_atomic(self.registry, {"version": 1, "documents": documents})

    def list(self) -> list[dict[str, Any]]:
        return self._load()

    def get(self, doc_id: str) -> dict[str, Any] | None:
        return next((d for d in self._load() if d["id"] == doc_id), None)

    def find(self, ref: str) -> dict[str, Any] | None:
        """A document by id, stored file name or original name (first match)."""
        docs = self._load()
        for key in ("id", "file", "name"):
            for doc in docs:
                if doc.get(key) == ref:
                    return doc
        return None

    def path_of(self, doc: dict[str, Any]) -> Path:
        return self.folder / doc["file"]

    def add_file(self, source: Path, name: str | None = None) -> tuple[dict[str, Any], bool]:
        """Copy ``source`` into the store; returns (document, created). Same bytes as a document
        already stored gives that document back and ``created=False``."""
        with open(source, "rb") as handle:
            return self.add_stream(handle, name or Path(source).name)

    def add_stream(self, stream: BinaryIO, name: str) -> tuple[dict[str, Any], bool]:
        self.folder.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".upload-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(1 << 20):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
            sha = digest.hexdigest()
            with self.lock():
                docs = self._load()
                same = next((d for d in docs if d["sha256"] == sha), None)
                if same is not None:
                    if not self.path_of(same).exists():  # same bytes again: repair a lost original
                        os.replace(tmp, self.path_of(same))
                        tmp = None
                    return same, False
                original = Path(name).name or "document"
                stem, ext = os.path.splitext(original)
                stored = f"{safe_name(stem or 'document')[:80]}-{sha[:10]}{'.' + safe_name(ext.lstrip('.')) if ext.strip('.') else ''}"
                os.replace(tmp, self.folder / stored)
                tmp = None
                doc = {"id": uuid.uuid4().hex[:12], "name": original, "file": stored,
                       "type": ext.lower().lstrip(".") or "unknown", "size": size, "sha256": sha,
                       "added": now_iso(), "status": PENDING, "error": None, "chunks": 0}
                docs.append(doc)
                self._save(docs)
                return doc, True
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass

    def update(self, doc_id: str, **fields: Any) -> dict[str, Any] | None:
        """Change fields of a document still in the registry; None when it was deleted meanwhile."""
        with self.lock():
            docs = self._load()
            for doc in docs:
                if doc["id"] == doc_id:
                    doc.update(fields)
                    self._save(docs)
                    return doc
        return None

    def remove(self, doc_id: str) -> dict[str, Any] | None:
        """Drop a document from the registry and delete its original. Caller holds the lock
        when the index must change in the same step."""
        with self.lock():
            docs = self._load()
            doc = next((d for d in docs if d["id"] == doc_id), None)
            if doc is None:
                return None
            self._save([d for d in docs if d["id"] != doc_id])
            try:
                self.path_of(doc).unlink()
            except FileNotFoundError:
                pass
            return doc

    def pending(self) -> list[dict[str, Any]]:
        return [d for d in self._load() if d.get("status") == PENDING]
