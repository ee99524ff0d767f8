"""An index saved before the chunk store existed (``data/metadata.json`` with every chunk and
``data/embeddings.npy`` with their vectors, no ``data/corpus.db``) moves into corpus.db with its
vectors as they are, and its FAISS snapshot is rebuilt from them. An explicit step, the first of
every ingest job: until it runs, readers refuse such an index and say what to run."""
from __future__ import annotations

import os

import numpy as np

from storage import Unreadable, Workspace, read_json
from storage.chunkdb import ChunkDB
from storage.documents import DocumentStore
from workbench.index.store import IndexUnusable, saved_before_chunk_store
from workbench.index.store_writes import add_document, compact, initialise


def import_saved_files(workspace: Workspace) -> bool:
    """Move an index saved as files into corpus.db (the ingest job's first step); False when
    there was none to move."""
    with DocumentStore(workspace).lock():
        if not saved_before_chunk_store(workspace):
            return False
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
                initialise(db, {"model": meta["embedding_model"], "dim": meta["dim"], "dtype": meta.get("embedding_dtype"),
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
    return True
