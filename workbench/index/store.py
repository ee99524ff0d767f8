"""The corpus index: the chunk store ``data/corpus.db`` (``storage.chunkdb``: texts, metadata,
vectors, the sparse side) and ``data/index.faiss``, a FAISS snapshot of the vectors whose ids
are the chunks' ids.

A write (adding or deleting a document) changes that document's rows in corpus.db and nothing
else: chunks added since the snapshot form a small flat *delta* index in memory, and chunks
deleted since are *tombstones* that searches skip. When the delta and the tombstones pass a
tenth of the snapshot (or the index type changes), ``compact`` writes a new snapshot, built
from the stored vectors without blocking anyone, and ``data/metadata.json``, the readable
export of every chunk (its ``id`` is its FAISS id).

Readers take no lock: each load reads one commit of corpus.db, and the snapshot file whose
inode that commit names (a reader meeting a compaction between its rename and its commit reads
again). A process that holds an index reloads only what changed since (``load(previous=)``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storage import Unreadable, Workspace, read_json
from storage.atomic import atomic_file, atomic_path
from storage.chunkdb import ChunkDB
from storage.documents import DocumentStore
from storage.runs import now_iso
from workbench.index.chunk_text import indexed_text
from workbench.errors import WorkbenchError
from workbench.index import lexical
from workbench.index.embedder import NO_PROMPTS

INDEX_TYPES = ("flat", "hnsw", "ivf")
COMPACT_SHARE = 0.1  # compact when rows added or deleted since the snapshot pass this share of it
READ_ATTEMPTS = 20  # a reader meeting a compaction between its rename and its commit reads again,
READ_RETRY_S = 0.05  # then reads under the writers' lock (a copied workspace keeps other inodes)
EMPTY_SNAPSHOT = {"rows": 0, "max_id": 0, "tombstone_seq": 0, "inode": None, "index_type": "flat"}


class IndexUnusable(WorkbenchError):
    """The index files cannot be used as they are; the message says what to run."""


HNSW_EF_SEARCH = 96


def build_faiss(vectors: np.ndarray, index_type: str = "flat", ids: np.ndarray | None = None) -> Any:
    """A FAISS index over ``vectors`` (ids: ``ids``, else 0..n-1). HNSW for large corpora (fast,
    approximate, no training); IVF needs enough rows to train its lists and is flat below that."""
    import faiss

    dim = vectors.shape[1]
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    if index_type == "flat":
        index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
    elif index_type == "hnsw":
        graph = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = 80
        graph.hnsw.efSearch = HNSW_EF_SEARCH
        index = faiss.IndexIDMap(graph)
    elif index_type == "ivf":
        nlist = max(1, min(4096, int(4 * np.sqrt(len(vectors)))))
        if len(vectors) < 39 * nlist:  # FAISS wants ~39 training points per list
            return build_faiss(vectors, "flat", ids)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = 64 * nlist  # k-means on every row of a million takes minutes on a few cores
        index.train(vectors if len(vectors) <= sample else
                    vectors[np.random.default_rng(0).choice(len(vectors), sample, replace=False)])
        index.nprobe = ivf_probes(nlist)
        index.parallel_mode = 1  # one query's lists over every core: half the latency on two cores
    else:
        raise ValueError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index


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


def _tune(index: Any) -> Any:
    """Search settings are not all kept in the file: set them again after a read."""
    import faiss

    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    if isinstance(inner, faiss.IndexIVF):
        inner.nprobe = ivf_probes(inner.nlist)
        inner.parallel_mode = 1
    return index


def ivf_probes(nlist: int) -> int:
    """Lists an IVF search visits. A quarter: at a million chunks (4,000 lists) recall@10 against
    an exact search stays at 0.95 or more whether the other chunks are random or shaped like the
    corpus, and a search stays near 35 ms on two cores (``benchmarks/index_scale.py``)."""
    return max(1, nlist // 4)


def open_db(workspace: Workspace) -> ChunkDB | None:
    """corpus.db, imported first from an index saved before it existed; None when nothing was
    indexed yet."""
    if not workspace.corpus_db.exists():
        if not (workspace.metadata_file.exists() and workspace.embeddings_file.exists()):
            return None
        _import_files(workspace)
    return ChunkDB(workspace.corpus_db)


def read_meta(workspace: Workspace) -> dict[str, Any] | None:
    """Settings (model, chunking, index type), documents and chunk count, without FAISS; None
    when nothing was indexed yet."""
    db = open_db(workspace)
    if db is None:
        return None
    with db, db.reading():
        return _meta(db)


def _meta(db: ChunkDB) -> dict[str, Any] | None:
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


def _vectors(db: ChunkDB, dim: int, after_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ids and vectors of the live chunks after ``after_id``, in id order, read into one array."""
    count = db.count_after(after_id)
    ids, vectors = np.empty(count, dtype=np.int64), np.empty((count, dim), dtype=np.float32)
    n = 0
    for n, (chunk_id, blob) in enumerate(db.vectors(after_id), start=1):
        ids[n - 1], vectors[n - 1] = chunk_id, np.frombuffer(blob, dtype=np.float32)
    return ids[:n], vectors[:n]


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
        with DocumentStore(workspace).lock():
            with db.reading():
                state = _load(workspace, db, previous, check_inode=False)
            if state is not None and state.snapshot is not None:
                inode = workspace.index_file.stat().st_ino
                if inode != state.snapshot_record.get("inode"):  # a copy (a backup restored): its file,
                    state.snapshot_record = dict(state.snapshot_record, inode=inode)  # checked whole above
                    with db.writing():
                        db.put(snapshot=state.snapshot_record)
            return state


