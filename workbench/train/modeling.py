"""Models for training: the start model (base, a full model, or an adapter chain merged into its
base), QLoRA's 4-bit loading, LoRA settings for the architecture, and the precision and
gradient-checkpointing choices that fit the device."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import Workspace
from workbench.models.loading import ModelSpec, apply_adapters
from workbench.train.config import TrainConfig

# Attention and MLP projections: what QLoRA and most LoRA recipes adapt for these families.
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TARGETS_BY_FAMILY = {family: PROJECTIONS for family in (
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "gemma", "gemma2", "gemma3_text",
    "phi3", "olmo", "olmo2", "granite", "smollm3", "cohere")}
BIG_MODEL = 1_000_000_000  # parameters from which gradient checkpointing pays on a GPU


@dataclass(frozen=True)
class Precision:
    dtype: Any  # torch dtype of the weights
    bf16: bool  # mixed-precision flags for the trainer
    fp16: bool
    name: str


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def choose_precision(setting: str, workspace: Workspace | None = None) -> Precision:
    """bf16 only where the device supports it: a GPU that has it; fp16 on older GPUs. On a CPU,
    ``auto`` follows the workspace's recorded decision for this CPU (``models.precision``), the
    one inference follows: bf16 where the CPU has native bf16 and a timing showed it pays (a
    reward step of 800-token pairs took 33 s instead of 60 on such a CPU, a DPO step 61 s instead
    of 83: ``benchmarks/loop_time.py``), else fp32 (bf16 without native support is several times
    slower). Without a workspace, fp32 on a CPU unless asked for."""
    import torch

    from workbench.train.memory import WEIGHT_DTYPE

    on_gpu = torch.cuda.is_available()
    if setting == "auto":
        if on_gpu:
            from workbench.runtime import cuda_has_native_bf16

            setting = "bf16" if cuda_has_native_bf16() else "fp16"
        else:
            from workbench.models.precision import decide

            setting = "bf16" if workspace is not None and decide(workspace).dtype == "bfloat16" else "fp32"
    if setting == "fp16" and not on_gpu:
        raise ValueError("fp16 training needs a CUDA GPU; use precision=fp32 or bf16 on CPU")
    # the memory estimate counts the weights in the same dtype (fp16: fp32 weights, autocast does
    # the half-precision work)
    return Precision(getattr(torch, WEIGHT_DTYPE[setting]), setting == "bf16", setting == "fp16", setting)


def use_gradient_checkpointing(config: TrainConfig, parameters: int) -> bool:
    if config.gradient_checkpointing != "auto":
        return config.gradient_checkpointing == "on"
    return cuda_available() and (config.quantization == "4bit" or parameters >= BIG_MODEL)


def lora_targets(config: TrainConfig, model_config) -> list[str] | str:
    if config.lora_targets:
        return list(config.lora_targets)
    return TARGETS_BY_FAMILY.get(getattr(model_config, "model_type", ""), "all-linear")


def lora_config(config: TrainConfig, model_config, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=lora_targets(config, model_config), task_type=task_type, bias="none")


def quantization_config(precision: Precision):
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if precision.bf16 else (torch.float16 if precision.fp16 else torch.float32)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute, bnb_4bit_quant_storage=compute)


def load_tokenizer(spec: ModelSpec):
    from transformers import AutoTokenizer

    own = [a for a in spec.adapters if (Path(a) / "tokenizer_config.json").exists()]
    tokenizer = AutoTokenizer.from_pretrained(own[-1] if own else spec.path, trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelSpec, config: TrainConfig, precision: Precision, head: str = "causal-lm",
               num_labels: int = 1, pad_token_id: int | None = None, gpu: int = 0):
    """The start model with every adapter of its lineage merged in, ready for a new LoRA.
    ``head="classifier"`` loads a sequence-classification model (reward and value models);
    ``gpu``: the rank's GPU, where QLoRA's 4-bit weights are placed as they load."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"dtype": precision.dtype, "trust_remote_code": False, "use_safetensors": True}
    if config.quantization == "4bit":
        kwargs["quantization_config"] = quantization_config(precision)
        if cuda_available():
            kwargs["device_map"] = {"": gpu}
    if head == "classifier":
        model = AutoModelForSequenceClassification.from_pretrained(spec.path, num_labels=num_labels, **kwargs)
        if pad_token_id is not None:
            model.config.pad_token_id = pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(spec.path, **kwargs)
    model = apply_adapters(model, spec.adapters, merge_last=True, any_head=head == "classifier")
    if config.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=use_gradient_checkpointing(config, count_parameters(model)))
    return model


@contextmanager
def trainable_in_fp32(model):
    """The trainable copies PEFT makes of whole modules (``modules_to_save``: the reward model's new
    head) in fp32 while the model trains, cast back to their dtype once at the end: PEFT copies
    them in the model's dtype, and Adam's step on a half-precision weight rounds away (bf16 keeps
    8 bits: a weight of 0.08 is spaced 4.9e-4 apart, so a 1e-4 step rounds away, as the steps of a
    decaying learning rate end up doing); mixed-precision training keeps fp32 masters for the same
    reason. LoRA's own weights are left as they are (fp32 from PEFT), and so is a model trained
    whole (PPO's value model: fp32 would double its memory). Yields how many tensors were cast."""
    import torch

    cast = [(p, p.dtype) for name, p in model.named_parameters()
            if p.requires_grad and "modules_to_save" in name and p.dtype in (torch.bfloat16, torch.float16)]
    for parameter, _ in cast:
        parameter.data = parameter.data.float()
    try:
        yield len(cast)
    finally:
        for parameter, dtype in cast:
            parameter.data = parameter.data.to(dtype)


def padded_length(tokens: int) -> int:
    """A row length as batches pad it: rounded up to a multiple of 64."""
    return 64 * -(-tokens // 64)


def length_from_data(longest: int, model_config) -> int:
    """The longest row in tokens, rounded up to a multiple of 64, within the model's context."""
    limit = getattr(model_config, "max_position_embeddings", None) or 4096
    return min(limit, padded_length(longest))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
