"""Corpus tab: upload documents (several at once), watch them get indexed, delete them, and
preview what a query retrieves. Indexing runs as a ``corpus.ingest`` job (see Monitor)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from jobs import control
from workbench import audit
from workbench.corpus.delete import resolve
from workbench.corpus.library import add_paths, reindex_config
from workbench.corpus.overview import (DOCUMENT_COLUMNS, HIT_COLUMNS, documents_rows, hits_rows,
                                       index_summary)
from workbench.corpus.parse import SUPPORTED
from workbench.errors import WorkbenchError
from workbench.index.modes import DEFAULT_MODE, MODES
from workbench.index.search import retriever_for
from workbench.index.faiss_index import INDEX_TYPES
from workbench.ui.common import UiContext


def create_corpus_tab(ctx: UiContext) -> tuple:
    """Builds the tab; returns (function, inputs, outputs) for the page load to fill it."""
    settings = ctx.settings
    workspace = settings.workspace

    def snapshot():
        rows = documents_rows(workspace)
        choices = [(f"{r[1]} ({r[0]})", r[0]) for r in rows]
        busy = any(r[6] in ("pending", "indexing") for r in rows)
        return rows, index_summary(workspace, settings.embedding_model), gr.Dropdown(choices=choices), gr.Timer(active=busy)

    def upload(files, request: gr.Request):
        user = ctx.require(request, "corpus", uploads=files)
        if not files:
            if any(r[6] == "pending" for r in documents_rows(workspace)):  # e.g. after a killed worker
                run = control.submit(settings, "corpus.ingest", {}, user=user.username)
                return (f"Indexing the pending documents in run `{run.id}`.", None, *snapshot())
            raise gr.Error("Choose one or more files first.")
        paths = [Path(f) for f in files]
        try:
            added = add_paths(workspace.ensure(), paths, settings.max_upload_mb * 1_000_000,
                              names=[p.name for p in paths])
        finally:  # Gradio's copies: the stored originals are the only ones kept
            ctx.discard_uploads(user.username, files)
        to_index = [a.doc["id"] for a in added if a.doc and a.doc["status"] != "indexed"]
        lines = [a.message() for a in added]
        for a in added:
            audit.record(workspace, user.username, "upload", a.name, outcome="refused" if a.error else "done",
                         detail=a.error or ("added" if a.created else "same content as a stored document"))
        if to_index:
            run = control.submit(settings, "corpus.ingest", {"doc_ids": to_index}, user=user.username)
            lines.append(f"Indexing {len(to_index)} document(s) in run `{run.id}` (progress in Monitor).")
        refused = [a for a in added if a.error]
        if refused and not to_index:
            gr.Warning(f"{len(refused)} file(s) refused: see the message below.")
        return ("\n".join(f"- {line}" for line in lines), None, *snapshot())

    def delete(doc_id, request: gr.Request):
        user = ctx.require(request, "corpus")
        if not doc_id:
            raise gr.Error("Pick a document to delete.")
        try:
            doc = resolve(settings, [doc_id])[0]
            run = control.submit(settings, "corpus.delete", {"documents": [doc["id"]]}, user=user.username)
        except WorkbenchError:
            raise gr.Error("That document is already gone.") from None
        return (f"Deleting **{doc['name']}** and its chunks in run `{run.id}` (progress in Monitor).", *snapshot())

    def reindex(index_type, chunk_size, chunk_overlap, request: gr.Request):
        user = ctx.require(request, "corpus")
        try:
            config = reindex_config(workspace, index_type, int(chunk_size), int(chunk_overlap))
            run = control.submit(settings, "corpus.ingest", config, user=user.username)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        what = "re-embedding every document" if config.get("rebuild") else f"switching to a {index_type} index"
        return (f"Run `{run.id}`: {what} (progress in Monitor).", *snapshot())

    def search(query, k, mode, request: gr.Request):
        ctx.require(request, "chat")
        if not query or not query.strip():
            raise gr.Error("Type a query.")
        try:
            hits = retriever_for(workspace, settings.embedding_model).search(query, int(k), mode)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return hits_rows(hits) if hits else [["", "", "no results: nothing is indexed yet", "", "", ""]]

    with gr.Tab("Corpus", id="corpus") as tab:
        gr.Markdown(f"Upload documents ({', '.join(sorted(SUPPORTED))}; up to {settings.max_upload_mb} MB "
                    "each). They are kept in `data/documents/`, parsed in a sandbox, chunked, embedded "
                    "and added to `data/index.faiss`. Files already indexed (same content) are skipped.")
        with gr.Row() as upload_row:
            files = gr.File(label="Documents", file_count="multiple", file_types=sorted(SUPPORTED),
                            type="filepath", elem_id="corpus-upload", scale=3)
            with gr.Column(scale=2):
                upload_btn = gr.Button("Add and index", variant="primary", elem_id="corpus-upload-btn")
                message = gr.Markdown(elem_id="corpus-message")
        ctx.only_for("corpus", upload_row)
        summary = gr.Markdown(elem_id="corpus-summary")
        table = gr.Dataframe(headers=DOCUMENT_COLUMNS, interactive=False, wrap=True, elem_id="documents-table")
        with gr.Row():
            doc_picker = gr.Dropdown(label="Document", choices=[], allow_custom_value=True,
                                     elem_id="document-select", scale=3)
            delete_btn = gr.Button("Delete document and its chunks", variant="stop", elem_id="document-delete", scale=1)
            refresh_btn = gr.Button("Refresh", scale=1)
            ctx.only_for("corpus", delete_btn)
        with gr.Accordion("Index settings", open=False) as index_settings:
            gr.Markdown("Flat is exact and fine up to a few hundred thousand chunks; HNSW is approximate "
                        "and fast for large corpora; IVF needs enough chunks to train its lists. Changing "
                        "the type reuses the stored vectors; changing chunk sizes re-embeds everything.")
            with gr.Row():
                index_type = gr.Dropdown(list(INDEX_TYPES), value="flat", label="index type")
                chunk_size = gr.Number(200, precision=0, minimum=8, label="chunk size (tokens)")
                chunk_overlap = gr.Number(40, precision=0, minimum=0, label="overlap (tokens)")
                reindex_btn = gr.Button("Apply to the whole index", elem_id="corpus-reindex")
        ctx.only_for("corpus", index_settings)
        gr.Markdown("### Search preview")
        with gr.Row():
            query = gr.Textbox(label="Query", elem_id="corpus-query", scale=4)
            k = gr.Slider(1, 20, value=5, step=1, label="top-k", scale=1)
            mode = gr.Radio(list(MODES), value=DEFAULT_MODE, label="retrieval", scale=1)
        search_btn = gr.Button("Search", elem_id="corpus-search-btn")
        hits = gr.Dataframe(headers=HIT_COLUMNS, interactive=False, wrap=True, elem_id="corpus-hits")
        timer = gr.Timer(2.0, active=False)

        outputs = [table, summary, doc_picker, timer]
        upload_btn.click(upload, [files], [message, files, *outputs], api_name="upload_documents")
        delete_btn.click(delete, [doc_picker], [message, *outputs], api_name="delete_document")
        reindex_btn.click(reindex, [index_type, chunk_size, chunk_overlap], [message, *outputs],
                          api_name="reindex")
        refresh_btn.click(snapshot, None, outputs, api_name=False)
        timer.tick(snapshot, None, outputs, api_name=False)
        tab.select(snapshot, None, outputs, api_name=False)
        search_btn.click(search, [query, k, mode], [hits], api_name="search")
        query.submit(search, [query, k, mode], [hits], api_name=False)
    return snapshot, None, outputs
