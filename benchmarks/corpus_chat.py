"""Corpus and chat speed: embedding inside ingestion, search latency, chat decoding, each as a
ratio to the bare library call it wraps, measured in this same process.

1. Ingestion. N synthetic .txt documents (varied template sentences, ~8 chunks each at
   chunk_size 200) go through the path ``workbench ingest`` takes: ``add_paths``, then
   ``jobs.control.create`` and ``jobs.runner.execute`` of a ``corpus.ingest`` run, in this
   process, with the embedding model already loaded and warm (a worker keeps it cached). The
   job's own ``parse_isolated``, ``chunk_blocks`` and ``embed`` are wrapped with timers (nothing
   else changes), which splits the wall time into parsing (a child process per file), chunking,
   embedding and the rest (registry, run status, index commits). The chunk texts are then read
   back from ``data/metadata.json`` and, on a subset of whole documents (``--compare-chunks``),
   three encodings of the same texts with the same model object are interleaved slice by slice,
   the order rotating each slice: bare ``model.encode(texts, batch_size=64,
   normalize_embeddings=True)``, ``workbench.index.embedder.embed(model, texts)``, and a replay
   of what the job does (one ``embed`` call per document). Ratios are throughput ratios to bare
   (>1 is faster): the embedding time measured inside the job for those same documents, each
   interleaved variant (median of the per-slice ratios), and end-to-end ingestion.
2. Search. ``Retriever.search`` (query embedding + FAISS + hit building) per single query, p50
   and p95, dense and hybrid (BM25 fused) on the ingested corpus, interleaved with the bare
   ``model.encode([query])`` and bare ``index.search`` for context. For the large point
   (``--large``, 100k rows) the chunk store is built directly with ``workbench.index.store_writes``
   (a copy of the real index, ``add_document`` of filler documents whose vectors are random
   unit vectors and whose text is a placeholder, ``compact``): the real chunks stay where queries
   land, 100k texts are never embedded. Timed flat, then after ``store_writes.compact(target, "hnsw")``
   (build time and recall@k against flat reported).
3. Chat. The base model loaded by ``ModelCache`` (``--model``, default ``$WORKBENCH_BASE_MODEL``
   or ``$WORKBENCH_HOME/models/base``), a RAG prompt from ``build_prompt`` with the top hits,
   greedy, ``max_new_tokens`` new tokens on both sides (``min_new_tokens`` is set to the same on
   the shared model's generation_config so both sides always produce that many). Interleaved
   runs of bare ``model.generate(**inputs, **generation_kwargs(...))``, the workbench's
   ``stream_generate`` iterated to the end, and a bare one-token generate (prefill + first
   token, the floor for time to first token). Tokens/s is new tokens over the whole call.

The machine may be noisy: every comparison is interleaved and reported as medians (the spread
of the per-slice embedding ratios is printed too; ``--quick`` is a smoke run, its ratios move by
10-20 % from run to run). Unless
``--omp-default`` is given (or OMP_WAIT_POLICY is already set), OMP_WAIT_POLICY=PASSIVE is set
before torch and faiss load: with libgomp's default spin-waiting on a CPU-starved 2-core box, torch
in the main thread ran 3-6x slower than in a second thread (a prefill took 12 s instead of 2-4 s),
so the bare call (main thread) against ``stream_generate`` (its own thread) measured the spin
heuristics, not the code. Passive waiting makes every thread behave alike.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/corpus_chat.py [--quick] [--skip-chat]
        [--skip-100k] [--model PATH] [--docs 200] [--json PATH] [--omp-default]

On a 2-core box under load (load average ~3) the full run takes ~11-12 min, mostly the ingest
embedding (~3 min) and the HNSW build at 100k rows (~3 min; ``--skip-100k`` drops it);
``--quick`` takes ~1.5 min. The JSON of every figure is the last line of stdout.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "--omp-default" not in sys.argv:  # read by libgomp when torch / faiss load: set it before
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from jobs import control  # noqa: E402
from jobs.runner import execute  # noqa: E402
from storage import Workspace  # noqa: E402
from storage.documents import DocumentStore  # noqa: E402
from workbench.chat.model_cache import ModelCache  # noqa: E402
from workbench.chat.prompt import build_prompt, chat_messages  # noqa: E402
from workbench.chat.session import generation_kwargs, stream_generate  # noqa: E402
from workbench.corpus import ingest as ingest_job  # noqa: E402
from workbench.corpus.library import add_paths  # noqa: E402
from common import percentile, timed  # noqa: E402
from workbench.index import store_writes  # noqa: E402
from workbench.index.embedder import describe, embed, load_embedder  # noqa: E402
from workbench.index.search import Retriever  # noqa: E402
from workbench.settings import Settings  # noqa: E402

# ---------------------------------------------------------------- synthetic corpus and queries

SUBJECTS = [
    "the ingestion worker", "the retention policy", "the billing service", "the vector index",
    "the nightly backup", "the vendor contract", "the audit log", "the staging cluster",
    "the onboarding guide", "the GPU scheduler", "the tokenizer", "the customer portal",
    "the incident review", "the pricing model", "the data warehouse", "the mobile app",
    "the travel handbook", "the security team", "the annual budget", "the shipping estimate",
    "the payroll export", "the search relevance report", "the load balancer", "the legal memo",
    "the quarterly forecast", "the support rota", "the firmware update", "the warehouse robot",
    "the translation memory", "the compliance checklist", "the cooling system", "the press release",
]
VERBS = [
    ("reduces", "reduced"), ("increases", "increased"), ("depends on", "depended on"),
    ("replaces", "replaced"), ("documents", "documented"), ("monitors", "monitored"),
    ("delays", "delayed"), ("requires", "required"), ("validates", "validated"),
    ("summarises", "summarised"), ("overrides", "overrode"), ("caches", "cached"),
    ("exports", "exported"), ("limits", "limited"), ("duplicates", "duplicated"),
]
OBJECTS = [
    "latency under load", "the number of open tickets", "disk usage on the archive volume",
    "the refund window", "memory use of the parser", "the approval chain for purchases",
    "the error budget", "overtime requests", "the cost of cold storage", "model accuracy on the test set",
    "the delivery schedule", "password rotation", "the size of the monthly invoice",
    "customer churn", "the on-call escalation path", "the carbon report", "licence renewals",
    "the backlog of translations", "queue depth at night", "the battery life of handhelds",
]
QUALIFIERS = [
    "since the March release", "for enterprise customers", "unless the override flag is set",
    "during peak hours", "in the Frankfurt region", "for every new hire", "after the migration",
    "when the cache is cold", "on weekends", "for contracts above fifty thousand euros",
    "in the first quarter", "while the audit is open", "for archived projects", "at most once a day",
]
NAMES = ["Amara Osei", "Lukas Brenner", "Mei Tanaka", "Diego Alvarez", "Sofia Rossi", "Ivan Petrov",
         "Nadia Haddad", "Tom Whitaker", "Priya Raman", "Elif Kaya", "Jonas Berg", "Chloe Martin"]
DEPARTMENTS = ["platform", "finance", "legal", "operations", "research", "people", "security", "sales"]
PROJECTS = ["Atlas", "Borealis", "Cedar", "Dynamo", "Ember", "Fjord", "Granite", "Harbor", "Iris",
            "Juniper", "Kestrel", "Lumen", "Mosaic", "Nimbus", "Orchid", "Pioneer"]
NOUNS = ["retention period", "response target", "storage quota", "review cycle", "price cap",
         "latency budget", "notice period", "batch size", "warranty term", "sampling rate"]
UNITS = ["days", "hours", "gigabytes", "weeks", "milliseconds", "percent", "euros", "months"]


def _sentence(rng: random.Random) -> str:
    s, (v, v_past), o, q = (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS),
                            rng.choice(QUALIFIERS))
    templates = [
        f"{s} {v} {o} {q}.",
        f"According to {rng.choice(NAMES)}, {s} {v} {o}.",
        f"The {rng.choice(NOUNS)} for project {rng.choice(PROJECTS)} is {rng.randint(2, 900)} {rng.choice(UNITS)} {q}.",
        f"If {s} fails, {rng.choice(SUBJECTS)} {v} {o} within {rng.randint(2, 90)} minutes.",
        f"Questions about {o} go to {rng.choice(NAMES)} in the {rng.choice(DEPARTMENTS)} team.",
        f"In {rng.randint(2015, 2026)}, {s} {v_past} {o} by {rng.randint(2, 60)} percent.",
        f"Nobody expected that {s} {v} {o}, but the {rng.choice(DEPARTMENTS)} review confirmed it {q}.",
        f"Project {rng.choice(PROJECTS)} keeps a copy of {o}; {s} {v} it {q}.",
    ]
    text = rng.choice(templates)
    return text[0].upper() + text[1:]


def make_document(rng: random.Random, number: int, words: int) -> str:
    """A titled text of paragraphs (3-7 sentences each) of about ``words`` words."""
    paragraphs = [f"Report {number}: {rng.choice(SUBJECTS)} and {rng.choice(OBJECTS)}"]
    count = 0
    while count < words:
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(3, 7)))
        paragraphs.append(paragraph)
        count += len(paragraph.split())
    return "\n\n".join(paragraphs) + "\n"


def write_corpus(folder: Path, docs: int, words: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(docs):
        path = folder / f"report-{i:04d}.txt"
        path.write_text(make_document(rng, i, int(words * rng.uniform(0.6, 1.4))), encoding="utf-8")
        paths.append(path)
    return paths


def make_queries(count: int, seed: int) -> list[str]:
    rng = random.Random(seed + 1)
    forms = [
        lambda: f"What is the {rng.choice(NOUNS)} for project {rng.choice(PROJECTS)}?",
        lambda: f"Who handles questions about {rng.choice(OBJECTS)}?",
        lambda: f"How does {rng.choice(SUBJECTS)} affect {rng.choice(OBJECTS)}?",
        lambda: f"What changed in {rng.randint(2015, 2026)} for {rng.choice(SUBJECTS)}?",
        lambda: f"Which team reviews {rng.choice(OBJECTS)} {rng.choice(QUALIFIERS)}?",
    ]
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen.setdefault(rng.choice(forms)(), None)
    return list(seen)


# ------------------------------------------------------------------------------ small helpers



def text_key(texts: list[str]) -> str:
    return hashlib.sha1("\x00".join(texts).encode()).hexdigest()


class Probe:
    """Wraps a function of the ingest module and records how long each call took."""

    def __init__(self, fn: Callable[..., Any], key: Callable[..., str] | None = None):
        self.fn, self.key, self.calls = fn, key, []

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            seconds = time.perf_counter() - started
            self.calls.append((self.key(*args, **kwargs) if self.key else None, seconds))

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.calls)


@contextmanager
def probes_in_ingest():
    """Time the job's own parse, chunk and embed calls; the originals are put back after."""
    names = ("parse_isolated", "chunk_blocks", "embed")
    originals = {n: getattr(ingest_job, n) for n in names}
    probes = {n: Probe(originals[n]) for n in names}
    probes["embed"].key = lambda model, texts, **_: text_key(texts)
    for name, probe in probes.items():
        setattr(ingest_job, name, probe)
    try:
        yield probes
    finally:
        for name, fn in originals.items():
            setattr(ingest_job, name, fn)


