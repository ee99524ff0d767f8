"""The index on disk: ``data/index.faiss`` (FAISS, inner product on unit vectors),
``data/metadata.json`` (one entry per FAISS row: chunk id, document, source, page, section,
text) and ``data/embeddings.npy`` (the same rows' vectors).

Writes go to temp files renamed into place, metadata last, under the corpus lock (writers wait
for each other). Readers take no lock, so a search never waits for an ingest, a delete or a
rebuild: metadata.json names the inodes of the index and vectors files written with it, and a
reader that finds other files (a writer between its renames) reads again. Files that disagree
otherwise (a crash between renames) give a clear error, never wrong hits.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from storage import Unreadable, Workspace, read_json
from storage.atomic import atomic_file, atomic_path, dump_json
from storage.documents import DocumentStore
from storage.runs import now_iso
from workbench.errors import WorkbenchError

INDEX_TYPES = ("flat", "hnsw", "ivf")


class IndexUnusable(WorkbenchError):
    """The index files cannot be used as they are; the message says what to run."""


@dataclass
class CorpusIndex:
    meta: dict[str, Any]
    vectors: np.ndarray
    index: Any = field(repr=False)

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return self.meta["chunks"]

    @property
    def size(self) -> int:
        return len(self.meta["chunks"])

    def document_ids(self) -> set[str]:
        return set(self.meta.get("documents", {}))


def build_faiss(vectors: np.ndarray, index_type: str = "flat") -> Any:
    """A FAISS index over ``vectors``. HNSW for large corpora (fast, approximate, no training);
    IVF needs enough rows to train its lists and falls back to flat below that."""
    dim = vectors.shape[1]
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 96
    elif index_type == "ivf":
        nlist = max(1, min(4096, int(4 * math.sqrt(len(vectors)))))
        if len(vectors) < 39 * nlist:  # FAISS wants ~39 training points per list
            return build_faiss(vectors, "flat")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = max(1, nlist // 8)
    else:
        raise ValueError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    if len(vectors):
        index.add(vectors)
    return index


def empty(embedding: dict[str, Any], index_type: str = "flat") -> CorpusIndex:
    dim = int(embedding["dim"])
    meta = {"version": 1, "embedding_model": embedding["model"], "dim": dim,
            "embedding_dtype": embedding.get("dtype"), "index_type": index_type,
            "chunking": embedding.get("chunking", {}), "updated": now_iso(),
            "documents": {}, "chunks": []}
    vectors = np.zeros((0, dim), dtype=np.float32)
    return CorpusIndex(meta, vectors, build_faiss(vectors, "flat" if index_type == "ivf" else index_type))


def signature(workspace: Workspace) -> tuple:
    """Changes whenever the index files are replaced; readers cache on it."""
    out = []
    for path in (workspace.metadata_file, workspace.index_file, workspace.embeddings_file):
        try:
            st = path.stat()
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def read_meta(workspace: Workspace) -> dict[str, Any] | None:
    """metadata.json alone (model, chunking, documents, chunks), without FAISS or the vectors;
    None when nothing was indexed yet."""
    meta = read_json(workspace.metadata_file)
    if meta is None and not workspace.index_file.exists():
        return None
    if meta is None or isinstance(meta, Unreadable):
        reason = meta.reason if isinstance(meta, Unreadable) else "missing"
        raise IndexUnusable(f"{workspace.metadata_file}: {reason}; run `workbench ingest --rebuild`")
    return meta


READ_ATTEMPTS = 20  # a reader meeting a writer between its renames reads again, for up to ~1 s,
READ_RETRY_S = 0.05  # then waits for the writer's lock (files copied elsewhere keep other inodes)


def _inodes(workspace: Workspace) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for path in (workspace.index_file, workspace.embeddings_file):
        try:
            out[path.name] = path.stat().st_ino
        except FileNotFoundError:
            out[path.name] = None
    return out


def load(workspace: Workspace) -> CorpusIndex | None:
    """The index as last committed, or None when nothing was indexed yet. Needs no lock."""
    for _ in range(READ_ATTEMPTS):
        meta = read_meta(workspace)
        if meta is None:
            return None
        written = meta.get("files")
        if written is None:  # saved before the files were named: only the writers' lock makes it safe
            break
        if _inodes(workspace) != written:
            time.sleep(READ_RETRY_S)  # a writer is between its renames
            continue
        state = _read_files(workspace, meta)
        if _inodes(workspace) == written:
            return state
        time.sleep(READ_RETRY_S)
    # An index saved before the files were named, restored from a copy (other inodes), or a
    # writer slower than the retries: read under the writers' lock (re-entrant for a writer that
    # holds it), checking the row counts only.
    with DocumentStore(workspace).lock():
        meta = read_meta(workspace)
        return None if meta is None else _read_files(workspace, meta)


def _read_files(workspace: Workspace, meta: dict[str, Any]) -> CorpusIndex:
    try:
        index = faiss.read_index(str(workspace.index_file))
        vectors = np.load(workspace.embeddings_file, allow_pickle=False)
    except (RuntimeError, OSError, ValueError) as exc:
        raise IndexUnusable(f"cannot read the index files: {exc}; run `workbench ingest --rebuild`") from exc
    rows = len(meta.get("chunks", []))
    if not (index.ntotal == rows == len(vectors)):
        raise IndexUnusable(f"index files disagree ({index.ntotal} vectors in index.faiss, {len(vectors)} "
                          f"in embeddings.npy, {rows} chunks in metadata.json); run `workbench ingest --rebuild`")
    return CorpusIndex(meta, vectors, index)


def save(workspace: Workspace, state: CorpusIndex) -> None:
    """Write the three files; the caller holds the corpus lock. Every file is written whole
    before the first rename, so the renames follow each other closely (vectors, index, metadata
    last) and a reader rarely meets a half-committed set."""
    workspace.data.mkdir(parents=True, exist_ok=True)
    state.meta["updated"] = now_iso()
    state.meta["count"] = state.size
    # Nested: the innermost block writes everything; leaving the blocks renames the vectors,
    # then the index, then the metadata that names them.
    with atomic_file(workspace.metadata_file, "w") as meta_handle:
        with atomic_path(workspace.index_file) as index_tmp:
            with atomic_file(workspace.embeddings_file) as vectors_handle:
                np.save(vectors_handle, state.vectors, allow_pickle=False)
                faiss.write_index(state.index, str(index_tmp))
                state.meta["files"] = {workspace.embeddings_file.name: os.fstat(vectors_handle.fileno()).st_ino,
                                       workspace.index_file.name: index_tmp.stat().st_ino}  # a rename keeps it
                dump_json(state.meta, meta_handle)


def add_document(state: CorpusIndex, doc: dict[str, Any], chunks: list[dict[str, Any]],
                 vectors: np.ndarray) -> None:
    """Append a document's chunks (already carrying ``chunk_id``) and their vectors."""
    state.meta["documents"][doc["id"]] = {"source": doc["name"], "file": doc["file"],
                                          "sha256": doc["sha256"], "chunks": len(chunks)}
    state.meta["chunks"].extend(chunks)
    state.vectors = np.concatenate([state.vectors, vectors]) if len(state.vectors) else vectors
    if len(vectors):
        if state.meta["index_type"] == "ivf" and isinstance(state.index, faiss.IndexFlat):
            state.index = build_faiss(state.vectors, "ivf")  # enough rows now to train the lists?
        else:
            state.index.add(vectors)


