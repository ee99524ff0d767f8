"""Load a model by workspace name for inference: ``base`` (models/base, or the configured folder
or hub id), a full model under ``models/<name>/``, or a LoRA adapter there (loaded on the base
it names). Device and dtype are chosen for the machine; remote code is never run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import Unreadable, Workspace, read_json, read_manifest
from workbench.errors import WorkbenchError
from workbench.models.registry import list_workspace_models, resolve_base_model

BASE = "base"


class ModelNotFound(WorkbenchError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str  # folder or hub id of the weights to load first
    adapter: str | None = None  # a PEFT adapter folder applied on top


def available_models(workspace: Workspace) -> list[str]:
    """``base`` and every model folder with a readable manifest that can generate text, for
    pickers (a reward model scores answers; it does not write them)."""
    names = [BASE]
    for entry in list_workspace_models(workspace):
        manifest = entry.get("manifest") or {}
        kind = f"{manifest.get('kind', '')} {manifest.get('method', '')}".lower()
        if entry["name"] != BASE and manifest and "reward" not in kind:
            names.append(entry["name"])
    return names


def resolve(name: str, workspace: Workspace, base_setting: str = "") -> ModelSpec:
    """Where the weights of ``name`` are; ``ModelNotFound`` with the names that exist."""
    name = (name or BASE).strip()
    if name == BASE:
        path = resolve_base_model(base_setting, workspace)
        if path == str(workspace.base_model) and not (workspace.base_model / "config.json").exists():
            raise ModelNotFound("the base model is not provisioned yet: run `workbench models pull` "
                                "(or wait for the models.pull job in Monitor)")
        return ModelSpec(BASE, path)
    folder = workspace.model_dir(name)
    manifest = read_manifest(folder) if folder.is_dir() else None
    if not folder.is_dir() or manifest is None or isinstance(manifest, Unreadable):
        known = ", ".join(available_models(workspace))
        raise ModelNotFound(f"unknown model {name!r}; available: {known}")
    if (folder / "adapter_config.json").exists():
        base = manifest.get("base") or _adapter_base(folder)
        base_path = resolve(BASE, workspace, base_setting).path if base in (None, "", BASE) else base
        if base_path and not Path(base_path).exists() and (workspace.models / base_path).is_dir():
            base_path = str(workspace.models / base_path)
        return ModelSpec(name, base_path, adapter=str(folder))
    return ModelSpec(name, str(folder))


def _adapter_base(folder: Path) -> str | None:
    config = read_json(folder / "adapter_config.json", default={})
    return config.get("base_model_name_or_path") if isinstance(config, dict) else None


def pick_device_dtype() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def load_for_inference(spec: ModelSpec) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer, device)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = pick_device_dtype()
    # an adapter saved with its tokenizer (added tokens, template) wins over the base's
    has_own = spec.adapter and (Path(spec.adapter) / "tokenizer_config.json").exists()
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.adapter if has_own else spec.path, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype, trust_remote_code=False,
                                                     use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"cannot load model {spec.name!r} from {spec.path}: {exc}") from exc
    if spec.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter)
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, device