def say(line: str = "") -> None:
    print(line, flush=True)


# ------------------------------------------------------------------------------ 1. ingestion

def run_ingest(settings: Settings, corpus: Path, chunk_size: int) -> dict[str, Any]:
    """``workbench ingest CORPUS`` in this process: add_paths, create the run, execute it."""
    workspace = settings.workspace.ensure()
    added = add_paths(workspace, [corpus], settings.max_upload_mb * 1_000_000)
    doc_ids = [a.doc["id"] for a in added if a.doc and a.created]
    run = control.create(settings, "corpus.ingest", {"doc_ids": doc_ids, "chunk_size": chunk_size})
    with probes_in_ingest() as probes:
        wall, status = timed(lambda: execute(settings, run.id))
    if status.get("status") != "succeeded":
        raise SystemExit(f"ingest run {run.id} {status.get('status')}: {status.get('error')}")
    result = status["result"]
    parse_s, chunk_s, embed_s = (probes[n].seconds for n in ("parse_isolated", "chunk_blocks", "embed"))
    return {"docs": len(result["indexed"]), "failed": len(result["failed"]), "chunks": result["chunks"],
            "wall_s": wall, "parse_s": parse_s, "chunk_s": chunk_s, "embed_s": embed_s,
            "other_s": wall - parse_s - chunk_s - embed_s,
            "embed_calls": dict(probes["embed"].calls)}