def _load(workspace: Workspace, db: ChunkDB, previous: CorpusIndex | None, check_inode: bool):
    meta = _meta(db)
    if meta is None:
        return None
    record = meta.get("snapshot") or EMPTY_SNAPSHOT
    dim = int(meta["dim"])
    if previous is not None and previous.snapshot_record == record:
        snapshot, after, seq = previous.snapshot, previous.max_id, previous.tombstone_seq
        ids, vectors = _vectors(db, dim, after)
        ids, vectors = np.concatenate([previous.delta_ids, ids]), np.concatenate([previous.delta_vectors, vectors])
        tombstones = np.union1d(previous.tombstones, np.array(db.tombstones(seq), dtype=np.int64))
    else:
        snapshot = _read_snapshot(workspace, record, check_inode)
        if snapshot is False:
            return False
        ids, vectors = _vectors(db, dim, record["max_id"])
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
    return _tune(index)


# -------------------------------------------------------------------------------------- writes
# The callers hold the corpus lock (storage.documents.DocumentStore.lock) around each write.

def create(workspace: Workspace, embedding: dict[str, Any], index_type: str = "flat",
           analysis: str = lexical.ANALYSIS) -> ChunkDB:
    """An empty index with these settings (a new corpus, or a rebuild: every chunk dropped)."""
    db = ChunkDB(workspace.corpus_db, create=True)
    with db.writing():
        db.clear()
        db.drop_tombstones(db.tombstone_seq())
        _initialise(db, embedding, index_type, analysis)
    return db


def _initialise(db: ChunkDB, embedding: dict[str, Any], index_type: str, analysis: str = lexical.ANALYSIS) -> None:
    db.put(version=2, lexical={"version": lexical.VERSION, "languages": [], "analysis": analysis},
           embedding_model=embedding["model"], dim=int(embedding["dim"]),
           embedding_prompts=dict(embedding.get("prompts") or NO_PROMPTS),
           embedding_dtype=embedding.get("dtype"), chunking=embedding.get("chunking", {}),
           index_type=index_type, snapshot=dict(EMPTY_SNAPSHOT, index_type=index_type, built=now_iso()),
           updated=now_iso())


