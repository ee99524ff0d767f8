"""Do votes teach at the defaults? A team's loop on a real documentation set, through the commands
a user runs, with simulated annotators whose rules real teams have (``learning_rules.py``).

1. ``workbench ingest`` the set's pages (``fetch_docs.py``, the retrieval benchmark's sets);
2. prompts: the set's user questions (``data/retrieval_<set>.tsv``) and one question per section
   of the index ("What does the documentation say about <section>?", in the set's language, or
   in ``--ask``'s: a team asking in its own language over documents in another);
   the pages are split by a hash of their name, and a question goes to the held-out side when its
   page does, so the held-out questions are about pages no training prompt was asked about;
   ``workbench documents delete`` then takes a share of the pages (``MISSING_PAGES``, another
   hash) out of the workspace: questions about them are asked in the set's language and domain,
   and the documents do not answer them, as a team's documents do not answer everything;
3. ``workbench pairs create --rag`` answers each prompt twice, at its defaults (side a greedy, side
   b sampled at temperature 0.8; ``--temperature-a`` and ``--temperature-b`` change them, and
   the pairs a kept workspace holds at other temperatures are left out); how many of each rule's
   votes went to side a is printed: most go to the greedy side;
   a pair is ``covered`` when the retrieved chunks include the question's page; how the
   questions and answers split by language is printed (the ``language`` rule decides by language
   the pairs with one answer in another language than the question and one not);
4. each rule votes: ``faithful`` prefers the answer whose words are in the retrieved context,
   ``concise`` the shorter answer that still says something, ``language`` the answer in the
   question's language, ``abstains`` the answer that says the documents do not answer when the
   pair is not covered (and the one that answers when it is), ``from_page`` the answer whose words
   are in the page the question is about, whether the context holds it or not (an annotator who
   knows where the documentation answers); ties are skipped, as an annotator
   skips; ``--annotators N`` has N annotators vote on each training pair, ``--noise`` flips that
   share of each one's votes, and ``merge-feedback`` keeps the majority (an even split is dropped);
   with ``--write`` an annotator writes the answer its rule asks for when neither side gives it
   (``abstains``: "The documentation does not answer this question.", in the question's language,
   when the context lacks the question's page and neither answer says so), as the Annotate tab's
   written answer, which merge makes the chosen answer against both sides (a written answer is
   never flipped by ``--noise``; in the held-out files it stands against side a, the greedy one);
5. per rule, vote count, seed and setting (the defaults, and each value of ``--try`` alone):
   ``workbench feedback import`` of that many training pairs' votes (drawn by the seed),
   ``workbench merge-feedback``, the held-out pairs judged by the rule itself in
   ``data/dataset_rlhf_test.jsonl``, then ``workbench train reward`` (its held-out accuracy, 95 %
   Wilson interval), ``workbench train dpo``, or ``workbench train reward`` at its defaults (once
   for all the GRPO settings tried) and then ``workbench train grpo`` with that reward model
   (``--method grpo``); for DPO and GRPO the trained model and the base answer the held-out
   prompts as a pair set and the rule judges: win rate over the pairs it does not tie, and the
   rule's mean score of each, on how many held-out questions each says the documents do not
   answer, apart for those whose page the context lacks and those whose page it holds, and how
   many of each one's answers copy ten words in a row from the retrieved context (``quoted``);
   every rule judges the same answers too (``by_rule``: what else the votes moved), and
   ``--judge-again`` judges the answers of the runs kept under ``--keep`` by every rule, with no
   training (rules added since those runs);
6. with ``--try``, each rule is left out in turn: the setting with the best mean on the other rules
   is chosen, and its figure on the rule left out is printed beside the defaults'.

    python benchmarks/learning.py [--set rust-book] [--method reward|dpo|grpo] [--votes 25,50,100,200]
                                  [--rules faithful,concise,language,abstains,from_page] [--seeds 0,1,2]
                                  [--noise 0.0] [--annotators 1] [--write] [--ask fr]
                                  [--try learning_rate=5e-5,3e-4 --try lora_r=8,32] [--option KEY=VALUE] [--jobs N]
                                  [-k 2] [--max-new-tokens 64] [--temperature-a 0] [--temperature-b 0.8]
                                  [--keep DIR] [--out RESULTS.jsonl] [--pairs-only] [--tries-only] [--judge-again]

On a CPU a reward model at ~600-token rows takes seconds a step: the whole table is a run for a
GPU machine (``--jobs 12`` on one H200); ``--votes 25 --rules concise --seeds 0`` checks the loop
in minutes.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import wilson, workbench  # noqa: E402
from fetch_docs import fetch, set_language  # noqa: E402
from learning_report import leave_one_rule_out  # noqa: E402
from learning_rules import NOT_IN_DOCUMENTS, RULES, judge, score, written  # noqa: E402
from workbench.chat.prompt import split_prompt  # noqa: E402

HELD_OUT_PAGES = 0.3
MISSING_PAGES = 0.15
QUOTED = 10  # words in a row copied from the context: a shorter run is a name or a phrase any answer may share
SECTION_QUESTION = {"fr": "Que dit la documentation sur « {} » ?", "en": "What does the documentation say about {}?"}


# the loop, through the CLI ------------------------------------------------------------------
def _share(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32


def held_out_page(page: str) -> bool:
    return _share(page) < HELD_OUT_PAGES


def missing_page(page: str) -> bool:
    """Pages taken out of the workspace once the prompts are drawn (independent of the split)."""
    return _share("missing\x00" + page) < MISSING_PAGES


def prompts_of(set_name: str, home: Path, ask: str | None = None) -> list[dict]:
    """The set's questions, then one per indexed section asked in ``ask`` (the set's language
    when None), each with its page and side."""
    out = []
    with open(ROOT / "benchmarks" / "data" / f"retrieval_{set_name}.tsv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            pages = [source.strip() for source in row["sources"].split("|") if source.strip()]
            out.append({"prompt": row["question"].strip(), "page": pages[0], "pages": pages})
    meta = json.loads((home / "data" / "metadata.json").read_text())
    lang = ask or set_language(set_name)
    seen = set()
    for chunk in meta["chunks"]:
        section = (chunk.get("section") or "").split(" > ")[-1].strip()
        if 4 <= len(section) <= 80 and section not in seen:
            seen.add(section)
            out.append({"prompt": SECTION_QUESTION[lang].format(section), "page": chunk["source"]})
    for row in out:
        row["held_out"] = held_out_page(row["page"])
    return out


def pages_of(prompt: dict) -> list[str]:
    return prompt.get("pages") or [prompt["page"]]


def take_out_missing_pages(env: dict[str, str], prompts: list[dict], names_file: Path) -> None:
    """``workbench documents delete`` the pages ``missing_page`` picks, once; the documents' names
    by id are kept in ``names_file`` first, for pairs answered before."""
    listed = {d["id"]: d["name"] for d in json.loads(workbench(env, "documents", "list", "--json"))}
    if not names_file.exists():
        names_file.write_text(json.dumps(listed, ensure_ascii=False))
    gone = sorted({page for p in prompts for page in pages_of(p) if missing_page(page) and page in listed.values()})
    if gone:
        workbench(env, "documents", "delete", *gone)


def covered_of(pairs: list[dict], pages: dict[str, list[str]], names: dict[str, str]) -> dict[str, bool]:
    """Prompt -> whether its retrieved chunks include one of its question's pages (``names``: the
    documents' names by id)."""
    return {p["prompt"]: bool(set(pages.get(split_prompt(p["prompt"])[0], ())) &
                              {names.get(c.rsplit(":", 1)[0]) for c in p.get("chunk_ids") or []}) for p in pairs}


