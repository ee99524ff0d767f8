"""A memory and time estimate for a training config on this device, before launching: memory
from ``train.memory`` (the micro-batch that fits in what is free now, as the launch will pick
it); time from this method's measured speed in earlier runs when there are some, else from the
FLOPs of a step at a conservative device throughput."""
from __future__ import annotations

import os
import statistics
from typing import Any

from storage import RunStore, Workspace
from workbench.safe_text import counted
from workbench.train import memory

CPU_FLOPS_PER_CORE = 2.5e10  # fp32, sustained in PyTorch training on a recent x86 core
GPU_FLOPS = {"bf16": 2.0e14, "fp16": 2.0e14, "fp32": 3.0e13}  # well below peak: realistic training


def speed_options(options: dict[str, Any]) -> tuple[bool, bool]:
    """What in a preference method's options changes a step's time several-fold at the same data:
    pairs packed, and prompts run without gradients (which needs them packed). A run recorded
    before an option existed had it on."""
    packed = options.get("share_prompt", True) is not False
    return packed, packed and options.get("prompt_gradients", True) is False


def measured_step_seconds(workspace: Workspace, kind: str, config) -> float | None:
    """The time a step of ``config`` takes, from the median speed of earlier runs of this method
    on this start model with the same ``speed_options``, precision and processes, in rows a
    second: a run of another effective batch (batch_size x grad_accum) takes as much longer."""
    rates, wanted = [], (speed_options(vars(config)), config.precision, config.num_processes)
    for run in RunStore(workspace.runs).all()[:50]:
        recorded = run.config()
        if not isinstance(recorded, dict) or recorded.get("kind") != kind:
            continue
        options = recorded.get("config") or {}
        if options.get("model") != config.model or \
                (speed_options(options), options.get("precision", "auto"), options.get("num_processes", 1)) != wanted:
            continue
        rows = (options.get("batch_size") or 1) * (options.get("grad_accum") or 1)
        rates += [m["steps_per_s"] * rows for m in run.metrics() if m.get("steps_per_s")]
    return config.batch_size * config.grad_accum / statistics.median(rates) if rates else None


def estimate(kind: str, config, model_path: str, rows: int, workspace: Workspace,
             cuda: bool, sequence: int, shape, available: int, cores: int = 2, completion: int = 0,
             others: int | None = None, where: str = "") -> dict[str, Any]:
    """Memory (``train.memory``: the micro-batch that fits in ``available`` bytes, ``where`` says
    which) and time of a run of ``config`` (the method's ``TrainConfig``) over ``rows`` rows at
    ``sequence`` tokens (``completion``: the longest answer's, where only they get logits;
    ``others``: the parameters of the models loaded beside the policy, as ``memory.need`` takes them)."""
    from workbench.train.config import optimizer_steps

    facts = memory.model_facts(model_path)
    params = facts["parameters"]
    if not params:
        return {"text": "No estimate: the start model's weights are not in a local folder."}
    fitted = memory.fit(facts, shape, config, sequence, available, cuda=cuda, workspace=workspace,
                        completion=completion, others=others)
    precision = memory.precision_of(config, cuda, workspace)
    batch = config.batch_size
    steps = optimizer_steps(config, rows, config.num_processes)
    measured = measured_step_seconds(workspace, kind, config)
    if measured:
        step_s, basis = measured, "measured in earlier runs of this method and model"
    else:
        if memory.answers_only(shape, facts, fitted.gradient_checkpointing, sequence, completion):
            # the prompts forward only (2 FLOPs a weight and token), the answers forward and back
            prompts, answers = batch * (sequence - completion), batch * shape.sequences_per_row * completion
            flops = params * (2 * prompts + 6 * answers) * config.grad_accum * shape.flops_factor
        else:
            flops = 6 * params * batch * shape.sequences_per_row * sequence * config.grad_accum * shape.flops_factor
        rate = GPU_FLOPS.get(precision, 3e13) if cuda else CPU_FLOPS_PER_CORE * cores
        step_s, basis = flops / rate, "from the FLOPs of a step (no earlier run to measure)"
    seconds = steps * step_s
    where = where or ("free on the GPU" if cuda else "of RAM available")
    text = (f"On this {'GPU' if cuda else f'CPU ({cores} cores)'}: {memory.describe(fitted, available, where)}; "
            f"**{_duration(seconds)}** for {counted(steps, 'step')} ({step_s:.2f} s a step, {basis}).")
    if not fitted.fits:
        text += " **This does not fit now: lower max_length or max_prompt_length, or use a smaller model.**"
    elif fitted.changes(config):
        text += f" The run will use micro-batch {fitted.batch_size} with {fitted.grad_accum} accumulation steps."
    return {"memory_gib": round(fitted.need.gib, 2), "steps": steps, "seconds": round(seconds, 1), "text": text,
            "micro_batch": fitted.batch_size, "fits": fitted.fits}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_for(settings, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """``estimate`` of a config as the form holds it, after the kind's own checks (its start
    model, data and lengths, as the launch would check them), with the warnings the launch will
    give (any kind's preflight warnings) after it; ``{"text": why}`` when there is none."""
    import importlib

    from workbench.configs import ConfigError
    from workbench.errors import WorkbenchError
    from workbench.kinds import get_kind
    from workbench.models.loading import ModelNotFound, resolve
    from workbench.train.modeling import cuda_available
    from workbench.train.preflight import start_name

    try:
        spec_kind = get_kind(kind)
        typed = spec_kind.config(config)
        checked = spec_kind.preflight(typed, settings)
        module = importlib.import_module(spec_kind.module)
        spec = resolve(start_name(settings, typed.model), settings.workspace, settings.base_model)
    except (ConfigError, ModelNotFound, WorkbenchError, ValueError) as exc:
        return {"text": f"No estimate yet: {exc}"}
    summary = checked.summary if checked is not None else {}
    rows = summary.get("training_pairs") or summary.get("rows") or summary.get("prompts") or 0
    cuda = cuda_available()
    available, where = memory.room(settings.train_memory_gb, typed.num_processes, free=True, cuda=cuda)
    out = estimate(kind, typed, spec.path, rows, settings.workspace, cuda, summary.get("sequence_tokens") or 512,
                   module.memory_shape(typed), available, os.cpu_count() or 1, summary.get("completion_tokens") or 0,
                   summary.get("other_model_parameters"), where)
    out["text"] += "".join(f"\n\n⚠ {w}" for w in (checked.warnings if checked is not None else []))
    return out


def estimate_text(settings, kind: str, config: dict[str, Any]) -> str:
    """The estimate for the Train tab, or why there is none (the start model or the data is missing)."""
    return estimate_for(settings, kind, config)["text"]
