"""Writes to the corpus index, each inside ``db.writing()`` with the corpus lock held by the
caller (``storage.documents.DocumentStore.lock``): a new index, a document's chunks put or
removed, the sparse side re-analysed, and ``compact``: a new FAISS snapshot of every live chunk
and the ``data/metadata.json`` export. ``store`` reads what these write."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from storage import Workspace
from storage.atomic import atomic_file, atomic_path
from storage.chunkdb import ChunkDB
from storage.documents import DocumentStore
from storage.runs import now_iso
from workbench.index import lexical
from workbench.index.chunk_text import indexed_text
from workbench.index.embedder import NO_PROMPTS
from workbench.index.faiss_index import build_faiss
from workbench.index.store import EMPTY_SNAPSHOT, lexical_state, meta_of, open_db, vectors_after

def create(workspace: Workspace, embedding: dict[str, Any], index_type: str = "flat",
           analysis: str = lexical.ANALYSIS) -> ChunkDB:
    """An empty index with these settings (a new corpus, or a rebuild: every chunk dropped)."""
    db = ChunkDB(workspace.corpus_db, create=True)
    with db.writing():
        db.clear()
        db.drop_tombstones(db.tombstone_seq())
        initialise(db, embedding, index_type, analysis)
    return db


def initialise(db: ChunkDB, embedding: dict[str, Any], index_type: str, analysis: str = lexical.ANALYSIS) -> None:
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
            ids, vectors = vectors_after(db, int(settings["dim"]))
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
        meta = meta_of(db) or {}
        head = {k: meta.get(k) for k in ("version", "embedding_model", "embedding_prompts", "dim", "embedding_dtype", "index_type",
                                         "chunking", "updated", "count", "documents")}
        out.write(json.dumps(head, indent=2, ensure_ascii=False, default=str)[:-2] + ',\n  "chunks": [')
        for n, chunk in enumerate(db.iter_chunks()):
            out.write(("," if n else "") + "\n    " + json.dumps(chunk, ensure_ascii=False))
        out.write("\n  ]\n}\n")