def page_texts(set_name: str, prompts: list[dict]) -> dict[str, str]:
    """Question -> the text of the pages it is about, read from the set's files (the pages taken
    out of the workspace too): what ``from_page`` judges by."""
    from workbench.corpus.parse import ParseError, parse_file

    folder, texts = fetch(set_name), {}
    for page in sorted({page for p in prompts for page in pages_of(p)}):
        try:
            texts[page] = "\n".join(block.text for block in parse_file(folder / page))
        except (ParseError, OSError):  # a page the parser refuses judges as empty
            texts[page] = ""
    return {p["prompt"]: "\n".join(texts[page] for page in pages_of(p)) for p in prompts}


def votes_of(rule_name: str, pairs: list[dict], side: dict[str, bool], covered: dict[str, bool],
             pages: dict[str, str], write: bool = False) -> dict[bool, list[dict]]:
    """The rule's votes on the answered pairs, by side (True: held out); ties are skipped. With
    ``write`` the annotator writes the answer its rule asks for when neither side gives it
    (``learning_rules.written``): chosen against both answers, as merge makes of a written answer.
    ``pages``: question -> the text of its pages (``page_texts``)."""
    voted: dict[bool, list[dict]] = {True: [], False: []}
    for pair in pairs:
        question = split_prompt(pair["prompt"])[0]
        a, b = pair["a"]["answer"], pair["b"]["answer"]
        if question not in side or not a or not b:
            continue
        page = pages.get(question, "")
        text = written(rule_name, pair["prompt"], a, b, covered[pair["prompt"]]) if write else None
        if text:
            voted[side[question]].append({"pair_id": pair["pair_id"], "prompt": pair["prompt"], "chosen": text,
                                          "rejected": a, "answers": (a, b), "covered": covered[pair["prompt"]],
                                          "page": page, "side": "written"})
            continue
        choice = judge(RULES[rule_name], pair["prompt"], a, b, covered[pair["prompt"]], page)
        if choice:
            chosen, rejected = (a, b) if choice == "a" else (b, a)
            voted[side[question]].append({"pair_id": pair["pair_id"], "prompt": pair["prompt"], "chosen": chosen,
                                          "rejected": rejected, "covered": covered[pair["prompt"]], "page": page,
                                          "side": choice})
    return voted