def remove_documents(state: CorpusIndex, doc_ids: set[str]) -> int:
    """Drop every chunk of ``doc_ids``. A flat index removes the rows in place (the rows after
    them move up, as the chunk list does); IVF keeps its trained lists and takes the kept rows
    again (its ids do not move up); HNSW cannot remove, so its graph is rebuilt."""
    gone = np.array([i for i, c in enumerate(state.chunks) if c["doc_id"] in doc_ids], dtype=np.int64)
    for doc_id in doc_ids:
        state.meta["documents"].pop(doc_id, None)
    if len(gone):
        keep = np.ones(state.size, dtype=bool)
        keep[gone] = False
        state.meta["chunks"] = [c for c, kept in zip(state.chunks, keep) if kept]
        state.vectors = np.ascontiguousarray(state.vectors[keep])
        if isinstance(state.index, faiss.IndexFlat):
            state.index.remove_ids(faiss.IDSelectorBatch(gone))
        elif isinstance(state.index, faiss.IndexIVF):
            state.index.reset()
            state.index.add(state.vectors)
        else:
            state.index = build_faiss(state.vectors, state.meta["index_type"])
    return len(gone)


def reindex(state: CorpusIndex, index_type: str) -> None:
    """Switch index type without re-embedding."""
    state.meta["index_type"] = index_type
    state.index = build_faiss(state.vectors, index_type)
