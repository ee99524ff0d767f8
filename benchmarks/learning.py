"""Do votes teach at the defaults? A team's loop on a real documentation set, through the commands
a user runs, with simulated annotators whose rules real teams have; the reward model's held-out
accuracy at 25, 50, 100 and 200 votes.

1. ``workbench ingest`` the set's pages (``fetch_docs.py``, the retrieval benchmark's sets);
2. prompts: the set's user questions (``data/retrieval_<set>.tsv``) and one question per section
   of the index ("What does the documentation say about <section>?", in the set's language);
   the pages are split by a hash of their name, and a question goes to the held-out side when its
   page does, so the held-out questions are about pages no training prompt was asked about;
3. ``workbench pairs create --rag`` answers each prompt twice (two sampled sides, the defaults);
4. each rule votes (a few lines each, below): ``faithful`` prefers the answer whose words are in
   the retrieved context, ``concise`` the shorter answer that still says something,
   ``language`` the answer in the question's language; ties are skipped, as an annotator skips;
   ``--noise`` flips that share of the training votes;
5. per rule, vote count and seed: ``workbench feedback import`` of that many training votes (drawn
   by the seed), ``workbench merge-feedback``, the held-out pairs judged by the rule itself in
   ``data/dataset_rlhf_test.jsonl``, ``workbench train reward`` at its defaults; its held-out
   accuracy with a 95 % Wilson interval.

    python benchmarks/learning.py [--set rust-book] [--votes 25,50,100,200] [--rules faithful,concise,language]
                                  [--seeds 0,1,2] [--noise 0.0] [-k 2] [--max-new-tokens 64] [--keep DIR]

On a CPU every reward model at ~600-token rows takes tens of seconds a step: the whole table is a
run for a GPU machine; ``--votes 25 --rules concise --seeds 0`` checks the loop in minutes.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import wilson, workbench  # noqa: E402
from fetch_docs import fetch  # noqa: E402

HELD_OUT_PAGES = 0.3
SECTION_QUESTION = {"fr": "Que dit la documentation sur « {} » ?", "en": "What does the documentation say about {}?"}


# the simulated annotators ---------------------------------------------------------------------
def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[^\W\d_]{4,}", text.lower())]


def faithful(question: str, context: str, answer: str) -> float:
    """Share of the answer's words found in the retrieved context."""
    words, known = _words(answer), set(_words(context))
    return sum(w in known for w in words) / len(words) if words else 0.0


def concise(question: str, context: str, answer: str) -> float:
    """Shorter is better, once the answer says something (three words or more)."""
    n = len(answer.split())
    return -n if n >= 3 else -10_000


def language(question: str, context: str, answer: str) -> float:
    """The answer in the question's language wins; between two that are, the more faithful."""
    from workbench.language import question_language

    asked, said = question_language(question), question_language(answer[:500])
    return (asked is not None and said == asked) + 0.01 * faithful(question, context, answer)


RULES = {"faithful": faithful, "concise": concise, "language": language}


def judge(rule, prompt: str, a: str, b: str) -> str | None:
    """"a", "b", or None on a tie (skipped)."""
    from workbench.chat.prompt import split_prompt

    question, context = split_prompt(prompt)
    sa, sb = rule(question, context, a), rule(question, context, b)
    return None if sa == sb else ("a" if sa > sb else "b")


# the loop, through the CLI ------------------------------------------------------------------
def held_out_page(page: str) -> bool:
    return int(hashlib.sha256(page.encode()).hexdigest()[:8], 16) / 2**32 < HELD_OUT_PAGES