def answer_languages(pairs: list[dict]) -> str:
    """How the pairs' questions and answers split by language: the pairs the ``language`` rule
    decides by language are those with one answer in another language than the question and
    one not (in its language, or not clear)."""
    from collections import Counter

    from workbench.language import question_language

    asked, other, decided = Counter(), 0, 0
    for pair in pairs:
        question = question_language(split_prompt(pair["prompt"])[0])
        said = [question_language(pair[s]["answer"][:500]) if pair[s]["answer"] else None for s in ("a", "b")]
        wrong = [bool(question) and lang not in (None, question) for lang in said]
        asked[question or "unclear"] += 1
        other += sum(wrong)
        decided += wrong[0] != wrong[1]
    return (f"questions by language: {dict(asked.most_common())}; {other} answers in another language than "
            f"their question; {decided} pairs with one answer in another language and one not")


def settings_of(tries: list[str]) -> list[dict[str, str]]:
    """The defaults, then each value of each ``KEY=V1,V2`` option alone, the rest at the defaults
    (a grid of every combination outgrows a GPU's hour at a few seeds and rules); a LoRA rank
    brings its alpha (twice the rank, as the defaults have it)."""
    out = [{}]
    for key, _, values in (t.partition("=") for t in tries):
        for value in values.split(","):
            setting = {key.strip(): value.strip()}
            if "lora_r" in setting:
                setting["lora_alpha"] = str(2 * int(setting["lora_r"]))
            out.append(setting)
    return out


