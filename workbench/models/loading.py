"""Load a model by workspace name for inference: ``base`` (models/base, or the configured folder
or hub id), a full model under ``models/<name>/``, or a LoRA adapter there. An adapter trained on
top of another adapter (DPO after SFT) loads as a chain: the base, each parent adapter merged in
order, then its own. Device and dtype are chosen for the machine; remote code is never run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import Unreadable, Workspace, read_json, read_manifest
from workbench.errors import WorkbenchError
from workbench.models.registry import list_workspace_models, resolve_base_model, writes_answers

BASE = "base"


class ModelNotFound(WorkbenchError):
    pass


MAX_CHAIN = 16


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str  # folder or hub id of the weights to load first
    adapters: tuple[str, ...] = ()  # PEFT adapter folders applied in order, all but the last merged

    @property
    def adapter(self) -> str | None:
        return self.adapters[-1] if self.adapters else None


def available_models(workspace: Workspace) -> list[str]:
    """``base`` and every model folder with a readable manifest that can generate text, for
    pickers (a reward model scores answers; it does not write them)."""
    names = [BASE]
    for entry in list_workspace_models(workspace):
        manifest = entry.get("manifest") or {}
        if entry["name"] != BASE and manifest and writes_answers(manifest):
            names.append(entry["name"])
    return names


def lineage(workspace: Workspace, name: str) -> list[str]:
    """``name`` and its ancestors by their manifests' ``parent``, nearest first, ending at the base."""
    chain, current = [], name
    while current and current not in chain and len(chain) < MAX_CHAIN:
        chain.append(current)
        if current == BASE:
            break
        manifest = read_manifest(workspace.model_dir(current)) if workspace.model_dir(current).is_dir() else None
        current = manifest.get("parent") if isinstance(manifest, dict) else None
    return chain


def model_choices(workspace: Workspace) -> list[tuple[str, str]]:
    """(label, name) pairs for pickers: each trained model labelled with its method and lineage."""
    choices = []
    for name in available_models(workspace):
        manifest = read_manifest(workspace.model_dir(name)) if name != BASE else None
        method = manifest.get("method") if isinstance(manifest, dict) else None
        chain = lineage(workspace, name)
        label = name if len(chain) < 2 else f"{name} ({method or 'model'}: {' ← '.join(chain[1:])})"
        choices.append((label, name))
    return choices


def resolve(name: str, workspace: Workspace, base_setting: str = "", _depth: int = 0) -> ModelSpec:
    """Where the weights of ``name`` are; ``ModelNotFound`` with the names that exist."""
    name = (name or BASE).strip()
    if _depth > MAX_CHAIN:
        raise ModelNotFound(f"model {name!r}: its lineage is longer than {MAX_CHAIN} or loops")
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
        parent = manifest.get("parent")
        if parent:  # trained in this workspace: load what it was trained on, then this adapter
            start = resolve(parent, workspace, base_setting, _depth + 1)
            return ModelSpec(name, start.path, (*start.adapters, str(folder)))
        base = manifest.get("base") or _adapter_base(folder)
        base_path = resolve(BASE, workspace, base_setting).path if base in (None, "", BASE) else base
        if base_path and not Path(base_path).exists() and (workspace.models / base_path).is_dir():
            base_path = str(workspace.models / base_path)
        return ModelSpec(name, base_path, (str(folder),))
    return ModelSpec(name, str(folder))


def _adapter_base(folder: Path) -> str | None:
    config = read_json(folder / "adapter_config.json", default={})
    return config.get("base_model_name_or_path") if isinstance(config, dict) else None


def apply_adapters(model, adapters: tuple[str, ...], merge_last: bool = False, any_head: bool = False):
    """Each parent adapter merged into the weights in order; the last one kept as a PEFT layer
    (so it can be switched off) unless ``merge_last``. ``any_head``: the adapters were trained on
    a causal LM but go on another head (a reward model from an SFT model)."""
    if not adapters:
        return model
    from peft import PeftConfig, PeftModel

    for index, folder in enumerate(adapters):
        config = PeftConfig.from_pretrained(folder)
        if any_head:
            config.task_type = None  # the adapter's layers, without a task wrapper of another head
        model = PeftModel.from_pretrained(model, folder, config=config)
        if merge_last or index < len(adapters) - 1:
            model = model.merge_and_unload()
    return model


def release_memory() -> None:
    """Free what a dropped model held (its memory, the GPU's cache) before the next one loads."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def pick_device_dtype(workspace: Workspace | None = None) -> tuple[str, Any]:
    """The device and compute dtype of inference: the workspace's recorded decision for this
    device (``models.precision``), or, without a workspace, this process's own probe."""
    if workspace is not None:
        from workbench.models.precision import decide

        decision = decide(workspace)
        return decision.device, decision.torch_dtype()
    import torch

    if torch.cuda.is_available():
        from workbench.runtime import cuda_has_native_bf16

        return "cuda", torch.bfloat16 if cuda_has_native_bf16() else torch.float16
    from workbench.models.generation import cpu_bf16_pays

    return "cpu", torch.bfloat16 if cpu_bf16_pays() else torch.float32


def load_for_inference(spec: ModelSpec, decode_weights: str = "full",
                       workspace: Workspace | None = None) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer, device). ``decode_weights``: ``full`` keeps the weights in
    the device's dtype; ``int8`` (CPU only) stores every linear layer's weights as int8 for fast
    one-stream decoding; ``auto`` picks int8 where the workspace's decision for this CPU says it
    pays. With ``workspace``, dtype and int8 follow its recorded decision, the same in every process."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = pick_device_dtype(workspace)
    int8 = device == "cpu" and use_int8(decode_weights, dtype, workspace)
    if int8:
        import torch

        dtype = torch.bfloat16
    # an adapter saved with its tokenizer (added tokens, template) wins over the base's
    has_own = spec.adapter and (Path(spec.adapter) / "tokenizer_config.json").exists()
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.adapter if has_own else spec.path, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype, trust_remote_code=False,
                                                     use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"cannot load model {spec.name!r} from {spec.path}: {exc}") from exc
    model = apply_adapters(model, spec.adapters, merge_last=int8)
    if int8:
        from workbench.models.int8_decode import quantize_linears

        quantize_linears(model, dtype)
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, device


def use_int8(decode_weights: str, dtype: Any, workspace: Workspace | None = None) -> bool:
    from workbench.models.int8_decode import int8_pays, kernel_available
    from workbench.settings import DECODE_WEIGHTS

    if decode_weights not in DECODE_WEIGHTS:
        raise ValueError(f"decode weights {decode_weights!r}: choose one of {', '.join(DECODE_WEIGHTS)}")
    if decode_weights == "int8" and not kernel_available():
        raise ValueError("decode weights 'int8': this torch has no int8 weight-only kernel (_weight_int8pack_mm)")
    if decode_weights == "auto":
        if workspace is not None:
            from workbench.models.precision import decide

            return decide(workspace).int8_decode and kernel_available()
        return int8_pays(str(dtype).replace("torch.", ""))
    return decode_weights == "int8"
