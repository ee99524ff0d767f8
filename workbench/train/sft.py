"""Supervised fine-tuning with LoRA, or QLoRA (4-bit NF4 base), on ``data/train.jsonl``, evaluated
on ``data/test.jsonl`` when there is one. The loss covers the assistant replies only: through a
training chat template with generation markers that renders exactly as the tokenizer's own, or,
where none does, through prompt/completion rows (the last reply)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from workbench.chat.system_prompt import current_system_prompt, system_input
from workbench.kinds import Preflight, Watch
from workbench.settings import Settings
from workbench.train import data as rows_of
from workbench.train.config import TrainConfig, option
from workbench.train.launch import run_in_child
from workbench.train.memory import Shape
from workbench.train.modeling import padded_length
from workbench.train.preflight import (batch_fits, device_notes, eval_file, memory_fits, prompts_fit,
                                       start_and_output, start_model)

run = run_in_child  # the job: the worker starts train() in a torchrun child
read_rows = rows_of.sft_rows  # how the method reads its data file (the Train tab's preview too)
ROWS = "rows"  # what one row of it is
METHOD = "sft"
WATCH = Watch(("loss", "eval_loss"), "loss", "held-out loss", higher_is_better=False, items="prompts")
NEEDS = ("SFT rows: chat `messages`, `prompt`/`completion` or Alpaca `instruction`/`input`/`output` "
         "(`data/train.jsonl`; `data/test.jsonl` is the held-out set when present).")


@dataclass
class Config(TrainConfig):
    dataset: str = option("train.jsonl", "SFT rows (messages, prompt/completion or Alpaca) under data/", "data")
    output_name: str = option("llama-lora-adapted", "folder under models/ for the adapter", "output")


def preflight(config: Config, settings: Settings) -> Preflight:
    ws = settings.workspace
    spec = start_and_output(config, settings)
    train_file = rows_of.data_file(ws, config.dataset)
    rows = rows_of.sft_rows(train_file, current_system_prompt(ws).text)
    batch_fits(config, len(rows))
    held = eval_file(ws, config, ws.test_file)
    if held is not None:
        rows_of.sft_rows(held)
    from workbench.train.modeling import load_tokenizer

    tokenizer = load_tokenizer(spec)
    longest = prompts_fit(config, tokenizer, [r["messages"][:-1] for r in rows])
    whole = max(len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                for r in rows)
    sequence = config.max_length or padded_length(whole)
    return Preflight({"train": train_file, **({"eval": held} if held else {}), **system_input(ws)}, device_notes(config),
                     {"rows": len(rows), "longest_prompt_tokens": longest,
                      **memory_fits(config, settings, spec, memory_shape(config), sequence)})


def memory_shape(config: Config) -> Shape:
    return Shape(sequences_per_row=1)


def data_max_length(tokenizer, rows, model_config) -> int:
    from workbench.train.modeling import length_from_data

    return length_from_data(max(len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)
                                    ["input_ids"]) for r in rows), model_config)


def _as_completion(row):
    return {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}


def train(config: Config, job) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from workbench.train.chat_template import training_template
    from workbench.train.job import changed_count, trainable_snapshot
    from workbench.train.modeling import (choose_precision, count_parameters, load_tokenizer, lora_config,
                                          use_gradient_checkpointing)

    precision = choose_precision(config.precision, job.settings.workspace)
    spec = start_model(job.settings, config.model)
    tokenizer = load_tokenizer(spec)
    own_template = tokenizer.chat_template
    rows = rows_of.sft_rows(job.input("train"), job.system)
    held = rows_of.sft_rows(job.input("eval"), job.system) if job.input("eval") else None
    template, source = training_template(tokenizer, rows)
    assistant_only = template is not None or source == "own"
    if template is not None:
        tokenizer.chat_template = template
        job.log(f"assistant-only loss through the training template {source} (renders as the tokenizer's own)")
    elif not assistant_only:
        job.log(f"{source}: training on the last reply of each row (prompt/completion)")
        rows, held = [_as_completion(r) for r in rows], held and [_as_completion(r) for r in held]
    job.reporter.check_cancel()
    model = job.load_policy(spec, config, precision)
    if config.max_length:
        max_length = config.max_length
    else:
        sample = rows if assistant_only else [{"messages": r["prompt"] + r["completion"]} for r in rows]
        max_length = data_max_length(tokenizer, sample, model.config)
    checkpointing = use_gradient_checkpointing(config, count_parameters(model))
    job.log_start(config, model, precision, checkpointing, max_length=max_length)
    best = job.best_kept(config, held, ("eval_loss", False))
    args = job.training_args(SFTConfig, config, precision, checkpointing, held is not None, len(rows),
                             best, max_length=max_length, assistant_only_loss=assistant_only, packing=False)
    callback = job.callback(config)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         eval_dataset=Dataset.from_list(held) if held else None, processing_class=tokenizer,
                         peft_config=lora_config(config, model.config), callbacks=[callback, *filter(None, [best])])
    metrics: dict = {}
    if held and not job.resume_from:  # the held-out loss before training, for Monitor's before -> after
        job.quiet(trainer)
        metrics.update({k: v for k, v in trainer.evaluate(metric_key_prefix="before").items()
                        if isinstance(v, (int, float)) and k == "before_loss"})
    before = trainable_snapshot(trainer.model)
    metrics.update(job.fit(trainer, callback, best=best))
    metrics.update(changed_count(trainer.model, before))
    if held:
        metrics["held_out"] = len(held)
        evaluation = trainer.evaluate()
        metrics.update({k: v for k, v in evaluation.items() if isinstance(v, (int, float))})
        if "eval_loss" in evaluation:
            metrics["eval_perplexity"] = math.exp(min(50.0, evaluation["eval_loss"]))
    if job.main:
        tokenizer.chat_template = own_template

        folder = job.save_adapter(config, METHOD, trainer.model, tokenizer, spec, metrics,
                                 {"precision": precision.name, "quantization": config.quantization,
                                  "loss": "assistant replies" if assistant_only else "last reply"})
        metrics["output"] = str(folder)
    return metrics
