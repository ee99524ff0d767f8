"""How long does an evaluation take, and does it generate at the speed of bare ``model.generate``?

On the default 135M model (or ``--model``) and an SFT adapter trained one step on it:

- the wall time of one evaluation job of the two models on ``--prompts`` held-out prompts (the
  test set: loss, perplexity, ROUGE-L of generated answers), run in this process as a worker runs it;
- the evaluation's generation path (chat template, left-padded batches, loop guards, decode) against a bare
  ``model.generate`` loop over the same pre-tokenised batches, in this process on the same model,
  prompts and greedy settings (goal >= 0.95x), and against one prompt at a time (what batching buys).

    python benchmarks/evaluation.py [--model DIR] [--prompts 50] [--max-new-tokens 64] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOPICS = ["photosynthesis", "the water cycle", "volcanoes", "honey bees", "solar panels", "the Roman empire",
          "black holes", "vaccines", "plate tectonics", "the printing press"]
ASKS = ["Explain {} in two sentences.", "What is the most important fact about {}?",
        "Give a short definition of {}.", "Why does {} matter?", "Name one common misconception about {}."]


def rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        topic, ask = TOPICS[i % len(TOPICS)], ASKS[(i // len(TOPICS)) % len(ASKS)]
        out.append({"prompt": ask.format(topic), "completion": f"A short, factual answer about {topic}."})
    return out


def write_jsonl(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in data))


def bare_generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> tuple[float, list[str]]:
    """``model.generate`` over pre-tokenised left-padded batches, with the evaluation's sampling
    (greedy and the default loop guards): the floor of what generation costs."""
    import torch

    from workbench.models.generation import Sampling, generation_kwargs, trim_loop

    tokenizer.padding_side = "left"
    batches = []
    for start in range(0, len(prompts), batch_size):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts[start:start + batch_size]]
        batches.append(tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False))
    answers = []
    started = time.perf_counter()
    with torch.no_grad():
        for enc in batches:
            width = enc["input_ids"].shape[1]
            out = model.generate(**enc, **generation_kwargs(model, tokenizer, Sampling(0.0, max_new_tokens), width))
            answers += [trim_loop(a.strip()) for a in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]
    return time.perf_counter() - started, answers


def generated_tokens(tokenizer, answers: list[str]) -> int:
    return sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="base model folder (default: provision SmolLM2-135M-Instruct)")
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    args = parser.parse_args()

    from common import temporary_workspace

    home, cli = temporary_workspace("wb-eval-bench-", args.model)
    if cli is None:
        return 1
    data = rows(args.prompts + 12)
    write_jsonl(home / "data" / "train.jsonl", data[:12])
    write_jsonl(home / "data" / "test.jsonl", data[12:])
    if cli(["train", "sft", "--max-steps", "1", "--batch-size", "2", "--json"]) != 0:
        return 1

    from jobs import control
    from jobs.runner import execute
    from storage import read_json
    from workbench.models.loading import load_for_inference, resolve
    from workbench.settings import Settings
    from workbench.models.generation import Sampling, generate_batch

    settings = Settings.from_env()
    config = {"models": ["base", "llama-lora-adapted"], "sets": ["test"], "max_prompts": args.prompts,
              "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}
    run = control.create(settings, "evaluate", config)
    started = time.perf_counter()
    status = execute(settings, run.id)
    wall = time.perf_counter() - started
    if status["status"] != "succeeded":
        print(run.read_log())
        return 1
    units = {m: (read_json(run.folder / "results" / f"{m}.test.json") or {}).get("seconds") for m in config["models"]}

    model, tokenizer, _ = load_for_inference(resolve("base", settings.workspace, settings.base_model))
    prompts = [r["prompt"] for r in data[12:12 + args.prompts]]
    bare_generate(model, tokenizer, prompts[:args.batch_size], 8, args.batch_size)  # warm-up
    bare_times, ours_times = [], []
    for _ in range(2):  # alternated, best of two: neither side pays the warm-up or a noisy neighbour
        took, bare_answers = bare_generate(model, tokenizer, prompts, args.max_new_tokens, args.batch_size)
        bare_times.append(took)
        began = time.perf_counter()
        ours = generate_batch(model, tokenizer, prompts, Sampling(0.0, args.max_new_tokens), args.batch_size)
        ours_times.append(time.perf_counter() - began)
    bare_s, ours_s = min(bare_times), min(ours_times)
    single_s, _ = bare_generate(model, tokenizer, prompts[:args.batch_size], args.max_new_tokens, 1)
    tokens = generated_tokens(tokenizer, bare_answers)
    single_tokens = generated_tokens(tokenizer, bare_answers[:args.batch_size])
    figures = {
        "machine": {"cpus": os.cpu_count(), "model": settings.base_model or "SmolLM2-135M-Instruct"},
        "evaluation": {"models": 2, "prompts": args.prompts, "max_new_tokens": args.max_new_tokens,
                       "batch_size": args.batch_size, "wall_s": round(wall, 1),
                       "unit_s": units},
        "generation": {"tokens": tokens, "bare_batched_tok_s": round(tokens / bare_s, 1),
                       "evaluation_tok_s": round(tokens / ours_s, 1),
                       "evaluation_vs_bare": round(bare_s / ours_s, 3),
                       "same_answers": ours == bare_answers,
                       "bare_one_at_a_time_tok_s": round(single_tokens / single_s, 1)},
    }
    print(json.dumps(figures, indent=2))
    (ROOT / "benchmarks" / "last_evaluation.json").write_text(json.dumps(figures, indent=2))
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
