"""The corpus index: the chunk store ``data/corpus.db`` (``storage.chunkdb``: texts, metadata,
vectors, the sparse side) and ``data/index.faiss``, a FAISS snapshot of the vectors whose ids
are the chunks' ids.

A write (adding or deleting a document) changes that document's rows in corpus.db and nothing
else: chunks added since the snapshot form a small flat *delta* index in memory, and chunks
deleted since are *tombstones* that searches skip. When the delta and the tombstones pass a
tenth of the snapshot (or the index type changes), ``store_writes.compact`` writes a new snapshot, built
from the stored vectors without blocking anyone, and ``data/metadata.json``, the readable
export of every chunk (its ``id`` is its FAISS id).

Readers take no lock and never write: each load reads one commit of corpus.db, and the
snapshot file whose inode that commit names (a reader meeting a compaction between its rename
and its commit reads again). A process that holds an index reloads only what changed since
(``load(previous=)``). The writes are in ``store_writes``, the FAISS index types in
``faiss_index``, and the move of an index saved before corpus.db existed in ``legacy_import``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storage import Workspace
from storage.chunkdb import ChunkDB
from storage.documents import DocumentStore
from workbench.errors import WorkbenchError
from workbench.index import lexical
from workbench.index.embedder import NO_PROMPTS
from workbench.index.faiss_index import build_faiss, tune

COMPACT_SHARE = 0.1  # compact when rows added or deleted since the snapshot pass this share of it
READ_ATTEMPTS = 20  # a reader meeting a compaction between its rename and its commit reads again,
READ_RETRY_S = 0.05  # then reads under the writers' lock (a copied workspace keeps other inodes)
EMPTY_SNAPSHOT = {"rows": 0, "max_id": 0, "tombstone_seq": 0, "inode": None, "index_type": "flat"}


class IndexUnusable(WorkbenchError):
    """The index files cannot be used as they are; the message says what to run."""


@dataclass
class CorpusIndex:
    """One commit of the index in memory: the snapshot, the delta since, the tombstones."""

    meta: dict[str, Any]  # settings, documents, count
    snapshot_record: dict[str, Any]
    snapshot: Any = field(repr=False)  # a FAISS index, or None when the snapshot is empty
    delta_ids: np.ndarray = field(repr=False)
    delta_vectors: np.ndarray = field(repr=False)
    tombstones: np.ndarray = field(repr=False)
    tombstone_seq: int = 0
    max_id: int = 0

    def __post_init__(self):
        import faiss

        self.delta = build_faiss(self.delta_vectors, "flat", self.delta_ids) if len(self.delta_ids) else None
        self._kept = None
        if len(self.tombstones):  # FAISS keeps pointers: the batch must live as long as the selector
            self._batch = faiss.IDSelectorBatch(self.tombstones)
            self._kept = faiss.IDSelectorNot(self._batch)

    @property
    def size(self) -> int:
        return int(self.meta.get("count", 0))

    def document_ids(self) -> set[str]:
        return set(self.meta.get("documents", {}))

    def _params(self, index: Any):
        import faiss

        if self._kept is None:
            return None
        if isinstance(index, faiss.IndexIVF):
            return faiss.SearchParametersIVF(sel=self._kept, nprobe=index.nprobe)
        return faiss.SearchParameters(sel=self._kept)

    def search(self, vectors: np.ndarray, depth: int) -> list[list[tuple[int, float]]]:
        """For each query, (chunk id, inner product) of the ``depth`` nearest live chunks."""
        found: list[list[tuple[int, float]]] = [[] for _ in range(len(vectors))]
        for index in (self.snapshot, self.delta):
            if index is None or index.ntotal == 0:
                continue
            scores, ids = index.search(vectors, min(depth, index.ntotal), params=self._params(index))
            for qi in range(len(vectors)):
                found[qi].extend((int(i), float(s)) for i, s in zip(ids[qi], scores[qi]) if i >= 0)
        return [sorted(hits, key=lambda hit: -hit[1])[:depth] for hits in found]


def saved_before_chunk_store(workspace: Workspace) -> bool:
    """An index saved as metadata.json + embeddings.npy, before corpus.db existed, waits to be
    moved into it (``legacy_import``, the first step of every ingest job)."""
    return (not workspace.corpus_db.exists() and workspace.metadata_file.exists()
            and workspace.embeddings_file.exists())


def open_db(workspace: Workspace) -> ChunkDB | None:
    """corpus.db; None when nothing was indexed yet."""
    if not workspace.corpus_db.exists():
        if saved_before_chunk_store(workspace):
            raise IndexUnusable(f"the index in {workspace.data} was saved by an earlier version of the workbench: "
                                "run `workbench ingest` (or add a document in the Corpus tab) to move it into corpus.db")
        return None
    return ChunkDB(workspace.corpus_db)


def read_meta(workspace: Workspace) -> dict[str, Any] | None:
    """Settings (model, chunking, index type), documents and chunk count, without FAISS; None
    when nothing was indexed yet."""
    db = open_db(workspace)
    if db is None:
        return None
    with db, db.reading():
        return meta_of(db)


def meta_of(db: ChunkDB) -> dict[str, Any] | None:
    settings = db.settings()
    if "embedding_model" not in settings:
        return None
    settings["documents"], settings["count"] = db.documents(), settings.get("rows", 0)
    return settings


def prompts_built_with(meta: dict[str, Any]) -> dict[str, str]:
    """The query and passage prompts the index's vectors were made with (none before they were
    recorded: the models used then took none)."""
    return dict(meta.get("embedding_prompts") or NO_PROMPTS)


def same_embedding(meta: dict[str, Any], model: str, prompts: dict[str, str] | None = None) -> None:
    """Refuse to mix vectors of another model, or of the same model under other prompts (when
    ``prompts`` is given): their similarities do not compare."""
    if meta.get("embedding_model") != model:
        raise IndexUnusable(f"the index was built with the embedding model {meta.get('embedding_model')!r}, not "
                            f"{model!r}: run `workbench ingest --rebuild` to re-embed every document with {model!r}")
    built = prompts_built_with(meta)
    if prompts is not None and built != prompts:
        raise IndexUnusable(f"the index was built with the embedding prompts {built}, and {model!r} now asks for "
                            f"{prompts}: run `workbench ingest --rebuild` to re-embed every document")


def signature(workspace: Workspace, db: ChunkDB | None = None) -> tuple | None:
    """Changes with every commit; readers cache on it."""
    try:
        inode = workspace.corpus_db.stat().st_ino
    except FileNotFoundError:
        return None
    if db is None:
        with ChunkDB(workspace.corpus_db) as own:
            return inode, own.get("generation", 0)
    return inode, db.get("generation", 0)


def vectors_after(db: ChunkDB, dim: int, after_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ids and vectors of the live chunks after ``after_id``, in id order, read into one array."""
    count = db.count_after(after_id)
    ids, vectors = np.empty(count, dtype=np.int64), np.empty((count, dim), dtype=np.float32)
    n = 0
    for n, (chunk_id, blob) in enumerate(db.vectors(after_id), start=1):
        ids[n - 1], vectors[n - 1] = chunk_id, np.frombuffer(blob, dtype=np.float32)
    return ids[:n], vectors[:n]


