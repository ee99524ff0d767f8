"""Does the most informative pair next teach more than a random one? A simulated annotator whose
rule is known votes through the product's own loop, and two reward models trained on the same
number of votes are compared on held-out pairs.

The pairs: questions about facts in a short RAG context, English and French, each answered two
ways among four kinds — the fact asked about, the same fact with a wrong number, a refusal, an
off-topic sentence. The annotator's rule ranks them in that order (``RANK``), so easy pairs (the
fact against a refusal) and hard ones (the fact against a wrong number) mix.

Per seed, in a fresh workspace, all through the product:

1. the pool goes into a pair set in a random order; the annotator votes on the first ``--seed-votes``
   pairs (``claim_next_pair`` then ``cast_vote``, as the Annotate tab does); ``workbench
   merge-feedback``; ``workbench train reward`` gives the seed model;
2. *random*: the annotator votes on the next ``--votes`` pairs in the set's order (a random one);
3. *informative*: the same workspace as after step 1, the set switched to ``order informative``,
   ``workbench pairs score`` with the seed model, and the annotator votes on the next ``--votes``
   pairs the queue hands out (the seed model's closest margins first);
4. each arm: ``workbench merge-feedback`` and ``workbench train reward`` from the base at its
   defaults on its seed + new votes; accuracy on the held-out pairs
   (``data/dataset_rlhf_test.jsonl``), with a 95 % Wilson interval.

    python benchmarks/informative.py [--pool 240] [--held-out 120] [--seed-votes 16] [--votes 32] [--seeds 0,1]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import commands_env, wilson, workbench  # noqa: E402

SERVERS = ["atlas", "boreal", "cobalt", "delta", "ember", "fjord", "garnet", "helix", "iris", "jade", "krill",
           "lumen", "mistral", "nadir", "onyx", "pollux"]
FACTS = {
    "en": ("The backup of server {s} runs every {n} hours.", "How often does the backup of server {s} run?",
           "The backup of server {s} runs every {n} hours, according to the context.", "I do not know.",
           "Servers are computers that serve other computers."),
    "fr": ("La sauvegarde du serveur {s} a lieu toutes les {n} heures.",
           "À quelle fréquence la sauvegarde du serveur {s} a-t-elle lieu ?",
           "D'après le contexte, la sauvegarde du serveur {s} a lieu toutes les {n} heures.", "Je ne sais pas.",
           "Les serveurs sont des ordinateurs au service d'autres ordinateurs."),
}
KINDS = ("right", "wrong_number", "refusal", "off_topic")
RANK = {"right": 3, "wrong_number": 2, "refusal": 1, "off_topic": 0}  # the annotator's rule


def make_pool(count: int, rng: random.Random) -> list[dict]:
    """``count`` pairs: prompt (question + context), two answers and the kind of each."""
    pool = []
    for i in range(count):
        lang = "fr" if i % 2 else "en"
        fact, question, right, refusal, off_topic = FACTS[lang]
        servers = rng.sample(SERVERS, 3)
        hours = [rng.randint(2, 48) for _ in servers]
        context = " ".join(fact.format(s=s, n=n) for s, n in zip(servers, hours))
        asked, n = servers[0], hours[0]
        wrong = n + rng.choice([-1, 1]) * rng.randint(1, 6)
        answers = {"right": right.format(s=asked, n=n), "wrong_number": right.format(s=asked, n=max(1, wrong)),
                   "refusal": refusal, "off_topic": off_topic}
        first, second = rng.sample(KINDS, 2)
        prompt = f"{question.format(s=asked)} (#{i})\n\nContext:\n{context}"
        pool.append({"prompt": prompt, "a": answers[first], "b": answers[second], "kind_a": first, "kind_b": second})
    return pool


def as_preference(pair_record: dict) -> dict:
    """A pool pair as the rule ranks it: prompt, chosen, rejected."""
    a_wins = RANK[pair_record["kind_a"]] > RANK[pair_record["kind_b"]]
    return {"prompt": pair_record["prompt"], "chosen": pair_record["a"] if a_wins else pair_record["b"],
            "rejected": pair_record["b"] if a_wins else pair_record["a"]}


def pool_workspace(home: Path, pool: list[dict]):
    """A fresh workspace whose pair set ``pool`` holds the pool's pairs, answered."""
    from storage import Workspace
    from workbench.feedback.pairs import Side, make_pair, pair_store
    from workbench.feedback.sets import save_set

    shutil.rmtree(home, ignore_errors=True)
    workspace = Workspace(home).ensure()
    save_set(workspace, "pool", 1)
    pair_store(workspace).add([make_pair(p["prompt"], "typed", Side("writer-a", 0.0, answer=p["a"]),
                                         Side("writer-b", 0.0, answer=p["b"]), set_name="pool") for p in pool])
    return workspace


