"""The ``corpus.delete`` job: remove documents, their originals and their chunks from the index.

Each document is removed in its own step under the corpus lock (its rows in the chunk store;
its FAISS ids become tombstones that searches skip), so a cancel keeps what was already deleted
and leaves the rest whole. A job, not work in the web request: when a tenth of the snapshot is
gone, the job writes a new one (minutes for HNSW at a hundred thousand chunks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.documents import DocumentStore
from workbench.corpus.ingest import compact_if_due
from workbench.errors import WorkbenchError
from workbench.index import store as index_store
from workbench.index import store_writes
from workbench.job_context import JobContext
from workbench.safe_text import counted


@dataclass
class Config:
    documents: list = field(default_factory=list, metadata={"help": "documents to delete: id, stored name or original name"})

    def validate(self) -> None:
        if not self.documents:
            raise ValueError("name at least one document to delete")


def resolve(settings, refs: list[str]) -> list[dict[str, Any]]:
    """The registry entries of ``refs``; refuses, naming them, refs that match no document."""
    docs = DocumentStore(settings.workspace)
    found = {str(ref): docs.find(str(ref)) for ref in refs}
    if missing := [ref for ref, doc in found.items() if doc is None]:
        raise WorkbenchError(f"no document {', '.join(repr(m) for m in missing)}; see `workbench documents list`")
    return list(found.values())


def preflight(config: Config, settings) -> None:
    resolve(settings, config.documents)


def run(config: Config, context: JobContext) -> dict[str, Any]:
    reporter = context.reporter
    docs = DocumentStore(context.workspace)
    result: dict[str, Any] = {"deleted": [], "chunks_removed": 0, "missing": []}
    for i, ref in enumerate(config.documents):
        reporter.check_cancel()
        reporter.progress(i, len(config.documents), str(ref))
        with docs.lock():
            doc = docs.find(str(ref))
            if doc is None:  # deleted by another run since this one was queued
                result["missing"].append(str(ref))
                reporter.log(f"{ref}: already gone")
                continue
            removed = 0
            db = index_store.open_db(context.workspace)
            if db is not None:
                with db, db.writing():
                    removed = store_writes.remove_documents(db, {doc["id"]})
            docs.remove(doc["id"])
        result["deleted"].append({"id": doc["id"], "name": doc["name"], "chunks_removed": removed})
        result["chunks_removed"] += removed
        reporter.log(f"{doc['name']}: deleted with its {counted(removed, 'chunk')}")
    compact_if_due(context.workspace, reporter)
    reporter.progress(len(config.documents), len(config.documents), f"{len(result['deleted'])} deleted")
    return result