def label(setting: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in setting.items() if k != "lora_alpha") or "defaults"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="rust-book")
    parser.add_argument("--method", choices=("reward", "dpo", "grpo"), default="reward")
    parser.add_argument("--votes", default="25,50,100,200")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--try", dest="tries", action="append", default=[], metavar="KEY=V1,V2",
                        help="an option's values tried beside the defaults, one at a time (repeatable)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option every run gets (repeatable), e.g. max_steps=2 to check the loop")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each its own workspace and process)")
    parser.add_argument("--noise", type=float, default=0.0, help="share of each annotator's votes flipped")
    parser.add_argument("--annotators", type=int, default=1, help="annotators voting on each training pair")
    parser.add_argument("--write", action="store_true",
                        help="annotators write the answer their rule asks for when neither side gives it")
    parser.add_argument("--ask", choices=sorted(SECTION_QUESTION),
                        help="the language the section questions are asked in (default: the set's): a team "
                             "asking in its own language over documents in another")
    parser.add_argument("--held-out", type=int, default=40, help="held-out pairs (at most)")
    parser.add_argument("-k", type=int, default=2, help="chunks of context per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature-a", type=float, default=0.0, help="side a's sampling (pairs create's default)")
    parser.add_argument("--temperature-b", type=float, default=0.8, help="side b's sampling (pairs create's default)")
    parser.add_argument("--keep", type=Path, help="keep the workspaces here")
    parser.add_argument("--pairs-only", action="store_true", help="stop once the pairs are answered")
    parser.add_argument("--tries-only", action="store_true", help="run the --try settings, not the defaults")
    parser.add_argument("--judge-again", action="store_true",
                        help="judge the held-out answers of the DPO and GRPO runs kept under --keep by every rule")
    parser.add_argument("--out", type=Path, help="append each run's result to this JSONL file as it ends")
    parser.add_argument("--base-model", default=os.environ.get("WORKBENCH_BASE_MODEL", ""))
    args = parser.parse_args()
    votes = sorted(int(v) for v in args.votes.split(","))
    rules = [r.strip() for r in args.rules.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.tries_only and not args.tries:
        parser.error("--tries-only needs a --try")
    if args.judge_again and not args.keep:
        parser.error("--judge-again needs --keep, the folder of the runs to judge")
    settings = settings_of(args.tries)[args.tries_only:]

    root = args.keep or Path(tempfile.mkdtemp(prefix="learning-"))
    home = root / "pairs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(WORKBENCH_HOME=str(home), HF_HUB_OFFLINE="1", WORKBENCH_AUTO_PULL="1")
    if args.base_model:
        env["WORKBENCH_BASE_MODEL"] = args.base_model
    if not (home / "data" / "metadata.json").exists():
        workbench(env, "ingest", str(fetch(args.set)))
    listed = root / "questions.json"  # drawn once, before the missing pages leave the index
    if args.ask and listed.exists() and SECTION_QUESTION[args.ask].split("{")[0] not in listed.read_text():
        parser.error(f"the questions kept in {listed} were not asked with --ask {args.ask}: keep another folder")
    if not listed.exists():
        listed.write_text(json.dumps(prompts_of(args.set, home, args.ask), ensure_ascii=False))
    prompts = json.loads(listed.read_text())
    take_out_missing_pages(env, prompts, root / "documents.json")
    rng = random.Random(0)
    train = [p for p in prompts if not p["held_out"]]
    held = [p for p in prompts if p["held_out"]]
    rng.shuffle(train)
    rng.shuffle(held)
    wanted = train[:int(max(votes) * 1.3)] + held[:int(2 * args.held_out * 1.3)]  # ties are skipped
    # the pairs already answered are kept: only new prompts and missing answers are generated
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p["prompt"]}) + "\n" for p in wanted))
    temperatures = (args.temperature_a, args.temperature_b)
    if not args.judge_again:  # it judges the answers there are
        workbench(env, "pairs", "create", str(root / "prompts.jsonl"), "--rag", "-k", str(args.k),
                  "--max-new-tokens", str(args.max_new_tokens),
                  "--temperature-a", str(temperatures[0]), "--temperature-b", str(temperatures[1]))
    pairs = [p for p in json.loads(workbench(env, "pairs", "list", "--json"))
             if (p["a"]["temperature"], p["b"]["temperature"]) == temperatures]
    side = {p["prompt"]: p["held_out"] for p in prompts}  # every answered pair votes, whatever run asked it
    names = json.loads((root / "documents.json").read_text())
    covered = covered_of(pairs, {p["prompt"]: pages_of(p) for p in prompts}, names)
    print(f"{args.set}: {len(prompts)} prompts ({len(held)} on held-out pages, "
          f"{sum(all(map(missing_page, pages_of(p))) for p in prompts)} with every page taken out); "
          f"{len(pairs)} pairs answered, "
          f"{sum(covered.values())} with the question's page in their context", flush=True)
    answers = [p[s]["answer"] for p in pairs for s in ("a", "b") if p[s]["answer"]]
    print(f"  {sum(bool(NOT_IN_DOCUMENTS.search(a)) for a in answers)} of {len(answers)} answers say the documents "
          "do not answer", flush=True)
    print("  " + answer_languages(pairs), flush=True)
    if args.pairs_only:
        return

    pages = page_texts(args.set, prompts)
    if args.judge_again:
        judge_again(root, env, pairs, covered, pages)
        return
    voted = {rule_name: votes_of(rule_name, pairs, side, covered, pages, args.write) for rule_name in rules}
    # the held-out pages' votes in two halves: the product's held-out file, which picks the
    # checkpoint it keeps, and the pairs the figures are measured on, which nothing was chosen on
    split = {rule_name: (v[True][0::2][:args.held_out], v[True][1::2][:args.held_out]) for rule_name, v in voted.items()}
    for rule_name in rules:
        train_votes = voted[rule_name][False]
        for_a, wrote = (sum(v["side"] == s for v in train_votes) for s in ("a", "written"))
        print(f"  {rule_name}: {len(train_votes)} training votes ({for_a} for side a, a at temperature "
              f"{temperatures[0]:g}, b at {temperatures[1]:g}" + (f"; {wrote} written answers" if wrote else "")
              + f"), {len(split[rule_name][0])} held out for the checkpoint, {len(split[rule_name][1])} to measure",
              flush=True)
    # every rule of a vote count, seed and setting before the next: a run cut short still has them side by side
    plan = [(rule_name, voted[rule_name][False], split[rule_name], n, seed, setting)
            for n in votes for seed in seeds for setting in settings for rule_name in rules
            if n <= len(voted[rule_name][False]) and min(map(len, split[rule_name])) >= 10]
    for rule_name in rules:
        if min(map(len, split[rule_name])) < 10:
            print(f"  {rule_name}: left out, fewer than 10 held-out votes in a half", flush=True)

    lock, table = threading.Lock(), []

    def run(task) -> None:
        rule_name, voted, (held, test), n, seed, setting = task
        result = one_run(root, env, args.method, rule_name, voted, held, test, n, seed, args.noise, args.annotators,
                         setting, args.max_new_tokens, args.option)
        result = {"set": args.set, **result}
        with lock:
            table.append(result)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(result) + "\n")
            print(f"  {rule_name:9} {n:4} votes seed {seed} {label(setting)}: {result['figure']}", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(run, plan))
    print(json.dumps({"set": args.set, "method": args.method, "noise": args.noise, "annotators": args.annotators,
                      "runs": table,
                      "chosen": leave_one_rule_out(table)}))