def chunk_groups(workspace: Workspace) -> list[list[str]]:
    """The indexed chunk texts, one list per document, in index order."""
    from storage.chunkdb import ChunkDB

    groups: dict[str, list[str]] = {}
    with ChunkDB(workspace.corpus_db) as db:
        for chunk in db.iter_chunks():
            groups.setdefault(chunk["doc_id"], []).append(chunk["text"])
    return list(groups.values())


def pick_documents(groups: list[list[str]], chunks: int) -> list[list[str]]:
    """Whole documents spread over the corpus, about ``chunks`` chunks in all."""
    total = sum(len(g) for g in groups)
    if chunks >= total:
        return groups
    stride = total / chunks
    picked = [groups[int(i * stride)] for i in range(len(groups)) if int(i * stride) < len(groups)]
    out, count = [], 0
    for group in picked:
        if count >= chunks:
            break
        out.append(group)
        count += len(group)
    return out


def slices_of(groups: list[list[str]], per_slice: int) -> list[list[list[str]]]:
    slices, current = [], []
    for group in groups:
        current.append(group)
        if sum(len(g) for g in current) >= per_slice:
            slices.append(current)
            current = []
    if current:
        slices.append(current)
    return slices


def compare_encoders(model, groups: list[list[str]], batch_size: int, per_slice: int) -> dict[str, Any]:
    """Bare encode, embed() and the per-document replay over the same slices, order rotating."""
    sides: dict[str, Callable[[list[list[str]]], Any]] = {
        "bare": lambda docs: model.encode([t for d in docs for t in d], batch_size=64,
                                          normalize_embeddings=True),
        "embed": lambda docs: embed(model, [t for d in docs for t in d]),
        "per_doc": lambda docs: [embed(model, d, batch_size=batch_size) for d in docs],
    }
    names = list(sides)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    slices = slices_of(groups, per_slice)
    for i, docs in enumerate(slices):
        for name in names[i % 3:] + names[:i % 3]:
            seconds[name].append(timed(lambda: sides[name](docs))[0])
    chunks = sum(len(g) for g in groups)
    paired = {n: [b / s for b, s in zip(seconds["bare"], seconds[n])] for n in names[1:]}
    return {"chunks": chunks, "slices": len(slices), "seconds": {n: sum(v) for n, v in seconds.items()},
            "rate": {n: chunks / sum(v) for n, v in seconds.items()},
            "ratio": {n: statistics.median(v) for n, v in paired.items()},
            "spread": {n: (min(v), max(v)) for n, v in paired.items()},
            "bare_by_doc": _bare_seconds_by_doc(slices, seconds["bare"])}