def prompts_of(set_name: str, home: Path) -> list[dict]:
    """The set's questions, then one per indexed section, each with its page and side."""
    out = []
    with open(ROOT / "benchmarks" / "data" / f"retrieval_{set_name}.tsv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            page = row["sources"].split("|")[0].strip()
            out.append({"prompt": row["question"].strip(), "page": page})
    meta = json.loads((home / "data" / "metadata.json").read_text())
    lang = "fr" if set_name.endswith("-fr") else "en"
    seen = set()
    for chunk in meta["chunks"]:
        section = (chunk.get("section") or "").split(" > ")[-1].strip()
        if 4 <= len(section) <= 80 and section not in seen:
            seen.add(section)
            out.append({"prompt": SECTION_QUESTION[lang].format(section), "page": chunk["source"]})
    for row in out:
        row["held_out"] = held_out_page(row["page"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="rust-book")
    parser.add_argument("--votes", default="25,50,100,200")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--held-out", type=int, default=40, help="held-out pairs (at most)")
    parser.add_argument("-k", type=int, default=2, help="chunks of context per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--keep", type=Path, help="keep the workspaces here")
    parser.add_argument("--base-model", default=os.environ.get("WORKBENCH_BASE_MODEL", ""))
    args = parser.parse_args()
    votes = sorted(int(v) for v in args.votes.split(","))
    rules = [r.strip() for r in args.rules.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]

    root = args.keep or Path(tempfile.mkdtemp(prefix="learning-"))
    home = root / "pairs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(WORKBENCH_HOME=str(home), HF_HUB_OFFLINE="1", WORKBENCH_AUTO_PULL="1")
    if args.base_model:
        env["WORKBENCH_BASE_MODEL"] = args.base_model
    if not (home / "data" / "metadata.json").exists():
        workbench(env, "ingest", str(fetch(args.set)))
    prompts = prompts_of(args.set, home)
    rng = random.Random(0)
    train = [p for p in prompts if not p["held_out"]]
    held = [p for p in prompts if p["held_out"]]
    rng.shuffle(train)
    rng.shuffle(held)
    wanted = train[:int(max(votes) * 1.3)] + held[:int(args.held_out * 1.3)]  # ties are skipped
    if not (home / "data" / "pairs.jsonl").exists():
        (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p["prompt"]}) + "\n" for p in wanted))
        workbench(env, "pairs", "create", str(root / "prompts.jsonl"), "--rag", "-k", str(args.k),
                  "--max-new-tokens", str(args.max_new_tokens))
    pairs = json.loads(workbench(env, "pairs", "list", "--json"))
    side = {p["prompt"]: p["held_out"] for p in wanted}
    print(f"{args.set}: {len(prompts)} prompts ({len(held)} on held-out pages); {len(pairs)} pairs answered", flush=True)

    table = []
    for rule_name in rules:
        rule = RULES[rule_name]
        voted = {True: [], False: []}
        for pair in pairs:
            question = pair["prompt"].split("\n\nContext:\n")[0]
            a, b = pair["a"]["answer"], pair["b"]["answer"]
            if question not in side or not a or not b:
                continue
            choice = judge(rule, pair["prompt"], a, b)
            if choice:
                chosen, rejected = (a, b) if choice == "a" else (b, a)
                voted[side[question]].append({"prompt": pair["prompt"], "chosen": chosen, "rejected": rejected,
                                              "annotator": rule_name})
        test = voted[True][:args.held_out]
        for n in votes:
            if n > len(voted[False]):
                print(f"  {rule_name}: {len(voted[False])} training votes, fewer than {n}: skipped", flush=True)
                continue
            for seed in seeds:
                result = one_run(root, env, rule_name, voted[False], test, n, seed, args.noise)
                table.append(result)
                print(f"  {rule_name:9} {n:4} votes seed {seed}: held-out accuracy {result['accuracy']:.2f} "
                      f"[{result['low']:.2f}, {result['high']:.2f}] on {result['held_out']} pairs "
                      f"(before training {result['before']:.2f}), {result['steps']} steps", flush=True)
    print(json.dumps({"set": args.set, "noise": args.noise, "runs": table}))


def one_run(root: Path, env: dict[str, str], rule: str, train: list[dict], test: list[dict], n: int, seed: int,
            noise: float) -> dict:
    rng = random.Random(seed)
    chosen = rng.sample(train, n)
    votes = [dict(v, chosen=v["rejected"], rejected=v["chosen"]) if rng.random() < noise else v for v in chosen]
    home = root / f"{rule}-{n}-{seed}"
    shutil.rmtree(home, ignore_errors=True)
    (home / "data").mkdir(parents=True)
    run_env = dict(env, WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0")
    run_env.setdefault("WORKBENCH_BASE_MODEL", str(root / "pairs" / "models" / "base"))
    (home / "votes.jsonl").write_text("".join(json.dumps(v) + "\n" for v in votes))
    workbench(run_env, "feedback", "import", str(home / "votes.jsonl"))
    workbench(run_env, "merge-feedback")
    (home / "data" / "dataset_rlhf_test.jsonl").write_text(
        "".join(json.dumps({k: t[k] for k in ("prompt", "chosen", "rejected")}) + "\n" for t in test))
    out = json.loads(workbench(run_env, "train", "reward", "--json"))
    result = out.get("result") or {}
    correct = round(result.get("eval_accuracy", 0.0) * len(test))
    low, high = wilson(correct, len(test))
    return {"rule": rule, "votes": n, "seed": seed, "accuracy": result.get("eval_accuracy", 0.0), "low": low,
            "high": high, "held_out": len(test), "before": result.get("before_accuracy", 0.0),
            "steps": result.get("global_step"), "seconds": result.get("train_seconds")}


if __name__ == "__main__":
    main()
