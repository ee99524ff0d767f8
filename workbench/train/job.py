"""What a training method's ``train`` gets in the training child: its run record, reporter,
inputs, rank, the TRL arguments every method shares, the fit with resume and cancel, and the
output folder with its manifest (written aside, renamed into ``models/`` only on success)."""
from __future__ import annotations

import dataclasses
import functools
import math
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

from storage.documents import sha256_file
from workbench.chat.system_prompt import SystemPrompt, launched_with
from workbench.job_context import JobContext
from workbench.models.loading import ModelSpec, lineage
from workbench.safe_text import counted
from workbench.train.callback import BestKept, RunCallback
from workbench.train.config import TrainConfig, optimizer_steps, passes
from workbench.train.modeling import Precision, trainable_in_fp32
from workbench.train.output import publish

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes")
KEEP_BEST_EVALUATIONS = 4  # held-out evaluations in a run that keeps its best step


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def peak_memory() -> dict[str, float]:
    """This process's peak resident memory, and the GPU's peak allocation when there is one."""
    import resource

    import torch

    out = {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def trainable_snapshot(model) -> dict[str, Any]:
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def changed_count(model, snapshot: dict[str, Any]) -> dict[str, int]:
    """How many of the tensors that were trainable moved during training (all should)."""
    import torch

    current = dict(model.named_parameters())
    moved = sum(1 for n, before in snapshot.items()
                if n in current and not torch.equal(current[n].detach().float().cpu(), before.cpu()))
    return {"trainable_tensors": len(snapshot), "trainable_changed": moved}


@dataclass(frozen=True)
class TrainJob(JobContext):
    """A training rank's context in the child: the job's, with the rank and what it loaded."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank's index on its machine: its GPU
    curves: tuple[str, ...] = ("loss",)  # the method's curves (its ``WATCH``): what its log lines show
    models_loaded: list[str] = field(default_factory=list)  # what the memory estimate must count

    @property
    def main(self) -> bool:
        return self.rank == 0

    def input(self, role: str) -> Path | None:
        path = self.run.folder / "inputs" / f"{role}.jsonl"
        return path if path.is_file() else None

    @functools.cached_property
    def system_prompt(self) -> SystemPrompt:
        """The workspace's system prompt as it was when the run was launched."""
        return launched_with(self.run.folder)

    @property
    def system(self) -> str:
        """The system prompt's text ("" when none)."""
        return self.system_prompt.text

    def log(self, message: str) -> None:
        self.reporter.log(message)

    # models -----------------------------------------------------------------------------
    def load_policy(self, spec: ModelSpec, config: TrainConfig, precision: Precision, **kwargs: Any):
        """The model the method trains (``modeling.load_model``: a language model, or with
        ``head="classifier"`` the reward model's)."""
        from workbench.train.modeling import load_model

        self.models_loaded.append("policy")
        return load_model(spec, config, precision, gpu=self.local_rank, **kwargs)

    def load_scorer(self, folder: Path, precision: Precision, pad_token_id: int | None, role: str):
        """A full one-logit scoring model loaded beside the policy: GRPO's reward model, PPO's
        reward and value models (``role``). The method's ``memory_shape`` counts each one."""
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=precision.dtype,
                                                                   use_safetensors=True, trust_remote_code=False)
        model.config.pad_token_id = pad_token_id
        self.models_loaded.append(role)
        return model

    # trainer arguments ------------------------------------------------------------------
    def steps(self, config: TrainConfig, rows: int) -> int:
        """Optimizer steps of a run over ``rows`` rows (all ranks together)."""
        return optimizer_steps(config, rows, self.world_size)

    @staticmethod
    def best_kept(config: TrainConfig, held: list, *keys: tuple[str, bool]) -> BestKept | None:
        """What ends the run on the weights of its best held-out evaluation by ``keys`` (see
        ``BestKept``): with ``keep_best`` and held-out rows, else None."""
        return BestKept(*keys, patience=config.early_stopping_patience) if held and config.keep_best else None

    def training_args(self, cls, config: TrainConfig, precision: Precision, gradient_checkpointing: bool,
                      has_eval: bool, rows: int, best: BestKept | None = None, **extra: Any):
        """A TRL config (``SFTConfig``, ``DPOConfig``, ...) with the settings all methods share:
        checkpoints in the run folder, no outside reporting, the device's precision, the passes
        over ``rows`` training rows (``passes``). With ``best``: evaluate on the held-out
        rows ``KEEP_BEST_EVALUATIONS`` times a run (unless ``eval_steps`` says otherwise)."""
        from workbench.train.modeling import cuda_available

        epochs = passes(config, rows, self.world_size)
        if not config.epochs and not config.max_steps:
            self.log(f"{epochs:g} pass(es) over {rows} rows: {self.steps(config, rows)} steps "
                     "(epochs 0: as many as the data needs)")
        eval_steps = config.eval_steps
        if has_eval and best is not None and not eval_steps:
            eval_steps = max(1, math.ceil(self.steps(config, rows) / KEEP_BEST_EVALUATIONS))
        evaluate = "steps" if has_eval and eval_steps else "no"
        return cls(output_dir=str(self.run.checkpoints), per_device_train_batch_size=config.batch_size,
                   per_device_eval_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
                   learning_rate=config.learning_rate, num_train_epochs=epochs,
                   max_steps=config.max_steps or -1, warmup_steps=config.warmup_ratio,  # < 1: a ratio
                   seed=config.seed,
                   logging_steps=config.logging_steps, logging_first_step=True, save_strategy="steps",
                   save_steps=config.save_steps, save_total_limit=3, eval_strategy=evaluate,
                   eval_steps=eval_steps or None, report_to="none", disable_tqdm=True,
                   bf16=precision.bf16, fp16=precision.fp16, use_cpu=not cuda_available(),
                   activation_checkpointing=gradient_checkpointing,
                   activation_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
                   dataloader_num_workers=0, ddp_find_unused_parameters=False,
                   **extra)

    def log_start(self, config: TrainConfig, model, precision: Precision, checkpointing: bool, **details: Any) -> None:
        from workbench.train.modeling import count_parameters

        quantized = ", 4-bit NF4 (QLoRA)" if config.quantization == "4bit" else ""
        extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in details.items())
        self.log(f"start model {config.model} ({count_parameters(model):,} parameters{quantized}), {precision.name}, "
                 f"gradient checkpointing {'on' if checkpointing else 'off'}, {self.world_size} process(es){extra}")

    def callback(self, config: TrainConfig) -> RunCallback:
        """The run's callback; a step's log line gives the method's curves, a held-out evaluation's
        their held-out values and the held-out loss."""
        held_out = tuple(c if c.startswith("eval_") else f"eval_{c}" for c in self.curves)
        return RunCallback(self.reporter, config.rows_per_step(self.world_size),
                           shown=tuple(dict.fromkeys(self.curves + held_out + ("eval_loss",))))

    @staticmethod
    def quiet(trainer) -> None:
        """The run's own callback writes the log; the trainer's printer would repeat it."""
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)

    def fit(self, trainer, callback: RunCallback, resumable: bool = True,
            best: BestKept | None = None) -> dict[str, Any]:
        """Train (from the checkpoint being resumed, if any: ``resumable`` trainers only; PPO
        restores its policy itself); the callback raises ``Cancelled`` once a cancel has saved its
        checkpoint. ``best`` (added to the trainer's callbacks): the weights end as those of the
        held-out evaluation that scored best, the last step evaluated too, the evaluations before a
        resume included (each checkpoint carries them). Returns the step count
        of the whole run, the final train loss (a trainer that reports one), time, memory, the
        models the method loaded and the step kept."""
        self.quiet(trainer)
        resume = str(self.resume_from) if self.resume_from and resumable else None
        if resume:
            self.log(f"resuming from {self.resume_from.name}")
        if best is not None:
            callback.checkpoint_parts.append(best.save)
            if resume and best.load(self.resume_from):
                self.log(f"held-out {best.key} before the resume: {best.by_step()}; best step {best.step}")
        started = time.perf_counter()
        with trainable_in_fp32(trainer.model) as cast:
            if cast:
                self.log(f"{counted(cast, 'trainable tensor')} of the half-precision model (a new head) "
                         "trained in fp32")
            output = trainer.train(resume_from_checkpoint=resume) if resumable else trainer.train()
            loss = getattr(output, "training_loss", None)  # PPO's train() returns nothing
            metrics = {"global_step": callback.step_offset + trainer.state.global_step,
                       **({"train_loss": loss} if loss is not None else {}),
                       "train_seconds": round(time.perf_counter() - started, 2), "world_size": self.world_size,
                       "models_loaded": list(self.models_loaded), **peak_memory()}
            if best is not None and best.seen:
                if best.seen[-1][0] != trainer.state.global_step:
                    trainer.evaluate()  # the last step is a candidate too
                if best.step != trainer.state.global_step:
                    best.restore(trainer.model)
                if best.stopped_at is not None:
                    self.log(f"stopped early at step {best.stopped_at}: {counted(best.patience, 'evaluation')} "
                             f"in a row did not beat step {best.step} (early_stopping_patience)")
                    metrics["stopped_early_at"] = best.stopped_at
                self.log(f"held-out {best.key} by step: {best.by_step()}; kept step {best.step}")
                metrics.update(kept_step=best.step, **{f"kept_{best.key}": best.best})
        return metrics

    # output -----------------------------------------------------------------------------
    def save_adapter(self, config: TrainConfig, method: str, model, tokenizer, start: ModelSpec,
                     metrics: dict[str, Any], extra: dict | None = None) -> Path:
        """Publish a PEFT adapter with its tokenizer (rank 0 only: the caller checks ``main``)."""
        def write(folder: Path) -> None:
            model.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)

        return self.save_output(config, method, "adapter", start, write, metrics, extra)

    def save_output(self, config: TrainConfig, method: str, kind: str, start: ModelSpec,
                    write: Callable[[Path], None], metrics: dict[str, Any], extra: dict | None = None) -> Path:
        """Publish ``models/<output_name>``: the model written by ``write(folder)``, a copy of the
        rows it learnt from and a manifest of its lineage, data (with sha256), config and metrics."""
        def write_all(folder: Path) -> None:
            write(folder)
            for role in ("train", "eval"):
                source = self.input(role)
                if source is not None:
                    (folder / "data").mkdir(exist_ok=True)
                    shutil.copy2(source, folder / "data" / f"{role}.jsonl")

        datasets = {}
        for role in ("train", "eval"):
            source = self.input(role)
            if source is not None:
                with source.open("rb") as lines:
                    rows = sum(1 for line in lines if line.strip())
                datasets[role] = {"file": config.dataset if role == "train" else (config.eval_dataset or "(default)"),
                                  "sha256": sha256_file(source), "copy": f"data/{role}.jsonl", "rows": rows}
        manifest = {
            "name": config.output_name, "kind": kind, "method": method,
            "base": self.settings.base_model or "base", "parent": config.model,
            "lineage": lineage(self.workspace, config.model),
            "dataset": datasets.get("train"), "eval_dataset": datasets.get("eval"),
            "config": dataclasses.asdict(config), "run_id": self.run.id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "metrics": metrics, "versions": library_versions(),
            "system_prompt": self.system_prompt._asdict(), **(extra or {})}
        target = publish(self.workspace, config.output_name, config.overwrite, self.run.id, write_all, manifest)
        self.log(f"saved {target}")
        return target
