"""How much a reward model learns from a few votes at the defaults: one pass over the data, ending
on its last step (the defaults before), against as many passes as the data needs, and against
that ending on the step that scored best on the votes held out from training (the defaults now;
the README's table was measured with a floor of 32 steps, where the reward model's is now 100).

The votes are those of ``benchmarks/informative.py``: a simulated annotator whose rule is known
votes, through the product's queue, on RAG questions in English and French answered two ways
(the fact, the fact with a wrong number, a refusal, an off-topic sentence); ``workbench
merge-feedback``, then ``workbench train reward``, which holds out a share of the pairs as it
does by default (a tenth by a hash of the prompt, never fewer than 5: 5 of 24, 9 of 48) and
chooses its step by them. The figure is the accuracy on ``--test`` other pairs that no run saw,
with a 95 % Wilson interval.

    python benchmarks/few_votes.py [--votes 24,48] [--seeds 0,1] [--test 120] [--arm PREFIX]
        [--option KEY=VALUE]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from informative import annotate, as_preference, make_pool, pool_workspace  # noqa: E402
from common import commands_env, wilson, workbench  # noqa: E402

ARMS = {  # name: the flags of `workbench train reward`
    "one pass, last step": ["--epochs", "1", "--no-keep-best"],
    "passes for the data, last step": ["--no-keep-best"],
    "passes for the data, best step (default)": [],
}


def accuracy_on(home: Path, model: str, test: list[dict]) -> float:
    """The reward model's accuracy on pairs it never saw: the chosen side scored higher."""
    from workbench.evaluate import units
    from workbench.models.loading import release_memory
    from workbench.settings import Settings
    from workbench.train.scoring import pair_metrics

    os.environ["WORKBENCH_HOME"] = str(home)
    loaded = units.load(Settings.from_env(), model)
    accuracy = pair_metrics(loaded.model, loaded.tokenizer, test, system=loaded.system)["accuracy"]
    del loaded
    release_memory()
    return accuracy


def one(root: Path, base_env: dict[str, str], votes: int, seed: int, test: list[dict], arms: dict[str, list[str]],
        options: list[str]) -> dict:
    pool = make_pool(votes, random.Random(seed))
    home = root / f"v{votes}-s{seed}"
    env = dict(base_env, WORKBENCH_HOME=str(home))
    pool_workspace(home, pool)
    annotate(home, {p["prompt"]: p for p in pool}, votes)
    workbench(env, "merge-feedback")
    out = {"votes": votes, "seed": seed}
    sets = [arg for option in options for arg in ("--set", option)]
    for n, (arm, flags) in enumerate(arms.items()):
        name = f"rm{n}"
        result = json.loads(workbench(env, "train", "reward", "--output-name", name, *flags, *sets, "--json"))["result"]
        right = round(accuracy_on(home, name, test) * len(test))
        low, high = wilson(right, len(test))
        out[arm] = {"accuracy": round(right / len(test), 3), "interval": [round(low, 3), round(high, 3)],
                    "steps": result.get("global_step"), "kept_step": result.get("kept_step"),
                    "seconds": result.get("train_seconds")}
        print(json.dumps({"votes": votes, "seed": seed, "arm": arm, **out[arm]}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", default="24,48")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--test", type=int, default=120)
    parser.add_argument("--model", help="base model folder (default: the provisioned default)")
    parser.add_argument("--arm", action="append", default=[], metavar="PREFIX",
                        help="only the arms whose name starts so (repeatable), e.g. 'one pass'")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option every run gets (repeatable), e.g. precision=fp32")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    arms = {arm: flags for arm, flags in ARMS.items() if not args.arm or arm.startswith(tuple(args.arm))}
    root = Path(tempfile.mkdtemp(prefix="wb-few-votes-"))
    base_env = commands_env(root, args.model)
    os.environ.update({k: v for k, v in base_env.items() if k.startswith(("WORKBENCH_", "HF_"))})
    test = [as_preference(t) for t in make_pool(args.test, random.Random(10_000))]
    runs = [one(root, base_env, int(v), int(s), test, arms, args.option) for v in args.votes.split(",") for s in args.seeds.split(",")]
    mean = {f"{v} votes": {arm: round(sum(r[arm]["accuracy"] for r in runs if r["votes"] == int(v))
                                     / len(args.seeds.split(",")), 3) for arm in arms}
            for v in args.votes.split(",")}
    report = {"test_pairs": args.test, "options": args.option, "runs": runs, "mean": mean}
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
