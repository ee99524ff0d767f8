"""Reward model: TRL's ``RewardTrainer`` puts a one-logit sequence-classification head on the start
model (the base or an SFT model) and trains it, with LoRA, to score the chosen answer of each pair
of ``data/dataset_rlhf.jsonl`` above the rejected one. Reports accuracy and margin on held-out
pairs; the result is a full model folder (LoRA merged) that PPO and GRPO load as it is."""
from __future__ import annotations

from dataclasses import dataclass

from workbench.chat.prompt import chat_messages
from workbench.chat.system_prompt import current_system_prompt, system_input
from workbench.kinds import Preflight, Watch
from workbench.settings import Settings
from workbench.train import data as rows_of
from workbench.train.config import TrainConfig, option
from workbench.train.launch import run_in_child
from workbench.train.memory import Shape
from workbench.train.modeling import padded_length
from workbench.train.preflight import (batch_fits, cut_prompts, device_notes, eval_file, memory_fits,
                                       prompts_fit, start_and_output, start_model)

run = run_in_child  # the job: the worker starts train() in a torchrun child
METHOD = "reward"
WATCH = Watch(("loss", "eval_accuracy", "eval_margin"), "accuracy", "held-out accuracy", items="pairs")
HELD_OUT = "dataset_rlhf_test.jsonl"


@dataclass
class Config(TrainConfig):
    dataset: str = option("dataset_rlhf.jsonl", "preference pairs (prompt/chosen/rejected) under data/", "data")
    eval_dataset: str = option("", f"held-out pairs ('' = data/{HELD_OUT} if present, else a split; 'none' = no evaluation)", "data")
    eval_fraction: float = option(0.1, "share of the pairs held out when there is no held-out file", "data")
    output_name: str = option("reward_model", "folder under models/ for the reward model", "output")
    learning_rate: float = option(1e-4, "peak learning rate")
    model: str = option("auto", "start model: auto (the newest SFT model, else base), base, or a trained "
                                "model's name", "model")

    def validate(self) -> None:
        super().validate()
        if not 0 < self.eval_fraction < 1:
            raise ValueError("eval_fraction must be in (0, 1)")
        if self.quantization != "none":
            raise ValueError("the reward model is saved merged, as the full model PPO and GRPO load: train it "
                             "with quantization=none (a 4-bit merge would round its weights)")


def preference_preflight(config, settings: Settings, shape_of) -> Preflight:
    """The checks DPO and the reward model share: start model, name, pairs, held-out pairs,
    lengths, and memory (``shape_of``: the method's ``memory_shape``)."""
    ws = settings.workspace
    spec = start_and_output(config, settings)
    train_file = rows_of.data_file(ws, config.dataset)
    pairs = rows_of.preference_pairs(train_file)
    held = eval_file(ws, config, ws.data / HELD_OUT)
    if held is not None:
        rows_of.preference_pairs(held)
    train_rows = len(pairs) if held is not None or config.eval_dataset.lower() == rows_of.NONE else \
        len(rows_of.held_out_split(pairs, config.eval_fraction, config.seed)[0])
    batch_fits(config, train_rows, "training pairs")
    from workbench.train.modeling import load_tokenizer

    tokenizer = load_tokenizer(spec)
    system = current_system_prompt(ws).text
    longest = prompts_fit(config, tokenizer, [p["prompt"] for p in pairs], system=system)
    answer = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for p in pairs for a in (p["chosen"], p["rejected"]))
    sequence = config.max_length or padded_length(longest + answer + 8)
    return Preflight({"train": train_file, **({"eval": held} if held else {}), **system_input(ws)}, device_notes(config),
                     {"start_model": spec.name, "pairs": len(pairs), "training_pairs": train_rows,
                      "longest_prompt_tokens": longest,
                      **memory_fits(config, settings, spec, shape_of(config), sequence)})


def memory_shape(config) -> Shape:
    return Shape(sequences_per_row=2, vocab_logits=False)  # chosen and rejected; a one-logit head


def preflight(config: Config, settings: Settings) -> Preflight:
    return preference_preflight(config, settings, memory_shape)


