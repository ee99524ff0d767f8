"""How long a team's loop takes at the defaults on this machine: the reward model, DPO and the
evaluation on ``--votes`` votes whose prompts are RAG prompts of about ``--prompt-tokens`` tokens.

The rows are real text of a documentation set (``fetch_docs.py``; Rust's book by default): each
prompt is a question on a page with passages of that page as its context (``build_prompt``), cut
to ``--prompt-tokens`` tokens; chosen and rejected are two other passages of about 50 words (a
step's time follows the rows' lengths, not what the answers say). Each method runs ``--steps``
optimizer steps at its defaults otherwise (``workbench train METHOD --max-steps``, its held-out
split and evaluations included), and its run at the defaults is estimated as what the short run
spent outside its steps plus its seconds per step times the defaults' step count for these rows
(``train.config.optimizer_steps``); ``--steps 0`` runs them whole and reports what they took.
The evaluation (``workbench eval --models base,llama-dpo --sets preferences``, judged by the
reward model) runs whole. Prints each part and the total. ``--against KEY=VALUE`` (repeatable)
runs both trainings a second time, in a workspace of their own, with those options too, and
prints each method's seconds a step as a ratio of the first arm's, measured in the same process.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/loop_time.py [--votes 100] [--prompt-tokens 800]
        [--steps 2 | --steps 0] [--set rust-book] [--model DIR] [--option KEY=VALUE]
        [--against KEY=VALUE] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import commands_env, emit, workbench  # noqa: E402
from fetch_docs import fetch  # noqa: E402
from retrieval_baselines import page_files, page_words  # noqa: E402


def rows_of(set_name: str, votes: int, prompt_tokens: int, tokenizer, seed: int = 0) -> list[dict]:
    """``votes`` preference rows from the set's pages: a question and passages of one page as the
    context, cut to ``prompt_tokens`` tokens; two other passages of the page as the answers."""
    from workbench.chat.prompt import build_prompt

    rng = random.Random(seed)
    pages = [words for words in (page_words(p) for p in page_files(fetch(set_name))) if len(words) > 900]
    rows = []
    while len(rows) < votes:
        words = rng.choice(pages)
        start = rng.randrange(0, len(words) - 900)
        question = f"What does the documentation say about {' '.join(words[start:start + 6])}?"
        context = " ".join(words[start + 200:start + 900])
        ids = tokenizer(context, add_special_tokens=False)["input_ids"][:prompt_tokens]
        rows.append({"prompt": build_prompt(question, [tokenizer.decode(ids)]),
                     "chosen": " ".join(words[start:start + 50]), "rejected": " ".join(words[start + 100:start + 150]),
                     "annotator_comment": "", "timestamp": "2026-01-01T00:00:00Z"})
    return rows


def timed_run(env: dict[str, str], home: Path, method: str, steps: int, default_steps: int,
              options: list[str]) -> dict:
    """``workbench train METHOD --max-steps STEPS`` timed, and its run at ``default_steps``
    estimated: what the short run spent outside its steps (loading, the held-out evaluations before
    and after, saving), plus a step's time for each default step, plus a held-out evaluation's time
    for each of the ``KEEP_BEST_EVALUATIONS`` a default run makes while it trains."""
    from storage import RunStore
    from workbench.train.job import KEEP_BEST_EVALUATIONS

    began = time.perf_counter()
    sets = [arg for option in options for arg in ("--set", option)]
    short = ["--max-steps", str(steps)] if steps else []
    status = json.loads(workbench(env, "train", method, *sets, *short, "--json"))
    wall = time.perf_counter() - began
    result = status.get("result") or {}
    record = RunStore(home / "runs").get(status["id"])
    metrics = record.metrics()
    evaluation_s = statistics.median(m["eval_runtime"] for m in metrics if "eval_runtime" in m)
    run_steps = steps or result["global_step"]
    every = math.ceil(run_steps / KEEP_BEST_EVALUATIONS)  # the run's evaluations while it trains
    step_s = (result["train_seconds"] - run_steps // every * evaluation_s) / result["global_step"]
    outside_s = wall - result["train_seconds"]
    fit = (record.status() or {}).get("memory_fit") or {}
    return {"wall_s": round(wall, 1), "steps": result["global_step"], "step_s": round(step_s, 1),
            "evaluation_s": round(evaluation_s, 1), "outside_steps_s": round(outside_s, 1),
            "micro_batch": fit.get("batch_size", 4), "estimated_gib": fit.get("gib"),
            "peak_rss_gib": round(result.get("peak_rss_mib", 0) / 1024, 2),
            "default_steps": default_steps,
            "estimated_default_s": round(wall if not steps else
                                         outside_s + default_steps * step_s + KEEP_BEST_EVALUATIONS * evaluation_s, 1),
            **({"held_out": {k: result.get(k) for k in ("eval_accuracy", "eval_logp_margin", "kept_step")}}
               if not steps else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="rust-book")
    parser.add_argument("--votes", type=int, default=100)
    parser.add_argument("--prompt-tokens", type=int, default=800)
    parser.add_argument("--steps", type=int, default=2,
                        help="optimizer steps each method runs (0: the whole default runs, measured, not estimated)")
    parser.add_argument("--model", help="base model folder (default: the default model, provisioned offline)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option both trainings get (repeatable), e.g. precision=bf16")
    parser.add_argument("--against", action="append", default=[], metavar="KEY=VALUE",
                        help="run both trainings again with this option too (repeatable) and compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from workbench.train import dpo, reward
    from workbench.train.config import optimizer_steps
    from workbench.train.data import held_out_split

    root = Path(tempfile.mkdtemp(prefix="wb-loop-time-"))
    env = commands_env(root, args.model)
    tokenizer = AutoTokenizer.from_pretrained(env["WORKBENCH_BASE_MODEL"])
    rows = rows_of(args.set, args.votes, args.prompt_tokens, tokenizer)
    prompt_tokens = sorted(len(tokenizer(r["prompt"])["input_ids"]) for r in rows)

    report: dict = {"set": args.set, "votes": args.votes, "options": args.option,
                    "prompt_tokens_median": prompt_tokens[len(rows) // 2]}
    arms = {"workspace": args.option, **({"against": args.option + args.against} if args.against else {})}
    totals = {}
    for name, options in arms.items():  # the compared arm last: its workspace is the one evaluated
        home = root / name
        env["WORKBENCH_HOME"] = str(home)
        (home / "data").mkdir(parents=True)
        (home / "data" / "dataset_rlhf.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        total = 0.0
        for method, config in (("reward", reward.Config()), ("dpo", dpo.Config())):
            trained, _ = held_out_split(rows, config.eval_fraction, config.seed)  # what the run holds out
            run = timed_run(env, home, method, args.steps, optimizer_steps(config, len(trained)), options)
            report.setdefault(name, {})[method] = run
            total += run["estimated_default_s"]
            print(f"{' '.join(options) or 'defaults'}: {method}: {run}", flush=True)
        totals[name] = total
    if args.against:
        report["against"] = {**report["against"], "options": args.against, **{
            f"{method}_step_ratio": round(report["against"][method]["step_s"] / report["workspace"][method]["step_s"], 2)
            for method in ("reward", "dpo")}}
    report.update(report.pop("workspace"))  # the first arm's figures where they always were
    began = time.perf_counter()
    workbench(env, "eval", "--models", "base,llama-dpo", "--sets", "preferences", "--json")
    report["evaluation_s"] = round(time.perf_counter() - began, 1)
    for name, total in totals.items():
        (report if name == "workspace" else report[name])["estimated_loop_minutes"] = \
            round((total + report["evaluation_s"]) / 60, 1)
    emit(report, args.json)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
