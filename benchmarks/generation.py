"""Generation at the hardware's speed: pair creation through the batched job against the per-pair
loop it replaces, single-stream Chat against bare ``generate`` and the memory-bandwidth bound,
answers that loop before and after the default guards, and the time to open the next pair.

On the default 135M model (or ``--model``), in one process:

- pairs: ``--pairs`` typed prompts, side A greedy and side B at temperature 0.8, answered one
  stream after the other (the old per-pair path: ``stream_generate`` per side) and then by the
  ``pairs.generate`` job (batches of ``--batch-size``); tokens/s of each (goal: job >= 4x);
- chat: one stream at batch 1 through ``answer_stream`` (a RAG question over the PostgreSQL
  tutorial, five chunks) against bare ``model.generate`` on the main thread with the same settings
  and with transformers' defaults (a dynamic cache), and on a second thread while this one keeps
  its OpenMP pool and after it gave it back (``workbench.runtime``); each with the device's
  dtype (full) and with int8 weights; decoding tokens/s after the first token, against the bound
  of reading every byte one token needs once (``decode_bytes``) at the measured read bandwidth (a
  torch sum over 512 MiB on every thread, best of 3), and the perplexity of 1,024 tokens of the
  README with each; chat and the two bare calls alternate over ``--repeats`` rounds, and each
  figure is their median with its range (chat's ratio to the defaults is taken within a round);
- loops: 40 questions over the PostgreSQL tutorial (fetched from Debian by ``fetch_docs.py``),
  RAG prompts, greedy, share of answers that end in a loop without guards and with the defaults
  (repetition penalty and the loop stop; answers the stop cut are counted apart);
- next pair: p95 of what the Annotate tab does to open the next pair (read the pairs and votes,
  pick the next ready one, count progress) with 500 pairs and 300 votes on disk.

    python benchmarks/generation.py [--model DIR] [--pairs 16] [--batch-size 16] [--loop-tokens 160]
                                    [--chat-tokens 128] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
README = ROOT / "README.md"  # 1,024 tokens of it: the perplexity each weight format gives
QUESTIONS = ROOT / "benchmarks" / "data" / "postgres_tutorial_questions.txt"


def read_bandwidth_gbs() -> float:
    """Read bandwidth with every thread torch uses: a sum over 512 MiB, best of 3."""
    import torch

    data = torch.ones(128 * 1024 * 1024, dtype=torch.float32)
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - began)
    return data.numel() * 4 / best / 1e9


def decode_rate(model, enc, kwargs, extra) -> tuple[float, float]:
    """(tokens/s after the first token, seconds to the first token) of ``model.generate`` with
    ``kwargs`` and ``extra()`` (made again for each call: a cache is used once)."""
    import torch

    with torch.inference_mode():
        began = time.perf_counter()
        model.generate(**enc, **{**kwargs, **extra(), "max_new_tokens": 1})
        first = time.perf_counter() - began
        began = time.perf_counter()
        out = model.generate(**enc, **kwargs, **extra())
    return (out.shape[-1] - enc["input_ids"].shape[-1] - 1) / (time.perf_counter() - began - first), first


def spread(values: list[float], digits: int = 1) -> dict[str, float]:
    """The median of ``values`` and their range, the run-to-run spread a figure is quoted with."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def on_new_thread(fn, *args):
    """``fn(*args)`` run on a thread of its own, as a web request's generation is."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(fn, *args).result()


def count_tokens(tokenizer, texts) -> int:
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="base model folder (default: provision SmolLM2-135M-Instruct)")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pair-tokens", type=int, default=64)
    parser.add_argument("--loop-tokens", type=int, default=160)
    parser.add_argument("--chat-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the chat comparison (median and range)")
    args = parser.parse_args()

    from common import summary_ms, temporary_workspace

    home, cli = temporary_workspace("wb-gen-bench-", args.model)
    if cli is None:
        return 1
    from benchmarks.fetch_docs import fetch
    from jobs import control
    from jobs.runner import execute
    from workbench.chat.model_cache import CACHE
    from workbench.chat.prompt import build_prompt
    from workbench.chat.session import ChatRequest, answer_stream, fit_context, stream_generate
    from workbench.feedback.annotation import create_pairs, pair_store
    from workbench.feedback.distribution import claim_next_pair
    from workbench.feedback.stats import progress
    from workbench.feedback.pairs import Side, make_pair
    from workbench.feedback.votes import Vote, record_votes
    from workbench.index.search import retriever_for
    from workbench.models.generation import Sampling, ends_in_loop, generate_batch, generation_kwargs
    from workbench.settings import Settings

    settings = Settings.from_env()
    figures: dict = {"machine": {"cpus": os.cpu_count(), "model": settings.base_model or "SmolLM2-135M-Instruct"}}
    loaded = CACHE.get("base", settings.workspace, settings.base_model)
    model, tokenizer = loaded.model, loaded.tokenizer
    figures["machine"]["dtype"] = str(next(model.parameters()).dtype)

    # pairs: the per-pair loop against the job ------------------------------------------------
    questions = [q for q in QUESTIONS.read_text().splitlines() if q.strip()]
    prompts = questions[:args.pairs]
    a, b = Side("base", 0.0, args.pair_tokens), Side("base", 0.8, args.pair_tokens)
    loop_answers, began = [], time.perf_counter()
    for prompt in prompts:
        for side in (a, b):
            loop_answers.append("".join(piece for piece, _ in stream_generate(loaded, prompt, side.sampling())))
    loop_s = time.perf_counter() - began
    created = create_pairs(settings, prompts, "typed", a, b)
    run = control.create(settings, "pairs.generate", {"pair_ids": created["pair_ids"], "batch_size": args.batch_size})
    began = time.perf_counter()
    status = execute(settings, run.id)
    job_s = time.perf_counter() - began
    if status["status"] != "succeeded":
        print(run.read_log())
        return 1
    job_answers = [getattr(p, s).answer for p in pair_store(settings.workspace).all().values() for s in "ab"]
    loop_tps = count_tokens(tokenizer, loop_answers) / loop_s
    job_tps = count_tokens(tokenizer, job_answers) / job_s
    figures["pairs"] = {"pairs": len(prompts), "max_new_tokens": args.pair_tokens, "batch_size": args.batch_size,
                        "per_pair_loop_s": round(loop_s, 1), "per_pair_loop_tok_s": round(loop_tps, 1),
                        "job_s": round(job_s, 1), "job_tok_s": round(job_tps, 1),
                        "job_vs_loop": round(job_tps / loop_tps, 2)}

    # chat: one RAG stream against bare generate and the bandwidth bound, full and int8 weights ---
    import dataclasses

    import torch

    from workbench.chat.prompt import chat_messages
    from workbench.models.generation import one_stream_kwargs
    from workbench.models.int8_decode import decode_bytes, kernel_available
    from workbench.runtime import release_openmp_pool

    docs = fetch("postgres-tutorial")
    if cli(["ingest", str(docs), "--json"]) != 0:
        return 1
    request = ChatRequest(question="Explain what a transaction is and why it matters.", k=5,
                          max_new_tokens=args.chat_tokens)
    bandwidth = read_bandwidth_gbs()
    figures["chat"] = {"read_bandwidth_gb_s": round(bandwidth, 1), "max_new_tokens": args.chat_tokens}
    for weights in ("full", "int8") if kernel_available() else ("full",):
        chat_settings = dataclasses.replace(settings, decode_weights=weights)
        for turn in answer_stream(chat_settings, request):  # loads and warms up; not counted
            pass
        chat_model = CACHE.get("base", settings.workspace, settings.base_model, weights)
        enc = tokenizer.apply_chat_template(chat_messages(turn.prompt), add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        prompt_tokens = enc["input_ids"].shape[-1]
        kwargs = generation_kwargs(chat_model.model, tokenizer, request.sampling(), prompt_tokens)

        def same():  # what chat adds: a static cache on CPU, made for each call
            return one_stream_kwargs(chat_model.model, chat_model.device, prompt_tokens + request.max_new_tokens)

        # Rounds alternate chat, bare generate with chat's settings on this thread, and bare generate
        # with transformers' defaults (as a script would): a busy moment weighs on all three alike,
        # and each round's ratio is taken within the round.
        rounds = {"chat": [], "bare_same_settings": [], "bare_transformers_defaults": [], "ttft": [], "bare_ttft": []}
        for _ in range(args.repeats):
            for turn in answer_stream(chat_settings, request):
                pass
            decoding_s = max(turn.seconds - (turn.ttft_s or 0), 1e-9)
            rounds["chat"].append((turn.new_tokens - 1) / decoding_s if turn.new_tokens > 1 else 0.0)
            rounds["ttft"].append(turn.ttft_s or 0.0)
            rate, first = decode_rate(chat_model.model, enc, kwargs, same)
            rounds["bare_same_settings"].append(rate)
            rounds["bare_ttft"].append(first)
            rounds["bare_transformers_defaults"].append(decode_rate(chat_model.model, enc, kwargs, dict)[0])
        ratios = [c / max(d, 1e-9) for c, d in zip(rounds["chat"], rounds["bare_transformers_defaults"])]
        # What the web process did before each thread gave its OpenMP pool back: generating on a
        # second thread while this one keeps the pool its own work made, then after releasing it.
        pool_kept = on_new_thread(decode_rate, chat_model.model, enc, kwargs, same)
        release_openmp_pool()
        pool_released = on_new_thread(decode_rate, chat_model.model, enc, kwargs, same)
        text_ids = tokenizer(README.read_text(), return_tensors="pt")["input_ids"][:, :1024]
        with torch.inference_mode():
            perplexity = float(torch.exp(chat_model.model(input_ids=text_ids, labels=text_ids).loss))
        weight_bytes = decode_bytes(chat_model.model)
        bound = bandwidth * 1e9 / weight_bytes
        chat_tps = statistics.median(rounds["chat"])
        figures["chat"][weights] = {
            "weights": chat_model.weights, "perplexity_readme": round(perplexity, 2), "prompt_tokens": prompt_tokens,
            "rounds": args.repeats, **{f"{name}_tok_s": spread(values) for name, values in rounds.items()
                                       if not name.endswith("ttft")},
            "chat_ttft_s": spread(rounds["ttft"], 3), "bare_ttft_s": spread(rounds["bare_ttft"], 3),
            "chat_vs_transformers_defaults": spread(ratios, 2),
            "second_thread_while_this_one_keeps_its_pool_tok_s": round(pool_kept[0], 1),
            "second_thread_after_this_one_released_it_tok_s": round(pool_released[0], 1),
            "bytes_per_token_mb": round(weight_bytes / 1e6, 1), "bandwidth_bound_tok_s": round(bound, 1),
            "chat_of_bound": round(chat_tps / bound, 2)}
        CACHE.unload()
    if "int8" in figures["chat"]:
        full, int8 = figures["chat"]["full"], figures["chat"]["int8"]
        figures["chat"]["int8_vs_full"] = round(int8["chat_tok_s"]["median"] / max(full["chat_tok_s"]["median"], 1e-9), 2)
        figures["chat"]["int8_of_full_weights_bound"] = round(int8["chat_tok_s"]["median"] / full["bandwidth_bound_tok_s"], 2)

    # loops: 40 RAG questions over a real manual, without and with the guards ----------------------
    retriever = retriever_for(settings.workspace, settings.embedding_model)
    rag_prompts = []
    for q in questions:
        hits, _ = fit_context(loaded, q, retriever.search(q, 3), args.loop_tokens)
        rag_prompts.append(build_prompt(q, [h.text for h in hits]))
    unguarded = generate_batch(model, tokenizer, rag_prompts, Sampling(0.0, args.loop_tokens, 1.0, False), 8)
    guarded = generate_batch(model, tokenizer, rag_prompts, Sampling(0.0, args.loop_tokens), 8)
    figures["loops"] = {"questions": len(questions), "max_new_tokens": args.loop_tokens,
                        "looping_without_guards": sum(map(ends_in_loop, unguarded)),
                        "looping_with_defaults": sum(map(ends_in_loop, guarded)),
                        "cut_by_the_loop_stop": sum(a.endswith(" …") for a in guarded),
                        "examples_before": [a[-120:] for a in unguarded if ends_in_loop(a)][:3]}

    # opening the next pair ----------------------------------------------------------------------
    store = pair_store(settings.workspace)
    filler = [make_pair(f"filler question {i}", "typed", Side("base", 0.0, 8, answer=f"answer {i}"),
                        Side("base", 0.7, 8, answer=f"other answer {i}")) for i in range(500)]
    store.add(filler)
    record_votes(settings.workspace.feedback_file, [
        Vote(pair_id=p.pair_id, prompt=p.prompt, answer_a=p.a.answer, answer_b=p.b.answer, choice="a",
             annotator=f"annotator{i % 5}", model_a="base", model_b="base") for i, p in enumerate(filler[:300])])
    timings = []
    for i in range(100):
        began = time.perf_counter()
        claim_next_pair(settings.workspace, f"annotator{i % 5}")
        progress(settings.workspace, f"annotator{i % 5}")
        timings.append(time.perf_counter() - began)
    figures["next_pair"] = {"pairs": len(store.all()), "votes": 300,
                            **{k: v for k, v in summary_ms(timings).items() if k in ("p50_ms", "p95_ms")}}

    print(json.dumps(figures, indent=2))
    (ROOT / "benchmarks" / "last_generation.json").write_text(json.dumps(figures, indent=2))
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