def split_pairs(config, job) -> tuple[list[dict], list[dict]]:
    pairs = rows_of.preference_pairs(job.input("train"))
    if job.input("eval"):
        return pairs, rows_of.preference_pairs(job.input("eval"))
    if config.eval_dataset.lower() == rows_of.NONE:
        return pairs, []
    return rows_of.held_out_split(pairs, config.eval_fraction, config.seed)


def pair_max_length(tokenizer, pairs, model_config, system: str = "") -> int:
    from workbench.train.modeling import length_from_data

    longest = 0
    for p in pairs:
        for answer in (p["chosen"], p["rejected"]):
            ids = tokenizer.apply_chat_template(chat_messages(p["prompt"], system) + [{"role": "assistant", "content": answer}],
                                                tokenize=True, return_dict=True)["input_ids"]
            longest = max(longest, len(ids))
    return length_from_data(longest, model_config)


def pair_setup(config, job, head: str = "causal-lm"):
    """What DPO and the reward model load before their trainer: precision, start model, tokenizer,
    training and held-out pairs, the model (with ``head``), max length and checkpointing."""
    from workbench.train.modeling import (choose_precision, count_parameters, load_model, load_tokenizer,
                                          use_gradient_checkpointing)

    precision = choose_precision(config.precision)
    spec = start_model(job.settings, config.model)
    tokenizer = load_tokenizer(spec)
    pairs, held = split_pairs(config, job)
    originals = [p["prompt"] for p in pairs + held]
    cut = dict(zip(originals, cut_prompts(config, tokenizer, originals, job.log, job.system)))
    pairs, held = ([dict(p, prompt=cut[p["prompt"]]) for p in rows] for rows in (pairs, held))
    job.log(f"{len(pairs)} training pairs, {len(held)} held out")
    model = load_model(spec, config, precision, head=head, pad_token_id=tokenizer.pad_token_id)
    max_length = config.max_length or pair_max_length(tokenizer, pairs + held, model.config, job.system)
    checkpointing = use_gradient_checkpointing(config, count_parameters(model))
    job.log_start(config, model, precision, checkpointing, max_length=max_length)
    return precision, spec, tokenizer, pairs, held, model, max_length, checkpointing


def train(config: Config, job) -> dict:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from workbench.train.job import changed_count, trainable_snapshot
    from workbench.train.modeling import lora_config
    from workbench.train.scoring import pair_metrics

    precision, spec, tokenizer, pairs, held, model, max_length, checkpointing = pair_setup(config, job, "classifier")
    args = job.training_args(RewardConfig, config, precision, checkpointing, bool(held), max_length=max_length)
    callback = job.callback(config)
    trainer = RewardTrainer(model=model, args=args,
                            train_dataset=Dataset.from_list([rows_of.conversational_pair(p, job.system) for p in pairs]),
                            eval_dataset=Dataset.from_list([rows_of.conversational_pair(p, job.system) for p in held])
                            if held else None,
                            processing_class=tokenizer, peft_config=lora_config(config, model.config, "SEQ_CLS"),
                            callbacks=[callback])
    metrics = {f"before_{k}": v for k, v in pair_metrics(trainer.model.eval(), tokenizer, held, system=job.system).items()
               if k != "pairs"}
    before = trainable_snapshot(trainer.model)
    metrics.update(job.fit(trainer, callback))
    metrics.update(changed_count(trainer.model, before))
    merged = trainer.model.merge_and_unload().eval()
    metrics.update({f"eval_{k}": v for k, v in pair_metrics(merged, tokenizer, held, system=job.system).items()})
    if held:
        metrics["held_out"] = len(held)
        job.log(f"held-out accuracy {metrics['eval_accuracy']:.3f} (before {metrics['before_accuracy']:.3f}), "
                f"margin {metrics['eval_margin']:.3f}")
        job.reporter.metrics(trainer.state.global_step, eval_accuracy=metrics["eval_accuracy"],
                             eval_margin=metrics["eval_margin"])
    if job.main:
        def write(folder):
            merged.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)

        folder = job.save_output(config, METHOD, "reward-model", spec, write, metrics,
                                 {"precision": precision.name, "held_out": "file" if job.input("eval") else
                                  f"split of {config.eval_fraction:g}" if held else "none"})
        metrics["output"] = str(folder)
    return metrics
