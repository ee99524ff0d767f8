"""A rough memory and time estimate for a training config on this device, before launching:
weights from the start model's files, LoRA and optimizer state, activations from the batch and
sequence length; time from this method's measured speed in earlier runs when there are some, else
from the FLOPs of a step at a conservative device throughput."""
from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

from storage import RunStore, Workspace

CPU_FLOPS_PER_CORE = 2.5e10  # fp32, sustained in PyTorch training on a recent x86 core
GPU_FLOPS = {"bf16": 2.0e14, "fp16": 2.0e14, "fp32": 3.0e13}  # well below peak: realistic training
GIB = 1024 ** 3


def _model_facts(path: str) -> dict[str, Any]:
    folder = Path(path)
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors")) if folder.is_dir() else 0
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    stored = {"float32": 4, "bfloat16": 2, "float16": 2}.get(str(config.get("dtype") or config.get("torch_dtype")), 4)
    return {"parameters": weights // stored if weights else None, "hidden": config.get("hidden_size", 1024),
            "layers": config.get("num_hidden_layers", 24)}


def measured_step_seconds(workspace: Workspace, kind: str, model: str) -> float | None:
    """The median time a step took in finished runs of this method on this start model."""
    rates = []
    for run in RunStore(workspace.runs).all()[:50]:
        config = run.config()
        if not isinstance(config, dict) or config.get("kind") != kind or (config.get("config") or {}).get("model") != model:
            continue
        rates += [m["steps_per_s"] for m in run.metrics() if m.get("steps_per_s")]
    return 1 / statistics.median(rates) if rates else None


def estimate(kind: str, config: dict[str, Any], model_path: str, rows: int, workspace: Workspace,
             cuda: bool, gpu_memory_gib: float | None = None, cores: int = 2) -> dict[str, Any]:
    facts = _model_facts(model_path)
    params = facts["parameters"]
    if not params:
        return {"text": "No estimate: the start model's weights are not in a local folder."}
    precision = config.get("precision", "auto")
    precision = ("bf16" if cuda else "fp32") if precision == "auto" else precision
    bytes_per = 0.55 if config.get("quantization") == "4bit" else (2 if precision in ("bf16", "fp16") else 4)
    seq = config.get("max_length") or 512
    batch = config.get("batch_size", 4)
    sequences = batch * (2 if kind in ("train.reward", "train.dpo") else 1)
    if kind == "train.grpo":
        seq = (config.get("max_length") or 256) + config.get("max_completion_length", 64)
    weights = params * bytes_per
    lora = params * 0.01 * 16  # ~1% of the weights trainable: weights, grads and two Adam moments in fp32
    activations = sequences * seq * facts["hidden"] * facts["layers"] * (18 if precision != "fp32" else 34)
    if config.get("gradient_checkpointing") == "on":
        activations /= math.sqrt(facts["layers"])
    extra = params * bytes_per if kind == "train.grpo" and config.get("reward_model") else 0
    memory = (weights + lora + activations + extra) * 1.2 + (0.5 * GIB if cuda else 0.8 * GIB)
    steps = config.get("max_steps") or math.ceil(
        config.get("epochs", 1) * math.ceil(rows / (batch * config.get("grad_accum", 1) * config.get("num_processes", 1))))
    measured = measured_step_seconds(workspace, kind, config.get("model", "base"))
    if measured:
        step_s, basis = measured, "measured in earlier runs of this method and model"
    else:
        tokens = sequences * seq * config.get("grad_accum", 1)
        flops = 6 * params * tokens * (3 if kind == "train.grpo" else 1)
        rate = GPU_FLOPS.get(precision, 3e13) if cuda else CPU_FLOPS_PER_CORE * cores
        step_s, basis = flops / rate, "from the FLOPs of a step (no earlier run to measure)"
    seconds = steps * step_s
    where = f"GPU ({gpu_memory_gib:.0f} GiB)" if cuda and gpu_memory_gib else ("GPU" if cuda else f"CPU ({cores} cores)")
    text = (f"On this {where}: about **{memory / GIB:.1f} GiB** of memory and **{_duration(seconds)}** for "
            f"{steps} steps ({step_s:.2f} s a step, {basis}).")
    if cuda and gpu_memory_gib and memory / GIB > gpu_memory_gib:
        text += " **This may not fit: lower batch_size or max_length, or use QLoRA.**"
    return {"memory_gib": round(memory / GIB, 2), "steps": steps, "seconds": round(seconds, 1), "text": text}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_for(settings, kind: str, config: dict[str, Any], cuda: bool | None = None) -> dict[str, Any]:
    """``estimate`` of a config as the form or the job holds it (its start model and data
    resolved in the workspace); ``{"text": why}`` when there is none."""
    from workbench.configs import ConfigError
    from workbench.errors import WorkbenchError
    from workbench.kinds import get_kind
    from workbench.models.loading import ModelNotFound, resolve
    from workbench.train import data as rows_of
    from workbench.train.overview import READERS

    try:
        values = get_kind(kind).validate(config)
        spec = resolve(values["model"], settings.workspace, settings.base_model)
        rows = len(READERS[kind.split(".", 1)[1]](rows_of.data_file(settings.workspace, values["dataset"])))
    except (ConfigError, ModelNotFound, WorkbenchError, ValueError) as exc:
        return {"text": f"No estimate yet: {exc}"}
    memory = None
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
        memory = torch.cuda.get_device_properties(0).total_memory / GIB if cuda else None
    return estimate(kind, values, spec.path, rows, settings.workspace, cuda, memory, os.cpu_count() or 1)


def estimate_text(settings, kind: str, config: dict[str, Any]) -> str:
    """The estimate for the Train tab, or why there is none (the start model or the data is missing)."""
    return estimate_for(settings, kind, config)["text"]
