"""The settings every training method shares, as TRL shapes them: one config class per method
on one base. The class is the single source of defaults for the CLI flags, the Train tab's form
and the validation."""
from __future__ import annotations

import math
from dataclasses import dataclass

from workbench import configs

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
QUANTIZATIONS = ("none", "4bit")
SWITCH = ("auto", "on", "off")
# Passes over the data when ``epochs`` is 0: a small set gets at least ``min_steps`` optimizer
# steps (AUTO_MIN_STEPS unless a method says otherwise), in at most AUTO_MAX_EPOCHS passes
# (benchmarks/few_votes.py).
AUTO_MIN_STEPS = 32
AUTO_MAX_EPOCHS = 6
MIN_STEPS_HELP = f"optimizer steps a run takes at least when epochs is 0 (in at most {AUTO_MAX_EPOCHS} passes)"
EARLY_STOPPING_HELP = ("held-out evaluations in a row that do not beat the best after which a run that keeps its "
                       "best step stops (0 = it runs all its steps)")


def option(default, help: str, group: str = "training", choices=None, **kwargs):
    return configs.option(default, help, group, choices, **kwargs)


@dataclass
class TrainConfig:
    model: str = option("base", "start model: base, or the name of a trained model (e.g. an SFT adapter)", "model")
    dataset: str = option("train.jsonl", "training rows: a file under data/", "data")
    eval_dataset: str = option("", "held-out rows under data/ ('' = the method's default, 'none' = no evaluation)", "data")
    output_name: str = option("model", "folder under models/ for the result", "output")
    overwrite: bool = option(False, "replace a model of the same name (only once the run succeeds)", "output")
    learning_rate: float = option(2e-4, "peak learning rate")
    epochs: float = option(0.0, f"passes over the data (0 = as many as the data needs: at least min_steps "
                                f"steps, at most {AUTO_MAX_EPOCHS} passes; ignored when max_steps > 0)")
    min_steps: int = option(AUTO_MIN_STEPS, MIN_STEPS_HELP)
    max_steps: int = option(0, "optimizer steps (0 = from epochs)")
    batch_size: int = option(4, "rows per device per step")
    grad_accum: int = option(1, "gradient accumulation steps")
    max_length: int = option(0, "max tokens per row (0 = from the data)")
    max_prompt_length: int = option(1024, "prompt tokens kept: a longer RAG prompt loses the end of its "
                                          "retrieved context, a plain one its beginning (0 = whole prompts)")
    warmup_ratio: float = option(0.0, "share of steps spent warming up the learning rate")
    seed: int = option(42, "random seed")
    lora_r: int = option(16, "LoRA rank", "lora")
    lora_alpha: int = option(32, "LoRA alpha", "lora")
    lora_dropout: float = option(0.05, "LoRA dropout", "lora")
    lora_targets: list[str] = option([], "modules LoRA adapts (empty = the architecture's attention and MLP projections)", "lora")
    quantization: str = option("none", "4bit = QLoRA (NF4 through bitsandbytes; CUDA GPU)", "lora", QUANTIZATIONS)
    precision: str = option("auto", "auto = bf16 where the GPU supports it, else fp16 on GPU; on CPU bf16 where "
                                         "the workspace's recorded choice for this CPU says it pays, else fp32",
                                 "device", PRECISIONS)
    gradient_checkpointing: str = option("auto", "auto = on for QLoRA and for models over 1B parameters on a GPU", "device", SWITCH)
    num_processes: int = option(1, "training processes (torchrun; data parallel over GPUs, or gloo on CPU)", "device")
    save_steps: int = option(50, "steps between checkpoints (resume points)", "checkpoints")
    eval_steps: int = option(0, "steps between evaluations (0 = at the end only, or 4 a run with keep_best)", "checkpoints")
    keep_best: bool = option(True, "end on the weights that scored best on the held-out rows, evaluated 4 times a "
                                   "run, rather than on the last step (methods with held-out rows)", "checkpoints")
    early_stopping_patience: int = option(0, EARLY_STOPPING_HELP, "checkpoints")
    logging_steps: int = option(1, "steps between metric points", "checkpoints")

    def rows_per_step(self, world_size: int = 1) -> int:
        """Training rows one optimizer step takes (all ranks together)."""
        return self.batch_size * self.grad_accum * world_size

    def steps_per_pass(self, rows: int, world_size: int = 1) -> int:
        """Optimizer steps in one pass over ``rows`` rows."""
        return math.ceil(rows / self.rows_per_step(world_size))

    def too_few_rows(self, rows: int, what: str) -> str | None:
        """Why ``rows`` training rows cannot fill a micro-batch, or None."""
        if self.batch_size > rows:
            return (f"batch_size {self.batch_size} is larger than the data ({rows} {what}): "
                    f"lower batch_size to {rows} or add {what}")
        return None

    def validate(self) -> None:
        problems = []
        if self.lora_r < 1:
            problems.append("lora_r must be at least 1")
        if self.lora_alpha < 1:
            problems.append("lora_alpha must be at least 1")
        if not 0 <= self.lora_dropout < 1:
            problems.append("lora_dropout must be in [0, 1)")
        if self.learning_rate <= 0 or self.learning_rate > 1:
            problems.append("learning_rate must be in (0, 1]")
        if self.epochs < 0:
            problems.append("epochs cannot be negative (0 = as many as the data needs)")
        if min(self.max_steps, self.max_length, self.eval_steps, self.max_prompt_length, self.early_stopping_patience) < 0:
            problems.append("max_steps, max_length, max_prompt_length, eval_steps and early_stopping_patience "
                            "cannot be negative")
        if 0 < self.max_prompt_length < 16:
            problems.append("max_prompt_length must be 0 (whole prompts) or at least 16 tokens")
        if self.batch_size < 1 or self.grad_accum < 1 or self.min_steps < 1:
            problems.append("batch_size, grad_accum and min_steps must be at least 1")
        if self.save_steps < 1 or self.logging_steps < 1:
            problems.append("save_steps and logging_steps must be at least 1")
        if not 1 <= self.num_processes <= 64:
            problems.append("num_processes must be between 1 and 64")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if not self.output_name.strip() or self.output_name.strip() in ("base", ".", ".."):
            problems.append("output_name must name a new folder under models/ (not 'base')")
        if problems:
            raise ValueError("; ".join(problems))


def passes(config: TrainConfig, rows: int, world_size: int = 1) -> float:
    """The passes over ``rows`` rows a run makes: ``epochs``, or when it is 0 enough for
    ``min_steps`` optimizer steps, within 1 and ``AUTO_MAX_EPOCHS``. 47 preference pairs at
    the default batch of 4 take 12 steps a pass: one pass taught the reward model little."""
    if config.epochs > 0:
        return config.epochs
    per_pass = max(1, config.steps_per_pass(rows, world_size))
    return float(min(AUTO_MAX_EPOCHS, max(1, math.ceil(config.min_steps / per_pass))))


def optimizer_steps(config: TrainConfig, rows: int, world_size: int = 1) -> int:
    """The optimizer steps of a run over ``rows`` rows: ``max_steps``, else its passes' worth."""
    per_pass = config.steps_per_pass(rows, world_size)
    return config.max_steps or max(1, math.ceil(passes(config, rows, world_size) * per_pass))
