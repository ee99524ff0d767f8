"""The one ``TrainerCallback`` that feeds the run record: every logged value (loss, reward, KL,
learning rate, grad norm, eval metrics) plus throughput into ``metrics.jsonl``, progress in
steps, the cancel flag checked after every step, and the completeness marker on checkpoints
(after the parts other callbacks add to a checkpoint, ``checkpoint_parts``). Only rank 0 writes;
the cancel decision is shared by all ranks so they stop on the same step. ``BestKept`` keeps the
weights of the best held-out evaluation, and writes what it knows into each checkpoint so that a
resumed run still ends on the best step of the whole run."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback

from workbench.safe_text import counted

SKIP = {"total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


def _distributed():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def any_rank(flag: bool, device) -> bool:
    """True on every rank when it is true on any (a collective: every rank must call it)."""
    dist = _distributed()
    if dist is None:
        return flag
    import torch

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value)
    return bool(value.item() > 0)


class RunCallback(TrainerCallback):
    """``step_offset`` shifts the steps of a trainer that counts from 0 again when resumed (PPO);
    ``aliases`` renames logged values to the names the curves use; ``shown``: the values a log
    line gives (the method's curves and their held-out counterparts); ``checkpoint_parts`` are
    written into each checkpoint folder (rank 0) before its completeness marker."""

    def __init__(self, reporter, rows_per_step: int, shown: tuple[str, ...] = ("loss", "eval_loss")):
        self.reporter = reporter
        self.rows_per_step = rows_per_step
        self.shown = shown  # the values a step's log line gives (all go to metrics.jsonl)
        self.cancelled = False
        self.step_offset = 0
        self.aliases: dict[str, str] = {}
        self.checkpoint_parts: list[Callable[[Path], None]] = []
        self._mark = (0, time.perf_counter())

    def _steps(self, state) -> tuple[int, int]:
        return state.global_step + self.step_offset, state.max_steps + self.step_offset

    def on_train_begin(self, args, state, control, **kwargs):
        step, total = self._steps(state)
        self._mark = (step, time.perf_counter())
        if state.is_world_process_zero:
            self.reporter.progress(step, total, f"step {step}/{total}")
            self.reporter.log(f"training: {counted(total, 'step')}, {counted(self.rows_per_step, 'row')} a step"
                              + (f", resuming at step {step}" if step else ""))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        values = {self.aliases.get(k, k): v for k, v in logs.items()
                  if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)}
        (step, total), now = self._steps(state), time.perf_counter()
        last_step, last_time = self._mark
        if step > last_step and now > last_time and not any(k.startswith("eval_") for k in values):
            values["steps_per_s"] = (step - last_step) / (now - last_time)
            values["samples_per_s"] = values["steps_per_s"] * self.rows_per_step
            self._mark = (step, now)
        if values:
            self.reporter.metrics(step, **values)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k in self.shown)
        if shown:  # an evaluation before the first step (a trainer's max_steps is 0 until it trains)
            self.reporter.log(f"{f'step {step}/{total}' if total else 'before training'}: {shown}")

    def on_step_end(self, args, state, control, **kwargs):
        step, total = self._steps(state)
        if state.is_world_process_zero:
            self.reporter.progress(step, total, f"step {step}/{total}")
        if any_rank(self.reporter.cancel_requested(), args.device):
            self.cancelled = True
            control.should_save = True  # a resumable checkpoint at the step where it stopped
            control.should_training_stop = True
            if state.is_world_process_zero:
                self.reporter.log(f"cancel requested: saving step {step} and stopping")
        return control

    def on_save(self, args, state, control, **kwargs):
        dist = _distributed()
        if dist is not None:
            dist.barrier()  # every rank has written its part (its RNG state) before the marker
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{self._steps(state)[0]}"
            if folder.is_dir():
                for write in self.checkpoint_parts:
                    write(folder)
                self.reporter.checkpoint_complete(folder)
        if self.cancelled:  # the checkpoint is whole: stop here (trainers that ignore should_training_stop too)
            from workbench.reporting import Cancelled

            raise Cancelled(f"cancelled by user at step {self._steps(state)[0]}")


class BestKept(TrainerCallback):
    """Keeps, in memory, the trainable weights (LoRA, a reward head) of the held-out evaluation
    that scored best on ``keys`` (``(name, higher_is_better)``, the next breaking ties), so a run
    on a few votes ends on its best step rather than its last: several passes over a small set
    can overfit. With ``patience``, the run stops once that many evaluations in a row have not
    beaten the best (early stopping): its weights end as the best's either way. ``save`` writes
    the checks seen and the best weights into a checkpoint folder and ``load`` reads them back, so a
    run resumed from that checkpoint weighs the checks made before it too."""

    FILES = ("best_kept.json", "best_kept.safetensors")

    def __init__(self, *keys: tuple[str, bool], patience: int = 0):
        self.keys = keys
        self.key = keys[0][0]
        self.patience = patience
        self.best: float | None = None
        self._score: tuple | None = None
        self.step = 0
        self.weights: dict | None = None
        self.seen: list[tuple[int, float]] = []
        self.stopped_at: int | None = None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        values = [(metrics or {}).get(name) for name, _ in self.keys]
        if not isinstance(values[0], (int, float)) or model is None:
            return
        self.seen.append((state.global_step, float(values[0])))
        score = tuple((v if higher else -v) if isinstance(v, (int, float)) else float("-inf")
                      for v, (_, higher) in zip(values, self.keys))
        if self._score is None or score > self._score:
            self._score, self.best, self.step = score, float(values[0]), state.global_step
            self.weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        elif self.patience and sum(1 for step, _ in self.seen if step > self.step) >= self.patience \
                and state.global_step < state.max_steps:
            self.stopped_at = state.global_step
            control.should_training_stop = True  # every rank evaluates the same rows: they stop together
        return control

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.keys]

    def by_step(self) -> str:
        """The checks seen, as the log gives them: ``2: 0.6, 4: 0.8``."""
        return ", ".join(f"{step}: {value:.4g}" for step, value in self.seen)

    def save(self, folder: Path) -> None:
        if self.weights is None:
            return
        from safetensors.torch import save_file

        state, weights = (folder / name for name in self.FILES)
        save_file({name: tensor.contiguous() for name, tensor in self.weights.items()}, str(weights))
        state.write_text(json.dumps({"keys": self.names, "step": self.step, "best": self.best,
                                     "score": list(self._score or ()), "seen": self.seen}))

    def load(self, folder: Path) -> bool:
        """Take up the checks of the run a checkpoint comes from; False when it holds none (saved
        before its first held-out evaluation, or by a run that kept no best)."""
        state, weights = (folder / name for name in self.FILES)
        if not (state.is_file() and weights.is_file()):
            return False
        saved = json.loads(state.read_text())
        if saved["keys"] != self.names:
            return False
        from safetensors.torch import load_file

        self.weights = load_file(str(weights))
        self.step, self.best, self._score = saved["step"], saved["best"], tuple(saved["score"])
        self.seen = [(int(step), float(value)) for step, value in saved["seen"]]
        return True

    def restore(self, model) -> None:
        import torch

        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if self.weights and name in self.weights:
                    parameter.copy_(self.weights[name])
