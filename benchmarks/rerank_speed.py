"""What the model's rerank (``workbench.index.rerank``) costs a question, and what it puts first:
one pass per passage (a CPU's way) against one left-padded batch (a GPU's way). Prints ms per
question (p50 and p95 over the questions, the two ways alternated question by question), hit@1
by page for the search and for each way, and how far the two ways' scores differ. On a GPU, the
batch's p50 against ``rerank.BUDGET_S`` is what turns the rerank on by default in Chat.

The search's top 10 per question (hybrid, the chat's depth) is saved once where the index is, so
the rerank can be measured on a machine that has neither the index nor the embedding model:

    python benchmarks/rerank_speed.py --home WORKSPACE --set rust-book --save hits.json
    python benchmarks/rerank_speed.py --hits hits.json [--hits more.json] --model MODEL_DIR

``WORKSPACE`` holds the set's index (``benchmarks/learning.py --keep DIR`` leaves one in
``DIR/pairs``; so does ``workbench ingest`` of ``fetch_docs.py``'s pages).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import percentile  # noqa: E402


def save(home: Path, set_name: str, out: Path) -> None:
    os.environ.update(WORKBENCH_HOME=str(home), HF_HUB_OFFLINE="1", WORKBENCH_AUTO_PULL="0")
    from storage.documents import DocumentStore
    from workbench.chat.session import RERANK_DEPTH
    from workbench.evaluate.retrieval import run_retrieval
    from workbench.evaluate.sets import rag_questions
    from workbench.settings import Settings

    settings = Settings.from_env()
    questions = rag_questions(ROOT / "benchmarks" / "data" / f"retrieval_{set_name}.tsv")
    names = {d["id"]: d["name"] for d in DocumentStore(settings.workspace).list()}
    ranked = run_retrieval(settings, questions, ("hybrid",), depth=RERANK_DEPTH).ranked["hybrid"]
    rows = [{"question": q["question"], "sources": q["sources"],
             "pages": [names[h.doc_id] for h in hits], "hits": [h.to_dict() for h in hits]}
            for q, hits in zip(questions, ranked)]
    out.write_text(json.dumps({"set": set_name, "questions": rows}, ensure_ascii=False))
    print(f"{set_name}: {len(rows)} questions, their top {RERANK_DEPTH} saved to {out}")


def measure(files: list[Path], model_dir: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.evaluate.metrics import first_relevant_rank
    from workbench.index.rerank import BUDGET_S, fused_order, question_log_likelihoods
    from workbench.index.search import Hit
    from workbench.models.loading import pick_device_dtype

    device, dtype = pick_device_dtype(None)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    report = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "dtype": str(dtype),
              "budget_ms": 1000 * BUDGET_S, "sets": {}}
    for path in files:
        data = json.loads(path.read_text())
        seconds = {"one pass per passage": [], "one batch": []}
        firsts = {"search": [], "one pass per passage": [], "one batch": []}
        gaps = []
        question_log_likelihoods(model, tokenizer, "warm up", [Hit(**h) for h in data["questions"][0]["hits"]],
                                 batched=True)
        for row in data["questions"]:
            hits, pages = [Hit(**h) for h in row["hits"]], row["pages"]
            firsts["search"].append(first_relevant_rank(pages, set(row["sources"])) == 1)
            scored = {}
            for way, batched in (("one pass per passage", False), ("one batch", True)):
                started = time.perf_counter()
                scored[way] = question_log_likelihoods(model, tokenizer, row["question"], hits, batched=batched)
                seconds[way].append(time.perf_counter() - started)
                reranked = [pages[i] for i in fused_order(scored[way])]
                firsts[way].append(first_relevant_rank(reranked, set(row["sources"])) == 1)
            gaps.append(max(abs(a - b) for a, b in zip(*scored.values())))
        n = len(data["questions"])
        report["sets"][data["set"]] = {
            "questions": n, "passages_per_question": len(data["questions"][0]["hits"]),
            **{f"{way} ms p50": round(1000 * statistics.median(s), 1) for way, s in seconds.items()},
            **{f"{way} ms p95": round(1000 * percentile(s, 0.95), 1) for way, s in seconds.items()},
            **{f"hit@1 {way}": round(sum(f) / n, 3) for way, f in firsts.items()},
            "largest score gap between the ways": round(max(gaps), 4)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="a workspace with the set's index (with --save)")
    parser.add_argument("--set", default="rust-book")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--hits", type=Path, action="append", default=[])
    parser.add_argument("--model", help="the model folder that reranks (with --hits)")
    args = parser.parse_args()
    if args.save:
        save(args.home, args.set, args.save)
    if args.hits:
        print(json.dumps(measure(args.hits, args.model), indent=1))


if __name__ == "__main__":
    main()