_copies: set[tuple] = set()  # snapshot files this process found to be copies (a backup restored)


def _file_key(workspace: Workspace, record: dict[str, Any]) -> tuple:
    """The recorded inode and the file that is there in its place (inode, size, mtime)."""
    st = workspace.index_file.stat()
    return record.get("inode"), st.st_ino, st.st_size, st.st_mtime_ns


def load(workspace: Workspace, previous: CorpusIndex | None = None) -> CorpusIndex | None:
    """The index as last committed, or None when nothing was indexed yet. Needs no lock. Given
    the ``previous`` load of the same snapshot, reads only the rows and tombstones since."""
    db = open_db(workspace)
    if db is None:
        return None
    with db:
        for _ in range(READ_ATTEMPTS):
            with db.reading():
                state = _load(workspace, db, previous, check_inode=True)
            if state is not False:
                return state
            time.sleep(READ_RETRY_S)
        with DocumentStore(workspace).lock():  # no compaction can be half-way now: the file is a copy
            with db.reading():
                state = _load(workspace, db, previous, check_inode=False)
            if state is not None and state.snapshot is not None:
                _copies.add(_file_key(workspace, state.snapshot_record))  # checked whole: read it freely
            return state


def _load(workspace: Workspace, db: ChunkDB, previous: CorpusIndex | None, check_inode: bool):
    meta = meta_of(db)
    if meta is None:
        return None
    record = meta.get("snapshot") or EMPTY_SNAPSHOT
    dim = int(meta["dim"])
    if previous is not None and previous.snapshot_record == record:
        snapshot, after, seq = previous.snapshot, previous.max_id, previous.tombstone_seq
        ids, vectors = vectors_after(db, dim, after)
        ids, vectors = np.concatenate([previous.delta_ids, ids]), np.concatenate([previous.delta_vectors, vectors])
        tombstones = np.union1d(previous.tombstones, np.array(db.tombstones(seq), dtype=np.int64))
    else:
        snapshot = _read_snapshot(workspace, record, check_inode)
        if snapshot is False:
            return False
        ids, vectors = vectors_after(db, dim, record["max_id"])
        tombstones = np.unique(np.array(db.tombstones(), dtype=np.int64))
    return CorpusIndex(meta, record, snapshot, ids, vectors, tombstones.astype(np.int64),
                       db.tombstone_seq(), max(record["max_id"], int(ids[-1]) if len(ids) else 0))