def _bare_seconds_by_doc(slices: list[list[list[str]]], bare: list[float]) -> dict[str, float]:
    """Each slice's bare time shared out to its documents by chunk count."""
    out = {}
    for docs, seconds in zip(slices, bare):
        n = sum(len(d) for d in docs)
        for d in docs:
            out[text_key(d)] = seconds * len(d) / n
    return out


def bench_ingest(settings: Settings, corpus: Path, model, args) -> dict[str, Any]:
    info = run_ingest(settings, corpus, args.chunk_size)
    say(f"ingest: {info['docs']} docs ({info['failed']} failed), {info['chunks']} chunks in "
        f"{info['wall_s']:.1f} s = {info['chunks'] / info['wall_s']:.1f} chunks/s end to end")
    wall = info["wall_s"]
    say("  split: " + ", ".join(f"{n} {info[n + '_s']:.1f} s ({100 * info[n + '_s'] / wall:.0f}%)"
                               for n in ("parse", "chunk", "embed", "other")))
    say(f"  embedding inside the job: {info['chunks'] / info['embed_s']:.1f} chunks/s "
        f"({len(info['embed_calls'])} embed calls, one per document)")
    groups = chunk_groups(settings.workspace)
    subset = pick_documents(groups, args.compare_chunks)
    cmp = compare_encoders(model, subset, ingest_job.Config().batch_size,
                           per_slice=max(16, args.compare_chunks // 4))
    in_job = sum(info["embed_calls"][text_key(d)] for d in subset)
    bare = sum(cmp["bare_by_doc"].values())
    out = {"docs": info["docs"], "chunks": info["chunks"], "ingest_wall_s": round(wall, 2),
           "ingest_chunks_per_s": info["chunks"] / wall,
           "split_s": {n: round(info[n + "_s"], 2) for n in ("parse", "chunk", "embed", "other")},
           "in_job_embed_chunks_per_s": info["chunks"] / info["embed_s"],
           "compare_chunks": cmp["chunks"], "bare_chunks_per_s": cmp["rate"]["bare"],
           "embed_chunks_per_s": cmp["rate"]["embed"], "per_doc_chunks_per_s": cmp["rate"]["per_doc"],
           "ratio_in_job_vs_bare": bare / in_job, "ratio_embed_vs_bare": cmp["ratio"]["embed"],
           "ratio_per_doc_vs_bare": cmp["ratio"]["per_doc"],
           "ratio_end_to_end_vs_bare": (info["chunks"] / wall) / cmp["rate"]["bare"]}
    say(f"  same {cmp['chunks']} chunks ({len(subset)} docs, {cmp['slices']} interleaved slices): "
        f"bare encode {cmp['rate']['bare']:.1f} chunks/s, embed() {cmp['rate']['embed']:.1f}, "
        f"per-document embed() {cmp['rate']['per_doc']:.1f}")
    spread = {n: "{:.2f}-{:.2f}".format(*v) for n, v in cmp["spread"].items()}
    say(f"  ratio to bare: in the job {out['ratio_in_job_vs_bare']:.2f}x, embed() "
        f"{out['ratio_embed_vs_bare']:.2f}x (slices {spread['embed']}), per-document "
        f"{out['ratio_per_doc_vs_bare']:.2f}x (slices {spread['per_doc']}), end to end "
        f"{out['ratio_end_to_end_vs_bare']:.2f}x")
    return out


# -------------------------------------------------------------------------------- 2. search

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
            out["faiss"].append(timed(lambda: state.index.search(vector, k))[0])
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


# ---------------------------------------------------------------------------------- 3. chat

def chat_prompt(settings: Settings, question: str, k: int) -> str:
    hits = Retriever(settings.workspace, settings.embedding_model).search(question, k)
    return build_prompt(question, [h.text for h in hits])


def bench_chat(settings: Settings, model_path: str, prompt: str, reps: int, max_new: int) -> dict[str, Any]:
    load_s, loaded = timed(lambda: ModelCache().get("base", settings.workspace, model_path))
    tokenizer, model = loaded.tokenizer, loaded.model
    inputs = tokenizer.apply_chat_template(chat_messages(prompt), add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True).to(loaded.device)
    prompt_tokens = int(inputs["input_ids"].shape[-1])
    say(f"chat model {model_path} loaded in {load_s:.1f} s on {loaded.device}; prompt {prompt_tokens} tokens")

    def bare(n: int = max_new) -> tuple[float, int, Any]:
        kwargs = {**generation_kwargs(tokenizer, 0.0, n), **({"min_new_tokens": 1} if n != max_new else {})}
        seconds, out = timed(lambda: model.generate(**inputs, **kwargs))
        return seconds, int(out.shape[-1] - prompt_tokens), out

    def ours(n: int = max_new) -> tuple[float, int, float, str]:
        started, first, text, tokens = time.perf_counter(), None, "", 0
        for piece, count in stream_generate(loaded, prompt, 0.0, n):
            if piece:
                first = first if first is not None else time.perf_counter() - started
                text += piece
            else:
                tokens = count
        return time.perf_counter() - started, tokens, first, text

    bare(4), ours(4)  # warm-up (the streamer path too) before equal lengths are forced
    model.generation_config.min_new_tokens = max_new  # both sides: always max_new new tokens
    runs: dict[str, list] = {"bare": [], "ours": [], "first": []}
    sides = {"bare": lambda: bare(), "ours": ours, "first": lambda: bare(1)}
    names = list(sides)
    for i in range(reps):
        for name in names[i % 3:] + names[:i % 3]:
            runs[name].append(sides[name]())
    return _chat_figures(runs, tokenizer, prompt_tokens, max_new)


def _chat_figures(runs: dict[str, list], tokenizer, prompt_tokens: int, max_new: int) -> dict[str, Any]:
    bare_rate = [n / s for s, n, _ in runs["bare"]]
    ours_rate = [n / s for s, n, _, _ in runs["ours"]]
    ttft = [f for _, _, f, _ in runs["ours"] if f is not None]
    first = [s for s, _, _ in runs["first"]]
    same_text = (tokenizer.decode(runs["bare"][-1][2][0, prompt_tokens:], skip_special_tokens=True).strip()
                 == runs["ours"][-1][3].strip())
    out = {"prompt_tokens": prompt_tokens, "new_tokens": {"bare": runs["bare"][-1][1], "ours": runs["ours"][-1][1]},
           "reps": len(bare_rate), "bare_tokens_per_s": statistics.median(bare_rate),
           "ours_tokens_per_s": statistics.median(ours_rate),
           "ratio": statistics.median(o / b for o, b in zip(ours_rate, bare_rate)),
           "ttft_p50_s": statistics.median(ttft) if ttft else None,
           "bare_first_token_p50_s": statistics.median(first), "same_text": same_text}
    out["decode_tokens_per_s"] = {
        "bare": _rate(max_new - 1, statistics.median(s for s, _, _ in runs["bare"]), out["bare_first_token_p50_s"]),
        "ours": _rate(max_new - 1, statistics.median(s for s, _, _, _ in runs["ours"]), out["ttft_p50_s"])}
    say(f"chat bare generate   {out['bare_tokens_per_s']:6.1f} tokens/s   ({out['new_tokens']['bare']} new tokens, "
        f"median of {out['reps']})")
    say(f"chat stream_generate {out['ours_tokens_per_s']:6.1f} tokens/s   ({out['new_tokens']['ours']} new tokens)  "
        f"ratio {out['ratio']:.3f}x   same text: {'yes' if same_text else 'NO'}")
    decode = {k: "n/a" if v is None else f"{v:.1f}" for k, v in out["decode_tokens_per_s"].items()}
    say(f"  time to first token p50 {out['ttft_p50_s']:.3f} s (bare prefill + 1 token p50 "
        f"{out['bare_first_token_p50_s']:.3f} s); after the first token ~{decode['bare']} (bare) "
        f"vs ~{decode['ours']} (ours) tokens/s")
    return out


def _rate(tokens: int, total: float, first: float | None) -> float | None:
    """Tokens/s after the first token (medians of different runs: a rough figure)."""
    return tokens / (total - first) if first is not None and total > first else None


# --------------------------------------------------------------------------------- reporting

def table(figures: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []

    def row(name: str, value: float | None, fmt: str, goal: float | None = None, note: str = "") -> None:
        shown = "n/a" if value is None else format(value, fmt)
        verdict = "" if goal is None or value is None else ("ok" if value >= goal else "MISS")
        rows.append((name, shown, f">= {goal:g}x" if goal is not None else note, verdict))

    ing = figures.get("ingest")
    if ing:
        row("embed in ingest job / bare encode", ing["ratio_in_job_vs_bare"], ".2f", 0.9)
        row("embed() / bare encode (interleaved)", ing["ratio_embed_vs_bare"], ".2f", 0.9)
        row("per-doc embed() / bare (interleaved)", ing["ratio_per_doc_vs_bare"], ".2f", None, "info")
        row("ingest end to end / bare encode", ing["ratio_end_to_end_vs_bare"], ".2f", None, "info")
        row("ingest end to end, chunks/s", ing["ingest_chunks_per_s"], ".1f", None, "info")
        row("bare encode, chunks/s", ing["bare_chunks_per_s"], ".1f", None, "info")
    for label, block in (("search", figures.get("search_small")), ("search", figures.get("search_large"))):
        if not block:
            continue
        size = block.get("chunks") or block.get("rows")
        for mode in ("dense", "hybrid", "flat", "hnsw"):
            if mode in block:
                kind = {"dense": "dense flat", "flat": "dense flat", "hnsw": "dense hnsw"}.get(mode, mode)
                row(f"{label} {kind} @{size} p50 / p95 ms", block[mode]["p50_ms"], ".1f", None,
                    f"p95 {block[mode]['p95_ms']:.1f} ms")
    chat = figures.get("chat")
    if chat:
        row("chat stream_generate / bare generate", chat["ratio"], ".3f", 0.95)
        row("chat tokens/s (ours)", chat["ours_tokens_per_s"], ".1f", None, f"bare {chat['bare_tokens_per_s']:.1f}")
        row("chat time to first token p50, s", chat["ttft_p50_s"], ".3f", None,
            f"bare 1st token {chat['bare_first_token_p50_s']:.3f} s")
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    say()
    say(f"{'figure':44} {'value':>9}  {'goal / context':28} verdict")
    for name, value, goal, verdict in rows:
        say(f"{name:44} {value:>9}  {goal:28} {verdict}")


def default_model() -> str:
    settings = Settings.from_env()
    return settings.base_model or str(settings.workspace.base_model)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpus, 10k large index, fewer repeats")
    parser.add_argument("--skip-chat", action="store_true")
    parser.add_argument("--skip-100k", action="store_true", help="no large-index search figures")
    parser.add_argument("--model", default=None, help="chat model folder (default: the workspace base model)")
    parser.add_argument("--docs", type=int, default=None, help="documents in the corpus (default 200, quick 16)")
    parser.add_argument("--doc-words", type=int, default=900, help="mean words per document (~8 chunks)")
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument("--compare-chunks", type=int, default=None,
                        help="chunks re-encoded for the interleaved comparison (default 192, quick 64)")
    parser.add_argument("--queries", type=int, default=None, help="single queries timed (default 200, quick 40)")
    parser.add_argument("--large", type=int, default=None, help="rows of the large index (default 100000, quick 10000)")
    parser.add_argument("--chat-reps", type=int, default=None, help="default 5, quick 2")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 64, quick 16")
    parser.add_argument("--contexts", type=int, default=None, help="retrieved chunks in the chat prompt (default 5, quick 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--omp-default", action="store_true",
                        help="keep libgomp's default spin-waiting (see the module docstring)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    quick = args.quick
    for name, full, small in (("docs", 200, 16), ("compare_chunks", 192, 64), ("queries", 200, 40),
                              ("large", 100_000, 10_000), ("chat_reps", 5, 2), ("max_new_tokens", 64, 16),
                              ("contexts", 5, 3)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    args.model = args.model or default_model()
    return args


@contextmanager
def section(figures: dict[str, Any], name: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        figures.setdefault("section_s", {})[name] = round(time.perf_counter() - started, 1)
        say(f"  [{name}: {figures['section_s'][name]:.0f} s]")


def run_sections(args, figures: dict[str, Any], tmp: Path) -> None:
    settings = replace(Settings.from_env(), home=tmp / "workspace")
    with section(figures, "setup"):
        load_s, model = timed(lambda: load_embedder(settings.embedding_model))
        say(f"embedding model {settings.embedding_model}: {describe(model)}, loaded in {load_s:.1f} s")
        write_corpus(tmp / "corpus", args.docs, args.doc_words, args.seed)
        embed(model, [make_document(random.Random(1), 0, 150)] * 16)  # warm-up
    with section(figures, "ingest"):
        figures["ingest"] = bench_ingest(settings, tmp / "corpus", model, args)
    queries = make_queries(args.queries, args.seed)
    with section(figures, "search"):
        figures["search_small"] = bench_search_small(settings, model, queries, 5)
    if not args.skip_100k:
        with section(figures, "search_large"):
            figures["search_large"] = bench_search_large(settings, model, queries, 5, args.large,
                                                         args.seed, tmp / "large")
        gc.collect()
    if args.skip_chat:
        return
    if not (Path(args.model) / "config.json").exists():
        say(f"chat skipped: no model at {args.model} (pass --model PATH)")
        return
    with section(figures, "chat"):
        prompt = chat_prompt(settings, queries[0], args.contexts)
        figures["chat"] = bench_chat(settings, args.model, prompt, args.chat_reps, args.max_new_tokens)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    figures: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "json"},
                               "loadavg_start": os.getloadavg(),
                               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    say(f"load average at start {figures['loadavg_start'][0]:.2f} on {os.cpu_count()} cpus; "
        f"OMP_WAIT_POLICY={figures['omp_wait_policy'] or '(unset)'}")
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        run_sections(args, figures, Path(tmp))
    figures["total_s"] = round(time.perf_counter() - started, 1)
    figures["loadavg_end"] = os.getloadavg()
    print_table(table(figures))
    say(f"\ntotal {figures['total_s']:.0f} s; load average (1/5/15 min) at the end "
        + " / ".join(f"{x:.2f}" for x in figures["loadavg_end"]) + f" on {os.cpu_count()} cpus")
    line = json.dumps(figures, default=float)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    say(line)


if __name__ == "__main__":
    main()
