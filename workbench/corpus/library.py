"""The document library: add files (a browser upload or paths on disk) to ``data/documents/``,
list them with their index status, delete them together with their chunks.

Adding only stores and registers a file (status ``pending``); the ``corpus.ingest`` job parses,
chunks and embeds. Files refused here (unsupported type, empty, over the size limit) are never
stored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import Workspace
from storage.documents import INDEXED, DocumentStore
from workbench.corpus.parse import SUPPORTED
from workbench.safe_text import display_name


@dataclass
class Added:
    name: str
    doc: dict[str, Any] | None = None
    created: bool = False
    error: str | None = None

    def message(self) -> str:
        if self.error:
            return f"{self.name}: refused: {self.error}"
        if not self.created:
            state = "already indexed" if self.doc["status"] == INDEXED else f"already added ({self.doc['status']})"
            same = "" if self.doc["name"] == self.name else f" as {self.doc['name']}"
            return f"{self.name}: {state}{same}, same content"
        return f"{self.name}: added"


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def check_file(path: Path, max_bytes: int, name: str | None = None) -> str | None:
    """Why this file cannot be added, or None. An upload kept under a temp name passes its
    original ``name``, which gives the type."""
    suffix = Path(name or path.name).suffix.lower()
    if suffix not in SUPPORTED:
        return f"unsupported type {suffix or '(no extension)'!r}; supported: {', '.join(sorted(SUPPORTED))}"
    size = path.stat().st_size
    if size == 0:
        return "empty file"
    if size > max_bytes:
        return f"file is {_mb(size)}, over the {_mb(max_bytes)} limit"
    return None


def expand(paths: list[str | Path]) -> tuple[list[Path], list[Added]]:
    """Files named, plus supported files found under folders named (recursively, hidden skipped)."""
    files, missing = [], []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(Path(root) / n for n in sorted(names)
                             if not n.startswith(".") and Path(n).suffix.lower() in SUPPORTED)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(Added(str(raw), error="no such file or folder"))
    return files, missing


def add_paths(workspace: Workspace, paths: list[str | Path], max_bytes: int,
              names: list[str] | None = None) -> list[Added]:
    """Store each file; ``names`` gives the original names of uploads kept under temp names."""
    if names is not None:
        files, results = [Path(p) for p in paths], []
    else:
        files, results = expand(paths)
    store = DocumentStore(workspace)
    for i, path in enumerate(files):
        name = display_name(names[i] if names is not None else path.name) or "(unnamed)"
        error = check_file(path, max_bytes, name)
        if error:
            results.append(Added(name, error=error))
            continue
        doc, created = store.add_file(path, name)
        results.append(Added(name, doc, created))
    return results


def list_documents(workspace: Workspace) -> list[dict[str, Any]]:
    return DocumentStore(workspace).list()


def reindex_config(workspace: Workspace, index_type: str, chunk_size: int, chunk_overlap: int) -> dict[str, Any]:
    """The ``corpus.ingest`` config that applies these settings: a type switch alone reuses the
    stored vectors; new chunk sizes mean re-embedding everything (``rebuild``)."""
    from workbench.index import store as index_store

    meta = index_store.read_meta(workspace)
    chunking = (meta.get("chunking") or {}) if meta is not None else {}
    same = (chunking.get("size"), chunking.get("overlap")) == (chunk_size, chunk_overlap)
    if meta is not None and same:
        return {"index_type": index_type}
    return {"rebuild": True, "index_type": index_type, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap}
