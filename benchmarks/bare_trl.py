"""The baseline for ``training.py``: the same training in a bare TRL script, with nothing of the
workbench around it (no queue, no run record, no callback writing files). Prints one JSON line:
steady-state steps/s (median of the per-step rates after the first two steps) and peak memory.

    python benchmarks/bare_trl.py reward|dpo|grpo|ppo|sft --model DIR --data FILE [--reward-model DIR] ...
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method", choices=["sft", "reward", "dpo", "grpo", "ppo"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--reward-model")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--completion-length", type=int, default=32)
    parser.add_argument("--output", default="/tmp/bare-trl")
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                              TrainerCallback)

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows = [json.loads(line) for line in open(args.data) if line.strip()]
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=PROJECTIONS,
                      task_type="SEQ_CLS" if args.method == "reward" else "CAUSAL_LM")
    common = dict(output_dir=args.output, per_device_train_batch_size=args.batch, learning_rate=args.lr,
                  max_steps=args.steps, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                  use_cpu=not torch.cuda.is_available(), bf16=False, activation_checkpointing=False, seed=42)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    def pair(r):
        return {"prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}]}

    if args.method == "reward":
        from trl import RewardConfig, RewardTrainer

        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
        trainer = RewardTrainer(model=model, args=RewardConfig(**common, max_length=args.max_length),
                                train_dataset=Dataset.from_list([pair(r) for r in rows]), processing_class=tokenizer,
                                peft_config=lora, callbacks=[Clock()])
    elif args.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        model = AutoModelForCausalLM.from_pretrained(args.model)
        trainer = DPOTrainer(model=model, args=DPOConfig(**common, max_length=args.max_length, beta=0.1),
                             train_dataset=Dataset.from_list([pair(r) for r in rows]), processing_class=tokenizer,
                             peft_config=lora, callbacks=[Clock()])
    elif args.method == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        model = AutoModelForCausalLM.from_pretrained(args.model)
        reward = AutoModelForSequenceClassification.from_pretrained(args.reward_model, num_labels=1)
        reward.config.pad_token_id = tokenizer.pad_token_id
        prompts = list(dict.fromkeys(r["prompt"] for r in rows))
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], reward_processing_classes=[tokenizer],
                              args=GRPOConfig(**common, num_generations=4, max_completion_length=args.completion_length,
                                              beta=0.04, temperature=1.0),
                              train_dataset=Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts]),
                              processing_class=tokenizer, peft_config=lora, callbacks=[Clock()])
    elif args.method == "ppo":
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        model = AutoModelForCausalLM.from_pretrained(args.model)
        scorers = []
        for _ in range(2):
            m = AutoModelForSequenceClassification.from_pretrained(args.reward_model, num_labels=1)
            m.config.pad_token_id = tokenizer.pad_token_id
            scorers.append(m)
        tokenizer.padding_side = "left"
        prompts = list(dict.fromkeys(r["prompt"] for r in rows))
        ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=True, add_generation_prompt=True,
                                             return_dict=True)["input_ids"] for p in prompts]
        config = PPOConfig(**{k: v for k, v in common.items() if k != "max_steps"},
                           total_episodes=args.steps * args.batch, response_length=args.completion_length,
                           stop_token="eos", temperature=0.7, kl_coef=0.05, num_ppo_epochs=4, num_mini_batches=1,
                           missing_eos_penalty=1.0, local_rollout_forward_batch_size=args.batch, num_sample_generations=0)
        trainer = PPOTrainer(args=config, processing_class=tokenizer, model=model, ref_model=None,
                             reward_model=scorers[0], value_model=scorers[1],
                             train_dataset=Dataset.from_list([{"input_ids": i} for i in ids]), peft_config=lora,
                             callbacks=[Clock()])
    else:
        from trl import SFTConfig, SFTTrainer

        model = AutoModelForCausalLM.from_pretrained(args.model)
        data = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                 "completion": [{"role": "assistant", "content": r["chosen"]}]} for r in rows]
        trainer = SFTTrainer(model=model, args=SFTConfig(**common, max_length=args.max_length),
                             train_dataset=Dataset.from_list(data), processing_class=tokenizer, peft_config=lora,
                             callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    rates = [1 / (b - a) for a, b in zip(times[1:], times[2:])] or [len(times) / (time.perf_counter() - start)]
    print(json.dumps({"method": args.method, "steps": len(times), "steps_per_s": statistics.median(rates),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