def preferred(pair_record: dict, shown_a: str) -> str:
    """The annotator's vote as shown (A = left): the side whose kind ranks higher."""
    kinds = {pair_record["a"]: pair_record["kind_a"], pair_record["b"]: pair_record["kind_b"]}
    other = pair_record["b"] if shown_a == pair_record["a"] else pair_record["a"]
    return "a" if RANK[kinds[shown_a]] > RANK[kinds[other]] else "b"


def annotate(home: Path, by_prompt: dict[str, dict], count: int) -> int:
    """The simulated annotator takes ``count`` pairs from the queue, as the Annotate tab hands them out."""
    from storage import Workspace
    from workbench.feedback.annotation import cast_vote
    from workbench.feedback.distribution import claim_next_pair

    workspace = Workspace(home)
    done = 0
    while done < count:
        pair = claim_next_pair(workspace, "simulated")
        if pair is None:
            break
        left, _ = pair.shown()
        cast_vote(workspace, pair, "simulated", preferred(by_prompt[pair.prompt], left.answer))
        done += 1
    return done


def train_and_measure(env: dict[str, str], name: str, held_out: int) -> dict:
    workbench(env, "merge-feedback")
    out = json.loads(workbench(env, "train", "reward", "--output-name", name, "--overwrite", "--json"))
    result = out.get("result") or {}
    correct = round(result.get("eval_accuracy", 0.0) * held_out)
    low, high = wilson(correct, held_out)
    return {"accuracy": round(result.get("eval_accuracy", 0.0), 4), "interval": [round(low, 3), round(high, 3)],
            "steps": result.get("global_step"), "seconds": result.get("train_seconds")}


def one_seed(root: Path, base_env: dict[str, str], seed: int, args) -> dict:
    from storage import Workspace
    from workbench.feedback.sets import save_set

    rng = random.Random(seed)
    pool, test = make_pool(args.pool, rng), make_pool(args.held_out, random.Random(10_000 + seed))
    by_prompt = {p["prompt"]: p for p in pool}
    home = root / f"seed{seed}-random"
    env = dict(base_env, WORKBENCH_HOME=str(home))
    workspace = pool_workspace(home, pool)
    (workspace.data / "dataset_rlhf_test.jsonl").write_text(
        "".join(json.dumps(as_preference(t), ensure_ascii=False) + "\n" for t in test))
    annotate(home, by_prompt, args.seed_votes)
    seed_model = train_and_measure(env, "rm-seed", args.held_out)
    informative_home = root / f"seed{seed}-informative"
    shutil.rmtree(informative_home, ignore_errors=True)
    shutil.copytree(home, informative_home)
    informative_env = dict(base_env, WORKBENCH_HOME=str(informative_home))

    annotate(home, by_prompt, args.votes)
    random_arm = train_and_measure(env, "rm-random", args.held_out)

    save_set(Workspace(informative_home), "pool", order="informative")
    workbench(informative_env, "pairs", "score", "--set", "pool", "--reward-model", "rm-seed")
    annotate(informative_home, by_prompt, args.votes)
    informative_arm = train_and_measure(informative_env, "rm-informative", args.held_out)
    kinds = {}
    for label, folder in (("random", home), ("informative", informative_home)):
        from storage import read_jsonl

        voted = [by_prompt[v["prompt"]] for v in read_jsonl(folder / "data" / "feedback.jsonl")][args.seed_votes:]
        kinds[label] = sum({p["kind_a"], p["kind_b"]} == {"right", "wrong_number"} for p in voted)
    return {"seed": seed, "seed_model": seed_model, "random": random_arm, "informative": informative_arm,
            "hard_pairs_voted": kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=240)
    parser.add_argument("--held-out", type=int, default=120)
    parser.add_argument("--seed-votes", type=int, default=16)
    parser.add_argument("--votes", type=int, default=32)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--model", help="base model folder (default: the provisioned default)")
    parser.add_argument("--keep", type=Path, help="keep the workspaces here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="wb-informative-"))
    root.mkdir(parents=True, exist_ok=True)
    base_env = commands_env(root, args.model)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        runs.append(one_seed(root, base_env, seed, args))
        print(json.dumps(runs[-1]), flush=True)
    report = {"pool": args.pool, "held_out": args.held_out, "seed_votes": args.seed_votes, "votes": args.votes,
              "runs": runs,
              "mean": {arm: round(sum(r[arm]["accuracy"] for r in runs) / len(runs), 4)
                       for arm in ("seed_model", "random", "informative")}}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
