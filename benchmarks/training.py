"""Does training learn, and does the workbench train at the speed of bare TRL?

A small synthetic preference task with a known right answer: each prompt asks for a code and
carries it in its ``Context:``; the chosen answer quotes the context, the rejected one ignores
it. On the default 135M model (or ``--model``), through a real worker and the queue:

- reward model: accuracy on held-out pairs (goal >= 0.9);
- DPO: held-out log-probability margin of chosen over rejected, before and after (must rise);
- GRPO and PPO: the reward model's mean score of the policy's answers to held-out prompts,
  before and after (must rise), and the KL of the policy to its start model;
- each method's steady-state steps/s through the queue against the same training in a bare TRL
  script (``bare_trl.py``) run in this benchmark (goal >= 0.95x), and peak memory.

    python benchmarks/training.py [--model DIR] [--quick] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROOMS = ["archive", "boiler room", "cellar", "darkroom", "east wing", "gallery", "hangar", "infirmary",
         "kitchen", "library", "mailroom", "north tower", "observatory", "pantry", "quarry office", "reading room"]
DODGES = ["I do not know anything about that.", "That information is not available to me.",
          "Sorry, I cannot help with codes.", "You should ask someone else about it."]


def make_pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        room = f"{rng.choice(ROOMS)} {rng.randint(1, 99)}"
        code = f"{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}-{rng.randint(1000, 9999)}"
        fact = f"The access code of the {room} is {code}."
        pairs.append({"prompt": f"What is the access code of the {room}?\n\nContext:\n{fact}",
                      "chosen": f"According to the context, the access code of the {room} is {code}.",
                      "rejected": rng.choice(DODGES)})
    return pairs


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def cli(env, *args, timeout=3600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"workbench {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def through_queue(env, home: Path, method: str, options: dict, window: int) -> dict:
    """Run through the queue; steps/s is the median over steps 3..``window``, the bare run's steps,
    so both are measured on the same stretch of training (answers' lengths drift as RL learns)."""
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    run_id = json.loads(cli(env, "train", method, *flags, "--queue", "--json").stdout)["id"]
    folder = home / "runs" / run_id
    while True:
        status = json.loads((folder / "status.json").read_text())
        if status["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    if status["status"] != "succeeded":
        raise SystemExit(f"{method} {status['status']}: {status.get('error')}\n{(folder / 'log.txt').read_text()[-3000:]}")
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    rates = [m["steps_per_s"] for m in metrics if m.get("steps_per_s") and 2 < m["step"] <= window]
    return {"result": status["result"], "steps_per_s": statistics.median(rates) if rates else None, "run": run_id}


def bare(method: str, model: str, data: Path, reward: str | None, steps: int, options: dict) -> dict:
    args = [sys.executable, str(ROOT / "benchmarks" / "bare_trl.py"), method, "--model", model, "--data", str(data),
            "--steps", str(steps), "--batch", str(options["batch_size"]), "--lr", str(options["learning_rate"]),
            "--completion-length", str(options.get("max_completion_length", 32))]
    if options.get("max_length"):
        args += ["--max-length", str(options["max_length"])]
    if reward:
        args += ["--reward-model", reward]
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"bare {method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def policy_scores(base: str, adapter: Path | None, reward_dir: Path, prompts: list[str], tokens: int) -> dict:
    """The reward model's mean score of the policy's answers: sampled (temperature 1, two per
    prompt: the expectation RL maximises) and greedy; KL to the start model on the samples."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from workbench.train.scoring import answer_logprobs, generate_answers, reward_scores

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    scorer = AutoModelForSequenceClassification.from_pretrained(reward_dir, num_labels=1).eval()
    scorer.config.pad_token_id = tokenizer.pad_token_id
    greedy = generate_answers(model, tokenizer, prompts, tokens)
    repeated = prompts * 2
    sampled = generate_answers(model, tokenizer, repeated, tokens, do_sample=True, temperature=1.0, seed=1)
    out = {"mean_reward": statistics.mean(reward_scores(scorer, tokenizer, repeated, sampled)),
           "greedy_reward": statistics.mean(reward_scores(scorer, tokenizer, prompts, greedy)),
           "sample_answer": sampled[0][:120]}
    if adapter is not None:
        policy = answer_logprobs(model, tokenizer, repeated, sampled)
        with model.disable_adapter():
            reference = answer_logprobs(model, tokenizer, repeated, sampled)
        out["kl_to_start"] = statistics.mean(p - r for p, r in zip(policy, reference))
    del model, scorer
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


def reference_scores(base: str, reward_dir: Path, pairs: list[dict]) -> dict:
    """The reward model's mean score of the held-out chosen and rejected answers: the scale on
    which the policies' scores move."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workbench.train.scoring import reward_scores

    tokenizer = AutoTokenizer.from_pretrained(base)
    scorer = AutoModelForSequenceClassification.from_pretrained(reward_dir, num_labels=1).eval()
    scorer.config.pad_token_id = tokenizer.pad_token_id
    prompts = [p["prompt"] for p in pairs]
    return {side: statistics.mean(reward_scores(scorer, tokenizer, prompts, [p[side] for p in pairs]))
            for side in ("chosen", "rejected")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="base model folder (default: provision SmolLM2-135M-Instruct offline)")
    parser.add_argument("--quick", action="store_true", help="fewer steps: checks the plumbing, not the learning")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark workspace")
    parser.add_argument("--methods", default="reward,dpo,grpo,ppo",
                        help="which to run (grpo and ppo need reward first)")
    parser.add_argument("--window", type=int, default=10, help="steps of the bare run, and of the speed comparison")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="wb-train-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    started = time.time()
    if args.model:
        base = str(Path(args.model).resolve())
    else:
        cli(env, "models", "pull")
        base = str(home / "models" / "base")
    env["WORKBENCH_BASE_MODEL"] = base
    train_pairs, test_pairs = make_pairs(48, seed=1), make_pairs(16, seed=2)
    write_jsonl(home / "data" / "dataset_rlhf.jsonl", train_pairs)
    write_jsonl(home / "data" / "dataset_rlhf_test.jsonl", test_pairs)
    held_prompts = [p["prompt"] for p in test_pairs]
    scale = 3 if args.quick else 1
    chosen = args.methods.split(",")
    plan = {
        "reward": {"max_steps": 36 // scale, "batch_size": 4, "learning_rate": 3e-4, "save_steps": 1000},
        "dpo": {"max_steps": 30 // scale, "batch_size": 4, "learning_rate": 1e-4, "save_steps": 1000, "beta": 0.1},
        "grpo": {"max_steps": 24 // scale, "batch_size": 4, "learning_rate": 1e-4, "save_steps": 1000,
                 "max_completion_length": 32, "num_generations": 4},
        "ppo": {"max_steps": 24 // scale, "batch_size": 4, "learning_rate": 5e-5, "save_steps": 1000,
                "max_completion_length": 32},
    }
    worker = subprocess.Popen([sys.executable, "-m", "workbench.cli", "worker"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report: dict = {"model": base, "quick": args.quick}
    try:
        reward_dir = home / "models" / "reward_model"
        for method, options in plan.items():
            if method not in chosen:
                continue
            print(f"[{time.time() - started:6.0f} s] {method} through the queue…", flush=True)
            window = min(args.window, options["max_steps"])
            queued = through_queue(env, home, method, options, window)
            print(f"[{time.time() - started:6.0f} s] {method} in bare TRL…", flush=True)
            baseline = bare(method, base, home / "data" / "dataset_rlhf.jsonl",
                            str(reward_dir) if method in ("grpo", "ppo") else None, window, options)
            report[method] = {"queue": queued, "bare": baseline,
                              "speed_ratio": queued["steps_per_s"] / baseline["steps_per_s"]
                              if queued["steps_per_s"] and baseline["steps_per_s"] else None}
            if method == "reward":
                report["base_policy"] = policy_scores(base, None, reward_dir, held_prompts, 32)
                report["reference_answers"] = reference_scores(base, reward_dir, test_pairs)
        for method, folder in (("grpo", "llama-grpo"), ("ppo", "llama-rlhf")):
            if method not in chosen:
                continue
            report[method]["after"] = policy_scores(base, home / "models" / folder, reward_dir, held_prompts, 32)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    report["seconds"] = round(time.time() - started)
    print_report(report)
    (ROOT / "benchmarks" / "last_training.json").write_text(json.dumps(report, indent=2, default=str))
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)


def print_report(r: dict) -> None:
    print("\n== It learns (held-out) ==")
    if "reward" in r:
        reward = r["reward"]["queue"]["result"]
        print(f"reward model accuracy      {reward['eval_accuracy']:.3f} (before training {reward['before_accuracy']:.3f}; "
              f"goal >= 0.9), margin {reward['eval_margin']:.3f}")
        ref = r["reference_answers"]
        print(f"(held-out reference answers score {ref['chosen']:.3f} chosen, {ref['rejected']:.3f} rejected)")
    if "dpo" in r:
        dpo = r["dpo"]["queue"]["result"]
        print(f"DPO log-prob margin        {dpo['before_logp_margin']:.2f} -> {dpo['eval_logp_margin']:.2f}")
    for method in [m for m in ("grpo", "ppo") if m in r]:
        base, after = r["base_policy"], r[method]["after"]
        print(f"{method.upper():4} mean reward (sampled)  {base['mean_reward']:.3f} -> {after['mean_reward']:.3f} "
              f"(greedy {base['greedy_reward']:.3f} -> {after['greedy_reward']:.3f}; KL to start {after['kl_to_start']:.3f})")
    print("\n== Speed through the queue vs bare TRL (steady-state steps/s), peak memory ==")
    print(f"{'method':8} {'queue':>8} {'bare':>8} {'ratio':>7} {'peak RSS queue':>15} {'peak RSS bare':>14}")
    for method in [m for m in ("reward", "dpo", "grpo", "ppo") if m in r]:
        q, b = r[method]["queue"], r[method]["bare"]
        print(f"{method:8} {q['steps_per_s']:8.3f} {b['steps_per_s']:8.3f} {r[method]['speed_ratio']:7.2f}x "
              f"{q['result'].get('peak_rss_mib', 0):12.0f} MiB {b['peak_rss_mib']:11.0f} MiB")
    print(f"\n{r['seconds']} s in all; model {r['model']}")


if __name__ == "__main__":
    main()
