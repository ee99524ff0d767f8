"""Retrieval over the corpus index: dense (FAISS inner product) by default, or hybrid (dense and
BM25 from ``bm25s``, fused by reciprocal rank). Both read a chunk with its heading (document title
and section path) above its text, as it was embedded. The index, the embedding model and the BM25
index are loaded once per process and reloaded only when the files on disk change.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from storage import Workspace
from workbench.corpus.chunking import indexed_text
from workbench.index import store
from workbench.index.embedder import embed, load_embedder

MODES = ("dense", "hybrid")
# Fused score = sum over the two rankings of weight / (RRF_K + rank). Measured on the two
# documentation sets of benchmarks/retrieval.py against the usual k = 60 with equal weights: a
# sharper k (20) and the BM25 side at half weight gave the best hit@1 and MRR on both sets
# (PostgreSQL 0.68 -> 0.74 hit@1, Django 0.74 -> 0.74 with MRR 0.811 -> 0.820); BM25 alone
# misleads on how-to questions whose words are common across the pages.
RRF_K = 20
SPARSE_WEIGHT = 0.5


@dataclass
class Hit:
    rank: int
    score: float
    source: str
    page: int | None
    section: str | None
    chunk_id: str
    doc_id: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def where(self) -> str:
        """Source with its page or section, for citations."""
        if self.page:
            return f"{self.source}, p. {self.page}"
        if self.section:
            return f"{self.source} § {self.section}"
        return self.source


RELOAD_WAIT_S = 0.1  # a search waits this long for a newer index being loaded, then uses the one it has


class Retriever:
    """Search over one workspace's index, kept in memory. When a job commits a new index, it is
    loaded in a background thread while searches go on with the previous one (they wait at most
    ``RELOAD_WAIT_S``). The BM25 side is built on the first hybrid search of each index: built in
    the background it held the GIL for seconds at 100k chunks and slowed every dense search."""

    def __init__(self, workspace: Workspace, embedding_model: str, rrf_k: int = RRF_K,
                 sparse_weight: float = SPARSE_WEIGHT):
        self.workspace = workspace
        self.embedding_model = embedding_model
        self.rrf_k, self.sparse_weight = rrf_k, sparse_weight
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._state: store.CorpusIndex | None = None
        self._bm25 = None
        self._reload: threading.Thread | None = None
        self._failed: tuple[tuple, Exception] | None = None  # (signature, why) of a load that failed

    def state(self) -> store.CorpusIndex | None:
        """The index as last committed, or the one before while that is still loading."""
        with self._lock:
            sig = store.signature(self.workspace)
            if sig == self._signature:
                return self._state
            if self._failed is not None and self._failed[0] == sig:
                raise self._failed[1]
            if self._signature is None:  # nothing loaded yet: nothing older to serve
                self._install(sig, store.load(self.workspace))
                return self._state
            if self._reload is None:
                self._reload = threading.Thread(target=self._load_in_background, args=(sig,),
                                                name="index-reload", daemon=True)
                self._reload.start()
            reload, serving = self._reload, self._state
        reload.join(RELOAD_WAIT_S if serving is not None and serving.size else None)  # nothing older: wait
        with self._lock:
            if self._failed is not None and self._failed[0] == sig and self._state is serving:
                raise self._failed[1]
            return self._state

    def _install(self, sig: tuple, state: store.CorpusIndex | None) -> None:
        self._state, self._signature, self._bm25, self._failed = state, sig, None, None

    def _load_in_background(self, sig: tuple) -> None:
        try:
            state = store.load(self.workspace)
        except Exception as exc:  # noqa: BLE001 - reported to the next search of this signature
            with self._lock:
                self._failed, self._reload = (sig, exc), None
            return
        with self._lock:
            self._install(sig, state)
            self._reload = None

    def model(self):
        return load_embedder(self.embedding_model)

    def search(self, query: str, k: int = 5, mode: str = "dense") -> list[Hit]:
        return self.search_many([query], k, mode)[0]

    def search_many(self, queries: list[str], k: int = 5, mode: str = "dense") -> list[list[Hit]]:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        state = self.state()
        if state is None or state.size == 0:
            return [[] for _ in queries]
        if state.meta.get("embedding_model") != self.embedding_model:
            raise store.IndexUnusable(
                f"the index was built with {state.meta.get('embedding_model')!r}, not "
                f"{self.embedding_model!r}; run `workbench ingest --rebuild`")
        depth = min(state.size, k if mode == "dense" else max(4 * k, 50))
        vectors = embed(self.model(), queries)
        scores, rows = state.index.search(vectors, depth)
        results = []
        for qi, query in enumerate(queries):
            ranked = [(int(r), float(s)) for r, s in zip(rows[qi], scores[qi]) if r >= 0]
            if mode == "hybrid":
                ranked = self._fuse(state, query, ranked, depth)
            results.append([self._hit(state, rank, row, score)
                            for rank, (row, score) in enumerate(ranked[:k], start=1)])
        return results

    def _fuse(self, state: store.CorpusIndex, query: str, dense: list[tuple[int, float]],
              depth: int) -> list[tuple[int, float]]:
        import bm25s

        bm25 = self._bm25_index(state)
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)
        fused: dict[int, float] = {}
        for rank, (row, _) in enumerate(dense, start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (self.rrf_k + rank)
        if tokens and tokens[0]:
            docs, scores = bm25.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
            for rank, (row, score) in enumerate(zip(docs[0], scores[0]), start=1):
                if score > 0:
                    fused[int(row)] = fused.get(int(row), 0.0) + self.sparse_weight / (self.rrf_k + rank)
        return sorted(fused.items(), key=lambda item: -item[1])

    def _bm25_index(self, state: store.CorpusIndex):
        import bm25s

        with self._lock:
            if self._bm25 is None or self._bm25[0] is not state:
                texts = [indexed_text(c) for c in state.chunks]
                model = bm25s.BM25()
                model.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
                self._bm25 = (state, model)
            return self._bm25[1]

    @staticmethod
    def _hit(state: store.CorpusIndex, rank: int, row: int, score: float) -> Hit:
        chunk = state.chunks[row]
        return Hit(rank=rank, score=round(float(np.float32(score)), 6), source=chunk["source"],
                   page=chunk.get("page"), section=chunk.get("section"), chunk_id=chunk["chunk_id"],
                   doc_id=chunk["doc_id"], text=chunk["text"])


_retrievers: dict[tuple[str, str], Retriever] = {}
_retrievers_lock = threading.Lock()


def retriever_for(workspace: Workspace, embedding_model: str) -> Retriever:
    """One retriever per workspace and model in this process (the web app's cache)."""
    key = (str(workspace.home), embedding_model)
    with _retrievers_lock:
        if key not in _retrievers:
            _retrievers[key] = Retriever(workspace, embedding_model)
        return _retrievers[key]