def add_document(db: ChunkDB, doc: dict[str, Any], rows: list[dict[str, Any]], vectors: np.ndarray,
                 language: str | None = None) -> None:
    """Put a document's chunks and vectors in place of any it had (inside ``db.writing()``); the
    sparse side indexes them as words of ``language`` under the index's analysis (``index.lexical``)."""
    db.remove_document(doc["id"])
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    written = lexical_state(db)
    bodies = [lexical.body(indexed_text(r), language, written["analysis"]) for r in rows]
    db.add_document(doc, rows, [v.tobytes() for v in vectors], bodies)
    if written["version"] >= lexical.VERSION and language and language not in written["languages"]:
        db.put(lexical={**written, "languages": sorted({*written["languages"], language})})
    db.put(updated=now_iso())


def lexical_state(db: ChunkDB) -> dict[str, Any]:
    """How the sparse side was written: ``version`` (1: before per-language analysis), the
    ``analysis`` (``lexical.ANALYSES``) and the corpus's languages."""
    found = db.get("lexical")
    if not isinstance(found, dict):
        return {"version": 1, "languages": [], "analysis": "plain"}
    analysis = found.get("analysis")
    return {"version": int(found.get("version", 1)), "languages": list(found.get("languages") or []),
            "analysis": analysis if analysis in lexical.ANALYSES else "plain"}


def upgrade_lexical(db: ChunkDB, analysis: str | None = None, log=lambda message: None) -> bool:
    """Bring the sparse side to ``lexical.VERSION`` and to ``analysis`` (default: the index's
    own, ``plain`` for one written before): each document's language detected and recorded, and
    its chunks' terms rewritten when the analysis changes (inside ``db.writing()``). True when
    something was done."""
    written = lexical_state(db)
    target = analysis or written["analysis"]
    if written["version"] >= lexical.VERSION and target == written["analysis"]:
        return False
    by_document: dict[str, list[dict[str, Any]]] = {}
    for chunk in db.iter_chunks():
        by_document.setdefault(chunk["doc_id"], []).append(chunk)
    languages = set()
    for chunks in by_document.values():
        language = lexical.detect_language(" ".join(c["text"] for c in chunks[:50]))
        if language:
            languages.add(language)
        if target != written["analysis"]:
            db.replace_terms([(c["id"], lexical.body(indexed_text(c), language, target)) for c in chunks])
    db.put(lexical={"version": lexical.VERSION, "languages": sorted(languages), "analysis": target},
           updated=now_iso())
    log(f"sparse index: {target} analysis, languages {', '.join(sorted(languages)) or 'none detected'} "
        f"({sum(map(len, by_document.values()))} chunks)")
    return True


def remove_documents(db: ChunkDB, doc_ids: set[str]) -> int:
    """Drop every chunk of ``doc_ids`` (inside ``db.writing()``); the count removed."""
    removed = sum(db.remove_document(doc_id) for doc_id in doc_ids)
    db.put(updated=now_iso())
    return removed


def needs_compaction(workspace: Workspace) -> bool:
    db = open_db(workspace)
    if db is None:
        return False
    with db, db.reading():
        settings = db.settings()
        record = settings.get("snapshot") or EMPTY_SNAPSHOT
        pending = (db.max_id() - record["max_id"]) + len(db.tombstones())
        return record["index_type"] != settings.get("index_type") or pending > COMPACT_SHARE * record["rows"]


class _Superseded(Exception):
    """Another compaction or a rebuild committed while this one was building."""