def _read_snapshot(workspace: Workspace, record: dict[str, Any], check_inode: bool):
    """The FAISS snapshot the record names; False when the file on disk is another one."""
    import faiss

    if not record["rows"]:
        return None
    path = workspace.index_file
    try:
        check_inode = check_inode and _file_key(workspace, record) not in _copies
        if check_inode and path.stat().st_ino != record["inode"]:
            return False
        index = faiss.read_index(str(path))
        if check_inode and path.stat().st_ino != record["inode"]:
            return False
    except FileNotFoundError:
        raise IndexUnusable(f"{path} is missing; run `workbench ingest --rebuild`") from None
    except (RuntimeError, OSError) as exc:
        raise IndexUnusable(f"cannot read {path}: {exc}; run `workbench ingest --rebuild`") from exc
    if index.ntotal != record["rows"]:
        raise IndexUnusable(f"{path} holds {index.ntotal} vectors, the chunk store expects {record['rows']}; "
                            "run `workbench ingest --rebuild`")
    return tune(index)


def lexical_state(db: ChunkDB) -> dict[str, Any]:
    """How the sparse side was written: ``version`` (1: before per-language analysis), the
    ``analysis`` (``lexical.ANALYSES``) and the corpus's languages."""
    found = db.get("lexical")
    if not isinstance(found, dict):
        return {"version": 1, "languages": [], "analysis": "plain"}
    analysis = found.get("analysis")
    return {"version": int(found.get("version", 1)), "languages": list(found.get("languages") or []),
            "analysis": analysis if analysis in lexical.ANALYSES else "plain"}


def needs_compaction(workspace: Workspace) -> bool:
    db = open_db(workspace)
    if db is None:
        return False
    with db, db.reading():
        settings = db.settings()
        record = settings.get("snapshot") or EMPTY_SNAPSHOT
        pending = (db.max_id() - record["max_id"]) + len(db.tombstones())
        return record["index_type"] != settings.get("index_type") or pending > COMPACT_SHARE * record["rows"]
