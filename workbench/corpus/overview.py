"""What the Corpus tab and ``workbench documents list`` show: the documents table, the index
summary and search hits as rows."""
from __future__ import annotations

from typing import Any

from storage import ACTIVE, RunStore, Workspace
from storage.documents import DocumentStore, RegistryError
from workbench.corpus.parse import human_size
from workbench.safe_text import counted

DOCUMENT_COLUMNS = ["id", "name", "type", "size", "chunks", "added", "status", "error"]
HIT_COLUMNS = ["rank", "score", "source", "page / section", "chunk_id", "text"]


def _shown_status(runs: RunStore, doc: dict[str, Any]) -> str:
    """A document claimed by a run that died (killed worker) is pending again, whatever the
    registry still says: the next ingest takes it over."""
    status = doc.get("status", "")
    if status == "indexing":
        try:
            run_status = runs.get(doc.get("run_id") or "").status()
        except KeyError:
            return "pending"
        if not isinstance(run_status, dict) or run_status.get("status") not in ACTIVE:
            return "pending"
    return status


def documents_rows(workspace: Workspace) -> list[list[Any]]:
    runs = RunStore(workspace.runs)
    rows = []
    for d in DocumentStore(workspace).list():
        rows.append([d["id"], d["name"], d["type"], human_size(d["size"]), d.get("chunks", 0),
                     d.get("added", ""), _shown_status(runs, d), d.get("error") or ""])
    return rows


def index_summary(workspace: Workspace, embedding_model: str) -> str:
    """Read through the process's retriever, which reloads the index only when it changed."""
    from workbench.index.search import retriever_for
    from workbench.index.store import IndexUnusable

    counts: dict[str, int] = {}
    try:
        docs = DocumentStore(workspace).list()
        state = retriever_for(workspace, embedding_model).state()
    except (RegistryError, IndexUnusable) as exc:
        return f"**Unusable:** {exc}"
    for d in docs:
        counts[d.get("status", "?")] = counts.get(d.get("status", "?"), 0) + 1
    meta = state.meta if state is not None else None
    if meta is None:
        head = "No index yet."
    else:
        head = (f"**{counted(meta.get('count', 0), 'chunk')}** from {counted(len(meta.get('documents', {})), 'document')} · "
                f"{meta.get('embedding_model')} ({meta.get('dim')} dims, {meta.get('embedding_dtype')}) · "
                f"{meta.get('index_type')} index · updated {meta.get('updated')}")
        since = len(state.delta_ids), len(state.tombstones)
        if any(since):  # written into the next FAISS snapshot once they pass a tenth of it
            head += f"  \nSince the last snapshot: {counted(since[0], 'chunk')} added, {since[1]} deleted."
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no documents"
    return f"{head}  \nDocuments: {by_status}."


def hits_rows(hits) -> list[list[Any]]:
    return [[h.rank, round(h.score, 4), h.source, h.page or h.section or "", h.chunk_id,
             " ".join(h.text.split())[:300]] for h in hits]
