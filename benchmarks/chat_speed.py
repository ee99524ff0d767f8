"""Chat decoding as a ratio to the bare ``generate`` it wraps: the base model loaded by
``ModelCache`` (``--model``, default ``$WORKBENCH_BASE_MODEL`` or ``$WORKBENCH_HOME/models/base``),
a RAG prompt from ``build_prompt`` with the top hits of a synthetic corpus (``synthetic_corpus``),
greedy, ``max_new_tokens`` new tokens on both sides (``min_new_tokens`` is set to the same on the
shared model's generation_config so both sides always produce that many). Interleaved runs of
bare ``model.generate(**inputs, **generation_kwargs(...))``, the workbench's ``stream_generate``
iterated to the end, and a bare one-token generate (prefill + first token, the floor for time to
first token). Tokens/s is new tokens over the whole call. Goal: 0.95 of bare or better.

OMP_WAIT_POLICY=PASSIVE is set unless ``--omp-default`` (see ``search_speed.py``): the bare call
runs in the main thread and ``stream_generate`` in its own, and spin-waiting skews one of them.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/chat_speed.py [--model PATH] [--reps 5]
        [--max-new-tokens 64] [--json PATH]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "--omp-default" not in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import emit, timed  # noqa: E402
from synthetic_corpus import ingest, make_queries, say, write_corpus  # noqa: E402
from workbench.chat.model_cache import ModelCache  # noqa: E402
from workbench.chat.prompt import build_prompt, chat_messages  # noqa: E402
from workbench.chat.session import stream_generate  # noqa: E402
from workbench.index.search import Retriever  # noqa: E402
from workbench.models.generation import Sampling, generation_kwargs  # noqa: E402
from workbench.settings import Settings  # noqa: E402


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
        kwargs = {**generation_kwargs(model, tokenizer, Sampling(0.0, n, stop_loops=False), prompt_tokens),
                  **({"min_new_tokens": 1} if n != max_new else {})}
        seconds, out = timed(lambda: model.generate(**inputs, **kwargs))
        return seconds, int(out.shape[-1] - prompt_tokens), out

    def ours(n: int = max_new) -> tuple[float, int, float, str]:
        started, first, text, tokens = time.perf_counter(), None, "", 0
        for piece, count in stream_generate(loaded, prompt, Sampling(0.0, n, stop_loops=False)):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="chat model folder (default: the workspace base model)")
    parser.add_argument("--docs", type=int, default=40, help="documents of the corpus the prompt's context comes from")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--contexts", type=int, default=5, help="retrieved chunks in the prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--omp-default", action="store_true", help="keep libgomp's default spin-waiting")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = Settings.from_env()
    model = args.model or base.base_model or str(base.workspace.base_model)
    if not (Path(model) / "config.json").exists():
        raise SystemExit(f"no model at {model}: pass --model PATH (or run `workbench models pull`)")
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        settings = replace(base, home=Path(tmp) / "workspace")
        write_corpus(Path(tmp) / "corpus", args.docs, 900, args.seed)
        ingest(settings, Path(tmp) / "corpus", 200)
        prompt = chat_prompt(settings, make_queries(1, args.seed)[0], args.contexts)
        figures = bench_chat(settings, model, prompt, args.reps, args.max_new_tokens)
    emit(figures, args.json)


if __name__ == "__main__":
    main()
