"""Merge / export: an adapter (with every adapter of its lineage) merged into its base and saved
as a full safetensors folder that plain ``AutoModelForCausalLM.from_pretrained`` loads. Runs in
the worker itself: no training, one model in memory."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone

from storage import read_manifest
from workbench.errors import WorkbenchError
from workbench.job_context import JobContext
from workbench.models.loading import lineage
from workbench.settings import Settings
from workbench.train.config import option
from workbench.train.output import publish
from workbench.train.preflight import start_model

DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass
class Config:
    name: str = option("", "the adapter to merge (a name under models/)", "model")
    into: str = option("", "the new model's name ('' = <name>-merged)", "output")
    overwrite: bool = option(False, "replace a model of that name", "output")
    dtype: str = option("auto", "weights' dtype (auto = as the base stores them)", "output", DTYPES)

    @property
    def output_name(self) -> str:
        return self.into.strip() or f"{self.name.strip()}-merged"

    def validate(self) -> None:
        from storage.paths import safe_name

        if not self.name.strip():
            raise ValueError("name the adapter to merge")
        if self.output_name in ("base", self.name.strip()):
            raise ValueError(f"merge into a new name, not {self.output_name!r}")
        if safe_name(self.output_name) != self.output_name:
            raise ValueError(f"into {self.into!r}: use letters, digits, '-', '_' and '.' only")


def preflight(config: Config, settings: Settings):
    from workbench.kinds import Preflight

    spec = start_model(settings, config.name, "model to merge")
    if not spec.adapters:
        raise WorkbenchError(f"{config.name!r} is a full model already: nothing to merge")
    if settings.workspace.model_dir(config.output_name).exists() and not config.overwrite:
        raise WorkbenchError(f"a model named {config.output_name!r} exists: give --into another name or overwrite")
    return Preflight({})


def run(config: Config, context: JobContext) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    reporter = context.reporter
    from workbench.models.loading import apply_adapters
    from workbench.train.modeling import load_tokenizer

    settings = context.settings
    spec = start_model(settings, config.name, "model to merge")
    dtype = {"auto": "auto", "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[config.dtype]
    reporter.progress(0, 3, "loading")
    reporter.log(f"loading {spec.path} and {len(spec.adapters)} adapter(s)")
    model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype, use_safetensors=True, trust_remote_code=False)
    reporter.check_cancel()
    reporter.progress(1, 3, "merging")
    model = apply_adapters(model, spec.adapters, merge_last=True)
    tokenizer = load_tokenizer(spec)
    source = read_manifest(settings.workspace.model_dir(config.name))
    source = source if isinstance(source, dict) else {}
    manifest = {"name": config.output_name, "kind": "model", "method": "merge", "merged_from": config.name,
                "source_method": source.get("method"), "base": source.get("base", "base"), "parent": config.name,
                "lineage": lineage(settings.workspace, config.name), "dataset": source.get("dataset"),
                "config": dataclasses.asdict(config), "run_id": context.run.id, "metrics": source.get("metrics"),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "dtype": str(model.dtype)}
    reporter.progress(2, 3, "saving")

    def write(folder):
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    target = publish(settings.workspace, config.output_name, config.overwrite, context.run.id, write, manifest)
    reporter.progress(3, 3, "done")
    reporter.log(f"merged {config.name} into {target}")
    return {"output": str(target), "name": config.output_name}