def compact(workspace: Workspace, index_type: str | None = None) -> bool:
    """Write a new snapshot of every live chunk (as ``index_type``, else the current type) and the
    metadata.json export. Built from one read of corpus.db without any lock; the lock is taken
    only to put the file in place and commit. False when another write made it moot."""
    import faiss

    db = open_db(workspace)
    if db is None:
        return False
    with db:
        with db.reading():
            settings = db.settings()
            record, seq = settings.get("snapshot") or EMPTY_SNAPSHOT, db.tombstone_seq()
            kind = index_type or settings.get("index_type", "flat")
            ids, vectors = _vectors(db, int(settings["dim"]))
        index = build_faiss(vectors, kind, ids)
        lock, held = DocumentStore(workspace).lock(), False
        try:
            with atomic_path(workspace.index_file) as tmp:
                faiss.write_index(index, str(tmp))
                inode = tmp.stat().st_ino  # a rename keeps it
                lock.acquire()
                held = True
                if db.get("snapshot") != record:
                    raise _Superseded
            with db.writing():
                db.put(index_type=kind, snapshot={"rows": len(ids), "max_id": int(ids[-1]) if len(ids) else 0,
                                                  "tombstone_seq": seq, "inode": inode, "index_type": kind,
                                                  "built": now_iso()})
                db.drop_tombstones(seq)
            export_metadata(workspace, db)
        except _Superseded:
            return False
        finally:
            if held:
                lock.release()
    return True


def export_metadata(workspace: Workspace, db: ChunkDB) -> None:
    """data/metadata.json: settings, documents and every chunk with its FAISS id, streamed."""
    with db.reading(), atomic_file(workspace.metadata_file, "w") as out:
        meta = _meta(db) or {}
        head = {k: meta.get(k) for k in ("version", "embedding_model", "embedding_prompts", "dim", "embedding_dtype", "index_type",
                                         "chunking", "updated", "count", "documents")}
        out.write(json.dumps(head, indent=2, ensure_ascii=False, default=str)[:-2] + ',\n  "chunks": [')
        for n, chunk in enumerate(db.iter_chunks()):
            out.write(("," if n else "") + "\n    " + json.dumps(chunk, ensure_ascii=False))
        out.write("\n  ]\n}\n")


def _import_files(workspace: Workspace) -> None:
    """An index saved as metadata.json + embeddings.npy (no corpus.db) moves into corpus.db with
    its vectors as they are; its snapshot is rebuilt from them."""
    with DocumentStore(workspace).lock():
        if workspace.corpus_db.exists():
            return
        meta = read_json(workspace.metadata_file)
        if not isinstance(meta, dict) or isinstance(meta, Unreadable) or "chunks" not in meta:
            raise IndexUnusable(f"{workspace.metadata_file} cannot be read as an index; run `workbench ingest --rebuild`")
        try:
            vectors = np.load(workspace.embeddings_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IndexUnusable(f"cannot read {workspace.embeddings_file}: {exc}; run `workbench ingest --rebuild`") from exc
        if len(vectors) != len(meta["chunks"]):
            raise IndexUnusable(f"index files disagree ({len(vectors)} vectors, {len(meta['chunks'])} chunks); "
                                "run `workbench ingest --rebuild`")
        tmp = workspace.corpus_db.with_name(".corpus.db.import")
        for leftover in tmp.parent.glob(tmp.name + "*"):
            leftover.unlink()
        db = ChunkDB(tmp, create=True)
        with db:
            with db.writing():
                _initialise(db, {"model": meta["embedding_model"], "dim": meta["dim"], "dtype": meta.get("embedding_dtype"),
                                 "chunking": meta.get("chunking", {})}, meta.get("index_type", "flat"))
                for doc_id, doc in meta.get("documents", {}).items():
                    rows = [i for i, c in enumerate(meta["chunks"]) if c["doc_id"] == doc_id]
                    add_document(db, {"id": doc_id, "name": doc["source"], "file": doc.get("file"),
                                      "sha256": doc.get("sha256")}, [meta["chunks"][i] for i in rows], vectors[rows])
            db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.conn.execute("PRAGMA journal_mode=DELETE")
        os.replace(tmp, workspace.corpus_db)
        compact(workspace)
        workspace.embeddings_file.unlink(missing_ok=True)