# GRPO's reward model is trained once per rule, vote count and seed, whatever the GRPO settings tried
REWARD_RUNS: dict[tuple[str, int, int], dict] = {}
REWARD_LOCKS: dict[tuple[str, int, int], threading.Lock] = {}


def home_of(root: Path, method: str, rule: str, n: int, seed: int, setting: dict[str, str]) -> Path:
    """The workspace of one run."""
    slug = "-".join(f"{k}{v}" for k, v in setting.items() if k != "lora_alpha") or "defaults"
    return root / f"{method}-{rule}-{n}-{seed}-{slug}"


def one_run(root: Path, env: dict[str, str], method: str, rule: str, train: list[dict], held: list[dict],
            test: list[dict], n: int, seed: int, noise: float, annotators: int, setting: dict[str, str],
            max_new_tokens: int, always: list[str]) -> dict:
    rng = random.Random(seed)
    chosen = rng.sample(train, n)
    votes = [{"pair_id": v["pair_id"], "prompt": v["prompt"], "answer_a": v["answers"][0], "answer_b": v["answers"][1],
              "choice": "both_bad", "edited_answer": v["chosen"], "annotator": f"{rule}-{i + 1}"}
             if v["side"] == "written" else
             {"pair_id": v["pair_id"], "prompt": v["prompt"], "answer_a": v["chosen"], "answer_b": v["rejected"],
              "choice": "b" if rng.random() < noise else "a", "annotator": f"{rule}-{i + 1}"}
             for v in chosen for i in range(annotators)]
    home = home_of(root, method, rule, n, seed, setting)
    shutil.rmtree(home, ignore_errors=True)
    (home / "data").mkdir(parents=True)
    # every run computes in the precision the pairs' workspace decided for this device, instead of
    # timing its own probe: on a busy machine a probe can pick fp32 where a quiet one picks bf16
    if (root / "pairs" / "precision.json").is_file():
        shutil.copy2(root / "pairs" / "precision.json", home / "precision.json")
    run_env = dict(env, WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0")
    run_env.setdefault("WORKBENCH_BASE_MODEL", str(root / "pairs" / "models" / "base"))
    (home / "votes.jsonl").write_text("".join(json.dumps(v) + "\n" for v in votes))
    workbench(run_env, "feedback", "import", str(home / "votes.jsonl"))
    merged = json.loads(workbench(run_env, "merge-feedback", "--json"))
    write_pairs(home / "data" / "dataset_rlhf_test.jsonl", held)
    options = [arg for option in always for arg in ("--set", option)]
    wrote = sum(v["side"] == "written" for v in chosen)  # not ``written``: that is the rules' writer
    # a rule with written answers is told apart in the tables (learning_report.py keys on "rule")
    row = {"method": method, "rule": f"{rule}, written" if wrote else rule, "votes": n, "seed": seed,
           "setting": label(setting), "annotators": annotators, "noise": noise, "written": wrote,
           "pairs_merged": merged.get("kept"), "agreement": merged.get("agreement"), "held_out": len(test)}
    (home / "run.json").write_text(json.dumps({"method": method, "rule": rule, "votes": n, "seed": seed,
                                               "setting": setting}))  # what judge_again reads back
    if method == "grpo":  # its reward model: the reward run at the defaults on the same votes
        with REWARD_LOCKS.setdefault((rule, n, seed), threading.Lock()):
            if (rule, n, seed) not in REWARD_RUNS:
                REWARD_RUNS[rule, n, seed] = one_run(root, env, "reward", rule, train, held, test, n, seed, noise,
                                                     annotators, {}, max_new_tokens, always)
        shutil.copytree(home_of(root, "reward", rule, n, seed, {}) / "models" / "reward_model",
                        home / "models" / "reward_model")
        row["reward_accuracy"] = REWARD_RUNS[rule, n, seed]["accuracy"]
    options += [arg for key, value in setting.items() for arg in ("--set", f"{key}={value}")]
    out = json.loads(workbench(run_env, "train", method, *options, "--json"))
    result = out.get("result") or {}
    row.update(steps=result.get("global_step"), kept_step=result.get("kept_step"), seconds=result.get("train_seconds"))
    if method == "reward":
        row.update(kept_on=result.get("eval_accuracy", 0.0), before=result.get("before_accuracy", 0.0),
                   **preference_accuracy(home, run_env, test, result.get("output_name") or "reward_model"))
        row["figure"] = (f"accuracy {row['accuracy']:.2f} [{row['low']:.2f}, {row['high']:.2f}] on {len(test)} "
                         f"unseen pairs ({row['kept_on']:.2f} on the {len(held)} that kept the checkpoint, "
                         f"{row['before']:.2f} before), {row['steps']} steps")
        return row
    row.update(against_base(home, run_env, rule, test, result.get("output_name") or f"llama-{method}", max_new_tokens))
    row["figure"] = (f"wins {row['wins']}, loses {row['losses']}, ties {row['ties']} against the base: "
                     f"{row['win_rate']:.2f} [{row['low']:.2f}, {row['high']:.2f}]; the rule's score "
                     f"{row['score_base']:.3f} -> {row['score_trained']:.3f}"
                     + (f"; its reward model {row['reward_accuracy']:.2f}" if "reward_accuracy" in row else ""))
    if row["written"]:
        row["figure"] += f"; {row['written']} written answers among the votes"
    row["figure"] += (f"; {row['quoting']['trained']} of its {row['covered'] + row['uncovered']} answers copy "
                      f"{QUOTED} words in a row from the context (the base's: {row['quoting']['base']})")
    row["figure"] += "; by every rule (wins-losses-ties): " + ", ".join(
        f"{name} {v['wins']}-{v['losses']}-{v['ties']}" for name, v in row["by_rule"].items())
    said_not, said_not_covered = row["refused_uncovered"], row["refused_covered"]
    row["figure"] += (f"; says the documents do not answer on {said_not['trained']} of {row['uncovered']} questions "
                      f"whose page the context lacks and {said_not_covered['trained']} of {row['covered']} it holds "
                      f"(the base: {said_not['base']} and {said_not_covered['base']})")
    return row


def write_pairs(path: Path, pairs: list[dict]) -> None:
    path.write_text("".join(json.dumps({k: t[k] for k in ("prompt", "chosen", "rejected")}) + "\n" for t in pairs))


def preference_accuracy(home: Path, env: dict[str, str], test: list[dict], model: str) -> dict:
    """``workbench eval --sets preferences`` of the reward model on ``test``, put in place of the
    held-out file once the training is over: its accuracy, with the 95 % Wilson interval."""
    write_pairs(home / "data" / "dataset_rlhf_test.jsonl", test)
    scores = json.loads(workbench(env, "eval", "--models", model, "--sets", "preferences", "--json"))["scores"][model]
    low, high = scores["intervals"]["preference_accuracy"]
    return {"accuracy": scores["metrics"]["preference_accuracy"], "low": low, "high": high,
            "measured_on": scores["n"]["preference_accuracy"]}


def against_base(home: Path, env: dict[str, str], rule: str, test: list[dict], model: str, max_new_tokens: int) -> dict:
    """The trained model (side a) and the base (side b) answer the held-out prompts, as a pair set
    would, both greedy: decoding alone decides otherwise (the base's greedy answers beat its own
    answers sampled at 0.8 on 32 of 40 held-out Rust questions by ``faithful``, 31 by ``language``);
    the rule judges each pair (``judged``)."""
    (home / "held_out_prompts.jsonl").write_text("".join(json.dumps({"prompt": t["prompt"]}) + "\n" for t in test))
    workbench(env, "pairs", "create", str(home / "held_out_prompts.jsonl"), "--model-a", model, "--model-b", "base",
              "--temperature-a", "0", "--temperature-b", "0", "--set", "held-out", "--max-new-tokens", str(max_new_tokens))
    return judged(held_out_answers(env), rule, {t["prompt"]: t["covered"] for t in test},
                  {t["prompt"]: t["page"] for t in test})


def held_out_answers(env: dict[str, str]) -> list[dict]:
    """The trained model's (a) and the base's (b) answers to the held-out prompts of a run's workspace."""
    return [p for p in json.loads(workbench(env, "pairs", "list", "--json")) if p.get("set_name", "held-out") == "held-out"]


def judged(pairs: list[dict], rule: str, covered: dict[str, bool], pages: dict[str, str]) -> dict:
    """``rule``'s verdicts on the trained model's (a) and the base's (b) answers: win rate over the
    pairs it does not tie, 95 % Wilson interval, its mean score of each side; every rule's
    wins-losses-ties and scores (``by_rule``: what else the votes moved); how often each side says
    the documents do not answer and quotes the context. ``covered`` and ``pages`` by prompt."""
    def verdict(name: str) -> dict:
        verdicts = [judge(RULES[name], p["prompt"], p["a"]["answer"], p["b"]["answer"], covered[p["prompt"]],
                          pages.get(p["prompt"], "")) for p in pairs]

        def mean(side: str) -> float:
            return sum(score(RULES[name], p["prompt"], p[side]["answer"], covered[p["prompt"]], pages.get(p["prompt"], ""))
                       for p in pairs) / max(1, len(pairs))

        wins, losses = verdicts.count("a"), verdicts.count("b")
        return {"wins": wins, "losses": losses, "ties": len(pairs) - wins - losses,
                "score_trained": mean("a"), "score_base": mean("b")}

    def quoting(side: str) -> int:
        return sum(bool(quoted(p[side]["answer"], split_prompt(p["prompt"])[1])) for p in pairs)

    def refusals(side: str, on_covered: bool) -> int:
        return sum(bool(NOT_IN_DOCUMENTS.search(p[side]["answer"]))
                   for p in pairs if covered[p["prompt"]] == on_covered)

    own = verdict(rule)
    low, high = wilson(own["wins"], own["wins"] + own["losses"])
    return {**own, "win_rate": own["wins"] / max(1, own["wins"] + own["losses"]), "low": low, "high": high,
            "by_rule": {name: verdict(name) for name in RULES},
            # "the documents do not answer", said on questions whose page the context lacks and holds
            "uncovered": sum(not covered[p["prompt"]] for p in pairs),
            "covered": sum(covered[p["prompt"]] for p in pairs),
            "refused_uncovered": {"trained": refusals("a", False), "base": refusals("b", False)},
            "refused_covered": {"trained": refusals("a", True), "base": refusals("b", True)},
            "quoting": {"trained": quoting("a"), "base": quoting("b")}}


def judge_again(root: Path, env: dict[str, str], pairs: list[dict], covered: dict[str, bool],
                pages: dict[str, str]) -> None:
    """Every rule's verdicts on the held-out answers of the DPO and GRPO runs kept under ``root``
    (their workspaces, ``home_of``), with no training: what a run taught, judged by rules it was
    not trained on. A line a run, then one JSON object."""
    on_page = {p["prompt"]: pages.get(split_prompt(p["prompt"])[0], "") for p in pairs}
    out = {}
    for home in sorted(h for h in root.iterdir() if h.name.startswith(("dpo-", "grpo-")) and (h / "held_out_prompts.jsonl").exists()):
        answers = held_out_answers(dict(env, WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0"))
        answers = [p for p in answers if p["prompt"] in covered]  # as ``against_base`` judges them
        if not answers:
            continue
        made = home / "run.json"  # runs kept before it was written are named by home_of
        rule = json.loads(made.read_text())["rule"] if made.exists() else home.name.split("-")[1]
        out[home.name] = judged(answers, rule, covered, on_page)["by_rule"]
        print(f"  {home.name}: " + "; ".join(f"{name} {v['wins']}-{v['losses']}-{v['ties']} "
                                          f"({v['score_base']:.3f} -> {v['score_trained']:.3f})"
                                          for name, v in out[home.name].items()), flush=True)
    print(json.dumps(out))


def quoted(answer: str, context: str, n: int = QUOTED) -> set[str]:
    """The runs of ``n`` words the answer copies from the context."""
    def runs(text: str) -> set[str]:
        words = text.split()
        return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}

    return runs(answer) & runs(context)


if __name__ == "__main__":
    main()
