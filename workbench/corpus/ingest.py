"""The ``corpus.ingest`` job: parse every pending document in a sandboxed child process, chunk
it with the embedding model's tokenizer, embed the chunks and add them to the index.

Incremental: documents already indexed are not touched (the registry dedupes by sha256, so the
same bytes are never embedded twice); ``rebuild`` re-embeds everything, e.g. after changing the
embedding model. A file that fails gets its reason in the registry and the log; the others go
on. Chunks are committed to the chunk store in batches under the corpus lock, so a cancel or a
crash keeps every batch already committed and the documents after it stay pending; the FAISS
snapshot is rewritten at the end when enough changed (``store_writes.compact``).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from storage import RunStore
from storage.documents import FAILED, INDEXED, PENDING, DocumentStore
from storage.runs import ACTIVE, now_iso
from workbench.corpus.chunking import HEADING_TOKENS, chunk_blocks, document_title
from workbench.corpus.parse import ParseError
from workbench.corpus.sandbox import parse_isolated
from workbench.index import faiss_index, legacy_import, store_writes
from workbench.index import store as index_store
from workbench.index.chunk_text import indexed_text
from workbench.index.embedder import describe, embed, load_embedder, prompts_of
from workbench.index.lexical import ANALYSES, ANALYSIS, detect_language
from workbench.job_context import JobContext
from workbench.safe_text import counted

INDEXING = "indexing"
DEFAULT_CHUNKING = {"size": 200, "overlap": 40}
COMMIT_EVERY_S = 15.0


@dataclass
class Config:
    doc_ids: list = field(default_factory=list, metadata={"help": "documents to index (default: every pending one)"})
    rebuild: bool = field(default=False, metadata={"help": "re-embed every document into a fresh index"})
    embedding_model: str = field(default="", metadata={"help": "sentence-transformers model (default: WORKBENCH_EMBEDDING_MODEL)"})
    chunk_size: int | None = field(default=None, metadata={"help": "tokens per chunk, embedding tokenizer (default: the index's; 200 for a new one)"})
    chunk_overlap: int | None = field(default=None, metadata={"help": "tokens shared by neighbouring chunks (default: the index's; 40 for a new one)"})
    index_type: str = field(default="", metadata={"help": "flat, hnsw or ivf (default: keep the current one, flat for a new index)"})
    sparse_analysis: str = field(default="", metadata={
        "help": "words of hybrid search's sparse side: plain, words (per-language stop words) or stems "
                "(per-language Snowball stems) (default: keep the index's, plain for a new one)"})
    batch_size: int = field(default=64, metadata={"help": "chunks per embedding batch"})
    parse_timeout_s: float = field(default=60.0, metadata={"help": "wall-clock limit to parse one file"})
    parse_memory_mb: int = field(default=2048, metadata={"help": "memory limit to parse one file"})

    def validate(self) -> None:
        if self.index_type and self.index_type not in faiss_index.INDEX_TYPES:
            raise ValueError(f"index_type must be one of {', '.join(faiss_index.INDEX_TYPES)}")
        if self.sparse_analysis and self.sparse_analysis not in ANALYSES:
            raise ValueError(f"sparse_analysis must be one of {', '.join(ANALYSES)}")
        if self.chunk_size is not None and self.chunk_size < 8:
            raise ValueError("chunk_size must be at least 8 tokens")
        if self.chunk_overlap is not None and self.chunk_overlap < 0:
            raise ValueError("chunk_overlap must be >= 0")
        if self.batch_size < 1 or self.parse_timeout_s <= 0 or self.parse_memory_mb < 64:
            raise ValueError("batch_size >= 1, parse_timeout_s > 0 and parse_memory_mb >= 64 are required")


def _claim(docs: DocumentStore, runs: RunStore, run_id: str, config: Config) -> list[dict]:
    """Mark this run's documents ``indexing`` so a second ingest job running beside it skips them.
    A claim left by a run that is no longer active is taken over."""
    wanted = set(config.doc_ids)
    claimed = []
    with docs.lock():
        meta = None if config.rebuild else index_store.read_meta(docs.workspace)
        indexed = set(meta.get("documents", {})) if meta is not None else set()
        for doc in docs.list():
            if wanted and doc["id"] not in wanted:
                continue
            status = doc.get("status")
            if status == INDEXING and doc.get("run_id") != run_id:
                owner = runs.get(doc["run_id"]).status() if doc.get("run_id") else None
                if isinstance(owner, dict) and owner.get("status") in ACTIVE:
                    continue
                status = PENDING
            retry = wanted and status == FAILED  # named explicitly: try a failed file again
            if config.rebuild or retry or status == PENDING or (status == INDEXED and doc["id"] not in indexed):
                docs.update(doc["id"], status=INDEXING, run_id=run_id, error=None)
                claimed.append(doc)
    return claimed


def _chunking(config: Config, meta: dict[str, Any] | None, model_name: str, max_tokens: int) -> dict[str, Any]:
    """The chunking to use: what the config asks, else what the index was built with. Chunks of
    two sizes in one index would rank unevenly, so a change needs ``rebuild``."""
    current = dict(meta.get("chunking") or {}) if meta is not None else {}
    size = config.chunk_size or current.get("size") or DEFAULT_CHUNKING["size"]
    overlap = config.chunk_overlap if config.chunk_overlap is not None else current.get("overlap", DEFAULT_CHUNKING["overlap"])
    if current and (current.get("size"), current.get("overlap")) != (size, overlap):
        raise ValueError(f"the index uses {current.get('size')}-token chunks with {current.get('overlap')} "
                         f"overlap; to re-chunk with {size}/{overlap} run `workbench ingest --rebuild`")
    if overlap > size // 2:
        raise ValueError(f"chunk_overlap {overlap} is over half the chunk size {size}")
    if size > max_tokens - 2 - HEADING_TOKENS:
        raise ValueError(f"chunk_size {size} is over what {model_name} reads with the chunk's heading "
                         f"({max_tokens - 2 - HEADING_TOKENS} tokens)")
    return {"size": size, "overlap": overlap, "tokenizer": model_name}


def preflight(config: Config, settings) -> None:
    """Refuse, before anything is stored or queued, a config the job would refuse: other
    chunking, another embedding model, or the same model under other prompts."""
    if config.rebuild or index_store.saved_before_chunk_store(settings.workspace):
        return  # an index saved as files is checked once the job has moved it into corpus.db
    meta = index_store.read_meta(settings.workspace)
    _chunking(config, meta, "", 10**9)
    if meta is not None:
        name = config.embedding_model or settings.embedding_model
        index_store.same_embedding(meta, name)  # another model: refused before any is loaded
        index_store.same_embedding(meta, name, prompts_of(load_embedder(name), name))


def run(config: Config, context: JobContext) -> dict[str, Any]:
    reporter = context.reporter
    workspace = context.workspace
    docs, runs = DocumentStore(workspace), RunStore(workspace.runs)
    if not config.rebuild and legacy_import.import_saved_files(workspace):
        reporter.log("an index saved by an earlier version moved into corpus.db, its vectors as they were")
    model_name = config.embedding_model or context.settings.embedding_model
    reporter.log(f"loading embedding model {model_name}")
    model = load_embedder(model_name)
    info = describe(model, model_name)
    # The cached model's tokenizer is shared with other jobs' threads, and encode() switches its
    # truncation on and off: chunking with it could cut sentences at 256 tokens.
    tokenizer = copy.deepcopy(model.tokenizer)
    prompts = info["prompts"]
    reporter.log(f"embedding model: {info['dim']} dims, {info['dtype']} on {info['device']}"
                 + (f", prompts {prompts}" if any(prompts.values()) else ""))
    meta = None if config.rebuild else index_store.read_meta(workspace)
    if meta is not None:
        index_store.same_embedding(meta, model_name, prompts)
    prompt_tokens = len(tokenizer(prompts["passage"], add_special_tokens=False)["input_ids"]) if prompts["passage"] else 0
    chunking = _chunking(config, meta, model_name, info["max_tokens"] - prompt_tokens)
    embedding = {"model": model_name, "dim": info["dim"], "dtype": info["dtype"], "chunking": chunking,
                 "prompts": prompts}
    if config.rebuild:
        with docs.lock():
            store_writes.create(workspace, embedding, config.index_type or "flat",
                               config.sparse_analysis or ANALYSIS).close()
        reporter.log(f"rebuilding: a new {config.index_type or 'flat'} index, every document re-embedded")
    elif meta is not None and config.index_type and config.index_type != meta.get("index_type"):
        reporter.log(f"switching the index from {meta.get('index_type')} to {config.index_type}")
        store_writes.compact(workspace, config.index_type)
    if meta is not None and not config.rebuild:  # an older sparse side, or another analysis asked for
        with docs.lock(), index_store.open_db(workspace) as db, db.writing():
            store_writes.upgrade_lexical(db, config.sparse_analysis or None, reporter.log)
    todo = _claim(docs, runs, context.run.id, config)
    result: dict[str, Any] = {"indexed": [], "failed": [], "chunks": 0,
                              "seconds": {"parse": 0.0, "chunk": 0.0, "embed": 0.0}}
    if not todo:
        reporter.log("nothing to index: the documents are indexed already or being indexed by another run")
    batch: list[tuple[dict, list[dict], Any]] = []
    last_commit = time.monotonic()
    try:
        for i, doc in enumerate(todo):
            reporter.check_cancel()
            reporter.progress(i, len(todo), doc["name"])
            prepared, error, seconds = _prepare(doc, docs, model, tokenizer, config, chunking, reporter, prompts)
            for phase, spent in seconds.items():
                result["seconds"][phase] += spent
            if error:
                result["failed"].append({"id": doc["id"], "name": doc["name"], "error": error})
            else:
                batch.append(prepared)
                reporter.metrics(i + 1, chunks=len(prepared[1]), **{f"{k}_s": v for k, v in seconds.items()})
            if batch and time.monotonic() - last_commit > COMMIT_EVERY_S:
                _commit(docs, workspace, embedding, batch, result, reporter, config.index_type, config.sparse_analysis)
                batch, last_commit = [], time.monotonic()
        _commit(docs, workspace, embedding, batch, result, reporter, config.index_type, config.sparse_analysis)
    finally:
        _release(docs, context.run.id)
    compact_if_due(workspace, reporter)
    reporter.progress(len(todo), len(todo), f"{len(result['indexed'])} indexed, {len(result['failed'])} failed")
    reporter.log(f"done: {len(result['indexed'])} indexed ({counted(result['chunks'], 'chunk')}), "
                 f"{len(result['failed'])} failed")
    return result


def _prepare(doc: dict, docs: DocumentStore, model, tokenizer, config: Config, chunking: dict, reporter,
             embedding_prompts: dict[str, str]):
    """Parse, chunk and embed one document: (prepared, None, seconds), or (None, reason, seconds)
    with the reason also in the registry; ``seconds``: how long each of the three took (the run's
    metrics keep them per document, so a slow file or a slow embedding shows)."""
    started = time.monotonic()
    seconds: dict[str, float] = {}
    try:
        blocks = parse_isolated(docs.path_of(doc), timeout_s=config.parse_timeout_s,
                                memory_mb=config.parse_memory_mb)
        seconds["parse"] = time.monotonic() - started
        chunks = chunk_blocks(blocks, tokenizer, chunking["size"], chunking["overlap"])
        seconds["chunk"] = time.monotonic() - started - seconds["parse"]
        if not chunks:
            raise ParseError("no text found")
    except ParseError as exc:
        reason = str(exc)
        docs.update(doc["id"], status=FAILED, error=reason, run_id=None)
        reporter.log(f"{doc['name']}: failed: {reason}")
        return None, reason, seconds
    rows = [{"chunk_id": f"{doc['id']}:{n}", "doc_id": doc["id"], "source": doc["name"],
             "title": c.title or document_title(doc["name"]), "page": c.page, "section": c.section,
             "position": n, "tokens": c.tokens, "text": c.text}
            for n, c in enumerate(chunks)]
    embedding = time.monotonic()
    vectors = embed(model, [indexed_text(row) for row in rows], batch_size=config.batch_size,
                    prompts=embedding_prompts)
    seconds["embed"] = time.monotonic() - embedding
    language = detect_language(" ".join(row["text"] for row in rows[:50]))
    reporter.log(f"{doc['name']}: {counted(len(blocks), 'block')}, {counted(len(rows), 'chunk')}, "
                 f"language {language or 'unknown'} "
                 f"({time.monotonic() - started:.1f} s)")
    return (doc, rows, vectors, language), None, seconds


def _commit(docs: DocumentStore, workspace, embedding, batch, result, reporter, index_type: str = "",
            sparse_analysis: str = "") -> None:
    """Add a batch to the index as it is on disk now (a delete may have happened meanwhile).
    If a rebuild beside this run changed the model or the chunking, the batch is not mixed in:
    its documents go back to pending for the next run."""
    if not batch:
        return
    with docs.lock():
        db = index_store.open_db(workspace) or store_writes.create(workspace, embedding, index_type or "flat",
                                                                  sparse_analysis or ANALYSIS)
        with db:
            settings = db.settings()
            chunking = settings.get("chunking") or {}
            built_with = (settings.get("embedding_model"), settings.get("dim"), chunking.get("size"), chunking.get("overlap"),
                          index_store.prompts_built_with(settings))
            if built_with != (embedding["model"], embedding["dim"], embedding["chunking"]["size"],
                              embedding["chunking"]["overlap"], embedding["prompts"]):
                reporter.log(f"the index changed under this run ({built_with}); {len(batch)} document(s) left pending")
                return
            live = {d["id"] for d in docs.list()}
            with db.writing():
                for doc, rows, vectors, language in batch:
                    if doc["id"] in live:  # not deleted while it was being embedded
                        store_writes.add_document(db, doc, rows, vectors, language)
        for doc, rows, _, language in batch:
            if doc["id"] in live:
                docs.update(doc["id"], status=INDEXED, chunks=len(rows), error=None, run_id=None,
                            indexed_at=now_iso(), language=language)
                result["indexed"].append(doc["name"])
                result["chunks"] += len(rows)


def compact_if_due(workspace, reporter) -> None:
    """A new FAISS snapshot once the rows added and deleted since the last pass a tenth of it
    (every commit of a small corpus; rarely at a million chunks). Searches go on meanwhile."""
    if index_store.needs_compaction(workspace):
        started = time.monotonic()
        if store_writes.compact(workspace):
            reporter.log(f"index snapshot written ({time.monotonic() - started:.1f} s)")


def _release(docs: DocumentStore, run_id: str) -> None:
    """Documents this run claimed but did not finish go back to pending (cancel, error)."""
    with docs.lock():
        for doc in docs.list():
            if doc.get("status") == INDEXING and doc.get("run_id") == run_id:
                docs.update(doc["id"], status=PENDING, run_id=None)
