"""Search latency: ``Retriever.search`` (query embedding + FAISS + hit building) per single query,
p50 and p95, dense and hybrid (BM25 fused), on a synthetic corpus ingested through the product's
own path (``synthetic_corpus``), interleaved with the bare ``model.encode([query])`` and the bare
``index.search`` for context. For the large point (``--large``, 100k rows) the chunk store is
built directly with ``workbench.index.store_writes`` (a copy of the real index, ``add_document``
of filler documents whose vectors are random unit vectors and whose text is a placeholder,
``compact``): the real chunks stay where queries land, 100k texts are never embedded. Timed flat,
then after ``store_writes.compact(target, "hnsw")`` (build time and recall@k against flat).

Unless ``--omp-default`` is given (or OMP_WAIT_POLICY is already set), OMP_WAIT_POLICY=PASSIVE is
set before torch and faiss load: with libgomp's default spin-waiting on a CPU-starved 2-core box,
torch in the main thread ran 3-6x slower than in a second thread, so the figures measured the
spin heuristics, not the code. Passive waiting makes every thread behave alike.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/search_speed.py [--docs 200] [--queries 200]
        [--large 100000 | --skip-large] [--json PATH]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "--omp-default" not in sys.argv:  # read by libgomp when torch / faiss load: set it before
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from common import emit, percentile, timed  # noqa: E402
from synthetic_corpus import ingest, make_queries, say, write_corpus  # noqa: E402
from storage import Workspace  # noqa: E402
from storage.documents import DocumentStore  # noqa: E402
from workbench.index import store_writes  # noqa: E402
from workbench.index.embedder import load_embedder  # noqa: E402
from workbench.index.search import Retriever  # noqa: E402
from workbench.settings import Settings  # noqa: E402


def search_latencies(retriever: Retriever, model, queries: list[str], k: int,
                     mode: str = "dense", bare_encode: bool = True) -> dict[str, list]:
    """Per query: Retriever.search, then (dense only) the bare encode and the bare FAISS search
    (with ``bare_encode=False`` the query vector is encoded untimed). The hits' chunk ids come
    back under ``ids`` (for recall)."""
    state = retriever.state()
    out: dict[str, list] = {"search": [], "encode": [], "faiss": [], "ids": []}
    for query in queries:
        seconds, hits = timed(lambda: retriever.search(query, k, mode))
        out["search"].append(seconds)
        out["ids"].append([h.chunk_id for h in hits])
        if mode == "dense":
            seconds, vector = timed(lambda: model.encode([query], normalize_embeddings=True))
            if bare_encode:
                out["encode"].append(seconds)
            out["faiss"].append(timed(lambda: state.search(vector, k))[0])  # FAISS, snapshot and delta
    return {name: values for name, values in out.items() if values}


def summarise(label: str, times: dict[str, list[float]]) -> dict[str, float]:
    ms = {name: [1000 * v for v in values] for name, values in times.items() if name != "ids"}
    out = {"p50_ms": percentile(ms["search"], 0.5), "p95_ms": percentile(ms["search"], 0.95), "n": len(ms["search"])}
    parts = []
    if "encode" in ms:
        out["encode_p50_ms"] = percentile(ms["encode"], 0.5)
        parts.append(f"bare encode p50 {out['encode_p50_ms']:.1f} ms")
    if "faiss" in ms:
        out["faiss_p50_ms"] = percentile(ms["faiss"], 0.5)
        parts.append(f"bare FAISS p50 {out['faiss_p50_ms']:.2f} ms")
    extra = f"   ({', '.join(parts)})" if parts else ""
    say(f"{label:34} p50 {out['p50_ms']:7.1f} ms   p95 {out['p95_ms']:7.1f} ms   n={out['n']}{extra}")
    return out


def bench_search_small(settings: Settings, model, queries: list[str], k: int) -> dict[str, Any]:
    retriever = Retriever(settings.workspace, settings.embedding_model)
    size = retriever.state().size
    retriever.search(queries[0], k)
    out = {"chunks": size, "dense": summarise(f"search dense flat @{size}",
                                              search_latencies(retriever, model, queries, k))}
    bm25_s, _ = timed(lambda: retriever.search(queries[0], k, "hybrid"))
    say(f"  hybrid: first query builds the BM25 index: {bm25_s:.2f} s")
    out["hybrid"] = summarise(f"search hybrid flat @{size}",
                              search_latencies(retriever, model, queries, k, "hybrid"))
    out["hybrid"]["bm25_build_s"] = bm25_s
    return out


def build_large(source: Workspace, target: Workspace, rows: int, seed: int, index_type: str = "flat",
                filler: str = "random") -> int:
    """The real index of ``source`` plus filler documents (10,000 chunks each) in ``target``'s
    chunk store, then one snapshot of ``index_type``. The row count. ``filler``: ``random`` unit
    vectors, or ``gaussian``: drawn from a normal distribution with the mean and covariance of the
    real chunks' vectors, then normalised (filler shaped like the corpus, not spread over every
    direction)."""
    from storage.chunkdb import ChunkDB

    if target.corpus_db != source.corpus_db:
        target.data.mkdir(parents=True, exist_ok=True)
        with ChunkDB(source.corpus_db) as src, ChunkDB(target.corpus_db, create=True) as dst:
            src.conn.backup(dst.conn)
    rng = np.random.default_rng(seed)
    with DocumentStore(target).lock(), ChunkDB(target.corpus_db) as db:
        dim, size, number = int(db.get("dim")), int(db.get("rows", 0)), 0
        draw = filler_sampler(db, dim, filler)
        while size < rows:
            n = min(10_000, rows - size)
            vectors = draw(rng, n)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            doc = {"id": f"filler{number:04d}", "name": f"filler-{number}.txt", "file": f"filler-{number}.txt",
                   "sha256": f"{number:064d}"}
            chunks = [{"chunk_id": f"{doc['id']}:{i}", "doc_id": doc["id"], "source": doc["name"], "page": None,
                       "section": None, "position": i, "tokens": 0, "text": f"filler chunk {i}"}
                      for i in range(n)]
            with db.writing():
                store_writes.add_document(db, doc, chunks, vectors)
            size, number = size + n, number + 1
    store_writes.compact(target, index_type)
    return size


def filler_sampler(db, dim: int, filler: str):
    """``draw(rng, n)``: n filler vectors (see ``build_large``), not yet normalised."""
    if filler == "random":
        return lambda rng, n: rng.standard_normal((n, dim), dtype=np.float32)
    if filler != "gaussian":
        raise ValueError(f"filler {filler!r}: random or gaussian")
    real = np.frombuffer(b"".join(v for _, v in db.vectors()), dtype=np.float32).reshape(-1, dim)
    mean = real.mean(axis=0)
    # a little ridge: a few thousand chunks leave the 384-dimensional covariance near singular
    factor = np.linalg.cholesky(np.cov(real, rowvar=False) + 1e-4 * np.eye(dim))
    return lambda rng, n: (mean + rng.standard_normal((n, dim)) @ factor.T).astype(np.float32)


def bench_search_large(settings: Settings, model, queries: list[str], k: int, rows: int,
                       seed: int, home: Path) -> dict[str, Any]:
    target = Workspace(home)
    build_s, size = timed(lambda: build_large(settings.workspace, target, rows, seed))
    say(f"  built the {size}-row index in {build_s:.1f} s (real chunks + random unit vectors)")
    retriever = Retriever(target, settings.embedding_model)
    retriever.search(queries[0], k)
    times = search_latencies(retriever, model, queries, k, bare_encode=False)
    flat, flat_ids = summarise(f"search dense flat @{size}", times), times["ids"]
    hnsw_s, _ = timed(lambda: store_writes.compact(target, "hnsw"))
    say(f"  store_writes.compact(target, 'hnsw') at {size} rows: {hnsw_s:.1f} s")
    retriever.search(queries[0], k)
    times = search_latencies(retriever, model, queries, k, bare_encode=False)
    hnsw = summarise(f"search dense hnsw @{size}", times)
    found = [len(set(f) & set(h)) / len(f) for f, h in zip(flat_ids, times["ids"]) if f]
    hnsw.update(build_s=hnsw_s, recall_at_k=statistics.mean(found))
    say(f"  hnsw recall@{k} against flat: {hnsw['recall_at_k']:.3f}")
    return {"rows": size, "flat": flat, "hnsw": hnsw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=200, help="documents in the corpus")
    parser.add_argument("--doc-words", type=int, default=900, help="mean words per document (~8 chunks)")
    parser.add_argument("--queries", type=int, default=200, help="single queries timed")
    parser.add_argument("--large", type=int, default=100_000, help="rows of the large index")
    parser.add_argument("--skip-large", action="store_true", help="no large-index figures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--omp-default", action="store_true", help="keep libgomp's default spin-waiting")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        settings = replace(Settings.from_env(), home=Path(tmp) / "workspace")
        model = load_embedder(settings.embedding_model)
        write_corpus(Path(tmp) / "corpus", args.docs, args.doc_words, args.seed)
        ingest(settings, Path(tmp) / "corpus", 200)
        queries = make_queries(args.queries, args.seed)
        figures["search_small"] = bench_search_small(settings, model, queries, 5)
        if not args.skip_large:
            figures["search_large"] = bench_search_large(settings, model, queries, 5, args.large, args.seed,
                                                         Path(tmp) / "large")
    emit(figures, args.json)


if __name__ == "__main__":
    main()
