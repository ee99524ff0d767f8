"""Embedding inside ingestion as a ratio to the bare library call it wraps, measured in this same
process.

N synthetic .txt documents (``synthetic_corpus``: ~8 chunks each at chunk_size 200) go through
the path ``workbench ingest`` takes (``add_paths``, then a ``corpus.ingest`` run executed in this
process) with the embedding model already loaded and warm (a worker keeps it cached). The job
records how long each document took to parse (a child process per file), chunk and embed
(``runs/<id>/metrics.jsonl``, one line a document), which splits the wall time into those and the
rest (registry, run status, index commits). On a subset of whole documents (``--compare-chunks``)
three encodings of the same chunk texts with the same model object are then interleaved slice by
slice, the order rotating each slice: bare ``model.encode(texts, batch_size=64,
normalize_embeddings=True)``, ``workbench.index.embedder.embed(model, texts)``, and a replay of
what the job does (one ``embed`` call per document). Ratios are throughput ratios to bare (>1 is
faster): the embedding time the job measured for those same documents, each interleaved variant
(median of the per-slice ratios), and end-to-end ingestion. Goal: embedding in the job at 0.9 of
bare or better.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ingest_speed.py [--docs 200] [--compare-chunks 192] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see search_speed.py: spin-waiting skews ratios on 2 cores
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import emit, timed  # noqa: E402
from synthetic_corpus import ingest, make_document, say, write_corpus  # noqa: E402
from storage import Workspace  # noqa: E402
from workbench.corpus import ingest as ingest_job  # noqa: E402
from workbench.index.embedder import describe, embed, load_embedder  # noqa: E402
from workbench.settings import Settings  # noqa: E402


def job_seconds(run_folder: Path, groups: list[list[str]]) -> list[dict[str, float]]:
    """The job's own timings, one entry a document in the order it indexed them (the order of
    ``groups``, checked by each document's chunk count)."""
    lines = [json.loads(line) for line in (run_folder / "metrics.jsonl").read_text().splitlines()]
    timings = [m for m in lines if "embed_s" in m]
    if [int(m["chunks"]) for m in timings] != [len(g) for g in groups]:
        raise SystemExit("the job's per-document timings do not line up with the indexed documents")
    return timings


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


def _bare_seconds_by_doc(slices: list[list[list[str]]], bare: list[float]) -> dict[int, float]:
    """Each slice's bare time shared out to its documents by chunk count."""
    out = {}
    for docs, seconds in zip(slices, bare):
        n = sum(len(d) for d in docs)
        for d in docs:
            out[id(d)] = seconds * len(d) / n
    return out


def bench_ingest(settings: Settings, corpus: Path, model, args) -> dict[str, Any]:
    wall, result, folder = ingest(settings, corpus, args.chunk_size)
    groups = chunk_groups(settings.workspace)
    timings = job_seconds(folder, groups)
    split = {n: sum(m[f"{n}_s"] for m in timings) for n in ("parse", "chunk", "embed")}
    split["other"] = wall - sum(split.values())
    chunks = result["chunks"]
    say(f"ingest: {len(result['indexed'])} docs ({len(result['failed'])} failed), {chunks} chunks in "
        f"{wall:.1f} s = {chunks / wall:.1f} chunks/s end to end")
    say("  split: " + ", ".join(f"{n} {v:.1f} s ({100 * v / wall:.0f}%)" for n, v in split.items()))
    say(f"  embedding inside the job: {chunks / split['embed']:.1f} chunks/s (one embed call per document)")
    subset = pick_documents(groups, args.compare_chunks)
    cmp = compare_encoders(model, subset, ingest_job.Config().batch_size, per_slice=max(16, args.compare_chunks // 4))
    in_job_by_doc = {id(g): m["embed_s"] for g, m in zip(groups, timings)}
    in_job = sum(in_job_by_doc[id(d)] for d in subset)
    bare = sum(cmp["bare_by_doc"].values())
    out = {"docs": len(result["indexed"]), "chunks": chunks, "ingest_wall_s": round(wall, 2),
           "ingest_chunks_per_s": chunks / wall, "split_s": {n: round(v, 2) for n, v in split.items()},
           "in_job_embed_chunks_per_s": chunks / split["embed"],
           "compare_chunks": cmp["chunks"], "bare_chunks_per_s": cmp["rate"]["bare"],
           "embed_chunks_per_s": cmp["rate"]["embed"], "per_doc_chunks_per_s": cmp["rate"]["per_doc"],
           "ratio_in_job_vs_bare": bare / in_job, "ratio_embed_vs_bare": cmp["ratio"]["embed"],
           "ratio_per_doc_vs_bare": cmp["ratio"]["per_doc"],
           "ratio_end_to_end_vs_bare": (chunks / wall) / cmp["rate"]["bare"]}
    say(f"  same {cmp['chunks']} chunks ({len(subset)} docs, {cmp['slices']} interleaved slices): "
        f"bare encode {cmp['rate']['bare']:.1f} chunks/s, embed() {cmp['rate']['embed']:.1f}, "
        f"per-document embed() {cmp['rate']['per_doc']:.1f}")
    spread = {n: "{:.2f}-{:.2f}".format(*v) for n, v in cmp["spread"].items()}
    say(f"  ratio to bare: in the job {out['ratio_in_job_vs_bare']:.2f}x (goal 0.9), embed() "
        f"{out['ratio_embed_vs_bare']:.2f}x (slices {spread['embed']}), per-document "
        f"{out['ratio_per_doc_vs_bare']:.2f}x (slices {spread['per_doc']}), end to end "
        f"{out['ratio_end_to_end_vs_bare']:.2f}x")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=200, help="documents in the corpus")
    parser.add_argument("--doc-words", type=int, default=900, help="mean words per document (~8 chunks)")
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument("--compare-chunks", type=int, default=192, help="chunks re-encoded for the interleaved comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        settings = replace(Settings.from_env(), home=Path(tmp) / "workspace")
        load_s, model = timed(lambda: load_embedder(settings.embedding_model))
        say(f"embedding model {settings.embedding_model}: {describe(model)}, loaded in {load_s:.1f} s")
        write_corpus(Path(tmp) / "corpus", args.docs, args.doc_words, args.seed)
        embed(model, [make_document(random.Random(1), 0, 150)] * 16)  # warm-up
        figures = bench_ingest(settings, Path(tmp) / "corpus", model, args)
    emit(figures, args.json)


if __name__ == "__main__":
    main()
