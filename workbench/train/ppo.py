"""PPO, the seed's RLHF step, with TRL 1.12's ``trl.experimental.ppo``: a LoRA policy starting
from the base or an SFT model samples answers to the prompts of the preference data, the trained
reward model scores them, and a value model initialised from the reward model estimates returns;
a KL term holds the policy near its start. Curves: mean reward, KL, entropy, value loss, answer
length. TRL's PPO trainer cannot resume: Resume here continues the step count from the newest
checkpoint's policy adapter, with the value model and the optimizer started afresh."""
from __future__ import annotations

from dataclasses import dataclass

from workbench.chat.prompt import chat_messages
from workbench.kinds import Preflight, Watch
from workbench.settings import Settings
from workbench.train import data as rows_of
from workbench.train.config import TrainConfig, option
from workbench.train.online import prompt_preflight, reward_model_spec
from workbench.train.launch import run_in_child
from workbench.train.memory import Shape
from workbench.train.preflight import cut_prompts, start_model

run = run_in_child  # the job: the worker starts train() in a torchrun child
read_rows = rows_of.prompts  # how the method reads its data file (the Train tab's preview too)
ROWS = "prompts"  # what one row of it is
METHOD = "ppo"
WATCH = Watch(("reward", "kl"))  # no held-out figure: the sentence reads the reward curve
NEEDS = "Prompts (a preference file or prompt-only rows) and a trained reward model, which also initialises the value model."
ALIASES = {"objective/scores": "reward", "objective/kl": "kl", "policy/entropy_avg": "entropy",
           "loss/value_avg": "value_loss", "loss/policy_avg": "policy_loss"}


@dataclass
class Config(TrainConfig):
    dataset: str = option("dataset_rlhf.jsonl", "prompts: preference pairs or prompt-only rows under data/", "data")
    eval_dataset: str = option("none", "not used by PPO", "data")
    output_name: str = option("llama-rlhf", "folder under models/ for the policy adapter", "output")
    learning_rate: float = option(1e-5, "peak learning rate")
    reward_model: str = option("reward_model", "the reward model's name under models/ (also the value model's start)", "method")
    max_completion_length: int = option(64, "max new tokens per answer", "method")
    temperature: float = option(0.7, "sampling temperature", "method")
    kl_coef: float = option(0.05, "KL penalty toward the start model", "method")
    ppo_epochs: int = option(4, "optimisation passes over each batch of answers", "method")
    missing_eos_penalty: float = option(1.0, "score subtracted from answers that never end (0 = none)", "method")

    def validate(self) -> None:
        super().validate()
        if self.num_processes > 1:
            raise ValueError("TRL 1.12's PPO trainer does not run data-parallel (its DDP-wrapped model has no "
                             "policy); use num_processes=1, or GRPO for several processes")
        if not self.reward_model.strip():
            raise ValueError("PPO needs a reward_model (train one with `workbench train reward`)")
        if self.max_completion_length < 1 or self.temperature <= 0 or self.kl_coef < 0 or self.ppo_epochs < 1:
            raise ValueError("max_completion_length and ppo_epochs must be >= 1, temperature > 0, kl_coef >= 0")


def preflight(config: Config, settings: Settings) -> Preflight:
    return prompt_preflight(config, settings, config.reward_model.strip(), memory_shape)


def memory_shape(config: Config) -> Shape:
    return Shape(sequences_per_row=1, other_models=("reward", "value"))


def _trainer_class():
    from trl.experimental.ppo import PPOTrainer

    class ResumablePPOTrainer(PPOTrainer):
        """Names checkpoints by the whole run's step after a resume (TRL's loop counts from 0)."""

        step_offset = 0

        def _save_checkpoint(self, model, trial):
            self.state.global_step += self.step_offset
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.state.global_step -= self.step_offset

    return ResumablePPOTrainer


def _resume_policy(trainer, checkpoint, job) -> int:
    """Load the policy adapter saved in ``checkpoint``; returns its step."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from storage.runs import checkpoint_step

    weights = load_file(str(checkpoint / "adapter_model.safetensors"))
    set_peft_model_state_dict(trainer.policy_model, weights)
    job.log(f"resuming from {checkpoint.name}: policy adapter loaded; the value model and optimizer restart")
    return checkpoint_step(checkpoint)


def train(config: Config, job) -> dict:
    from datasets import Dataset
    from trl.experimental.ppo import PPOConfig

    from workbench.train.job import changed_count, trainable_snapshot
    from workbench.train.modeling import (choose_precision, count_parameters, load_tokenizer, lora_config,
                                          use_gradient_checkpointing)

    precision = choose_precision(config.precision, job.settings.workspace)
    spec = start_model(job.settings, config.model)
    tokenizer = load_tokenizer(spec)
    tokenizer.padding_side = "left"
    prompts = cut_prompts(config, tokenizer, rows_of.prompts(job.input("train")), job.log, job.system)
    folder, _ = reward_model_spec(job.settings, config.reward_model.strip(), tokenizer)
    reward = job.load_scorer(folder, precision, tokenizer.pad_token_id, "reward")
    value = job.load_scorer(folder, precision, tokenizer.pad_token_id, "value")
    policy = job.load_policy(spec, config, precision)
    checkpointing = use_gradient_checkpointing(config, count_parameters(policy))
    job.log_start(config, policy, precision, checkpointing)
    rendered = [tokenizer.apply_chat_template(chat_messages(p, job.system), tokenize=True, add_generation_prompt=True,
                                              return_dict=True)["input_ids"] for p in prompts]
    dataset = Dataset.from_list([{"input_ids": ids} for ids in rendered])
    steps = job.steps(config, len(prompts))
    args = job.training_args(PPOConfig, config, precision, checkpointing, False, len(prompts),
                             total_episodes=steps * config.rows_per_step(job.world_size),
                             response_length=config.max_completion_length,
                             stop_token="eos", temperature=config.temperature, kl_coef=config.kl_coef,
                             num_ppo_epochs=config.ppo_epochs, num_mini_batches=1,
                             missing_eos_penalty=config.missing_eos_penalty or None,
                             local_rollout_forward_batch_size=config.batch_size, num_sample_generations=0)
    callback = job.callback(config)
    callback.aliases = ALIASES
    trainer = _trainer_class()(args=args, processing_class=tokenizer, model=policy, ref_model=None, reward_model=reward,
                         value_model=value, train_dataset=dataset, peft_config=lora_config(config, policy.config),
                         callbacks=[callback])
    if job.resume_from:
        done = _resume_policy(trainer, job.resume_from, job)
        callback.step_offset = trainer.step_offset = done
        trainer.args.num_total_batches = max(1, steps - done)
    snapshot = trainable_snapshot(trainer.policy_model)
    metrics = job.fit(trainer, callback, resumable=False)
    metrics.update(changed_count(trainer.policy_model, snapshot))
    if job.main:
        target = job.save_adapter(config, METHOD, trainer.policy_model, tokenizer, spec, metrics,
                                 {"precision": precision.name, "reward_model": config.reward_model,
                                  "value_model": f"initialised from {config.reward_model}"})
        metrics["output"] = str(target)
    return metrics
