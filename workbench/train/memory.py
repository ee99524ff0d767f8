"""How much memory a training run needs, before it starts, and the micro-batch that makes it fit.

The same model on the host and on a GPU: the weights; LoRA's trainable weights with their
gradients and Adam moments; the activations kept for the backward pass (each layer's inputs to
its projections, its MLP's intermediate values, and LoRA's dropped-out copies of its inputs); the
logits over the vocabulary (in fp32, with their log-softmax, its gradient and the reference's:
on a 49k-token vocabulary they outweigh a small model's weights); and the other full models a
method loads (PPO's reward and value models, GRPO's reward model). Each method says what it puts
through the model (``memory_shape`` in its module).

Measured on this machine's kind (2 cores, fp32, the default 135M model, 768-token pairs, one
step, peak RSS of the training process) against this model: reward 4.1 / 7.8 GiB at micro-batch
1 / 2 (estimated 4.4 / 7.4), DPO 5.1 / 10.1 GiB (5.8 / 10.1); the reward model reported at 14.4 GB
at batch 4 with 832-token rows is estimated at 14.4 GiB. PyTorch's CPU attention keeps no
sequence-squared scores for the backward pass (the batch-2 runs would have needed 1.3 GiB more).
In bf16 on the same CPU (native bf16), micro-batch 4, 1,088-token pairs (``benchmarks/loop_time.py``,
two steps, one run each): reward 12.2 GiB as two rows a pair and 10.1 packed (estimated 13.9), DPO
16.5 as two rows and 10.9 packed with logits over the completions only. The estimate counts
activations as two rows a pair either way (packing on a CPU saved 17 % of the reward model's peak,
not the half of its tokens), and DPO's logits over the completions only where the start model
packs and has no router (``logits_cut``): 15.0 GiB for that run, and 21.6 with every token's
logits for a model that runs two rows a pair or a mixture of experts. With the prompts run
without gradients (``prompt_gradients`` off; ``answers_only``) a step keeps the answers'
activations and each layer's keys and values of the whole pair, not the prompts' activations: in
fp32 with 800-token RAG prompts, one step (``benchmarks/loop_time.py --votes 24 --steps 1 --option
prompt_gradients=false --option precision=fp32 --against batch_size=1``), the reward model peaked
at 1.8 / 3.7 GiB at micro-batch 1 / 4 (estimated 2.2 / 4.6) and DPO at 2.1 / 4.6 (2.5 / 5.6),
where counting the prompts' activations gives 17.5 and 18.4 GiB at micro-batch 4 for the same rows.

``fit`` keeps the effective batch (micro-batch x accumulation) and halves the micro-batch, then
turns gradient checkpointing on, until the run fits in what is free.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import Workspace

GIB = 1024 ** 3
LOGIT_COPIES = 4  # fp32 logits, their log-softmax, its gradient, and the reference's or a cast's
HEADROOM = 1.2  # allocator slack and short-lived copies (fitted on the runs above)
RUNTIME_BYTES = {"cpu": int(0.8 * GIB), "cuda": int(0.5 * GIB)}  # torch, the libraries, the CUDA context
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# the dtype of the weights each training precision loads (``modeling.choose_precision``): fp16
# training keeps fp32 weights and lets autocast do the half-precision work
WEIGHT_DTYPE = {"bf16": "bfloat16", "fp16": "float32", "fp32": "float32"}


@dataclass(frozen=True)
class Shape:
    """What one row of a method's data puts through the policy at once."""
    sequences_per_row: int = 1  # a preference pair: chosen and rejected, 2
    vocab_logits: bool = True  # a language-model head (a reward model's head has one logit)
    other_models: tuple[str, ...] = ()  # full models loaded beside the policy: "reward", "value"
    completion_logits: bool = False  # logits over the completions only, where the start model packs (DPO)
    frozen_prompt: bool = False  # prompts run without gradients, answers after them, where the start model packs
    flops_factor: float = 1.0  # a step's compute against one forward and backward pass of the rows (sampling costs more)


@dataclass(frozen=True)
class Need:
    bytes: int
    parts: dict[str, int]

    @property
    def gib(self) -> float:
        return self.bytes / GIB


@dataclass(frozen=True)
class Fit:
    batch_size: int
    grad_accum: int
    gradient_checkpointing: bool
    need: Need
    fits: bool

    def changes(self, config) -> dict[str, Any]:
        """The settings this fit changes in ``config`` (a method's ``TrainConfig``)."""
        out = {}
        if self.batch_size != config.batch_size:
            out.update(batch_size=self.batch_size, grad_accum=self.grad_accum)
        if self.gradient_checkpointing and config.gradient_checkpointing != "on":
            out["gradient_checkpointing"] = "on"
        return out


def model_facts(path: str | Path) -> dict[str, Any]:
    """Parameters (from the safetensors' size), width, depth, MLP width and vocabulary of a model
    folder; ``parameters`` is None when the weights are not in a local folder."""
    folder = Path(path)
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors")) if folder.is_dir() else 0
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    stored = DTYPE_BYTES.get(str(config.get("dtype") or config.get("torch_dtype")), 4)
    hidden = config.get("hidden_size", 1024)
    heads = config.get("num_attention_heads") or 16
    packs, router = packing(folder, config)
    return {"parameters": weights // stored if weights else None, "hidden": hidden,
            "layers": config.get("num_hidden_layers", 24), "vocab": config.get("vocab_size", 32000),
            "intermediate": config.get("intermediate_size") or 4 * hidden,
            "kv_width": (config.get("num_key_value_heads") or heads) * (config.get("head_dim") or hidden // heads),
            "packs": packs, "logits_cut": packs and not router}


def packing(folder: Path, config: dict[str, Any]) -> tuple[bool, bool]:
    """Whether this model runs a pair packed (``shared_prompt.config_packs``, with the attention
    the loader leaves it), and whether it has a router. DPO computes logits over the completions
    only (``logits_cut``) where it packs and has no router, since TRL's DPO turns a router's
    auxiliary loss on for any config with ``output_router_logits`` and then computes every token's
    logits. The config as transformers reads it, class defaults included (a Mistral without
    ``sliding_window`` in its file has the default window)."""
    from types import SimpleNamespace

    from workbench.train.shared_prompt import config_packs

    try:
        from transformers import AutoConfig

        loaded = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, KeyError):
        loaded = SimpleNamespace(**config)
    attention = getattr(loaded, "_attn_implementation", None) or config.get("attn_implementation") or "sdpa"
    return config_packs(loaded, attention), hasattr(loaded, "output_router_logits")


def need(facts: dict[str, Any], shape: Shape, batch_size: int, sequence: int, *, cuda: bool,
         precision: str = "fp32", quantization: str = "none", checkpointing: bool = False,
         completion: int = 0, others: int | None = None) -> Need:
    """Peak memory of one training step at micro-batch ``batch_size`` and ``sequence`` tokens
    (``completion``: the longest answer's tokens, where only they get logits; ``others``: the
    parameters of the models ``shape.other_models`` names, all together, where their folders
    are known, else each counted at the policy's size)."""
    params = facts["parameters"] or 0
    half = precision in ("bf16", "fp16")
    weight_bytes = DTYPE_BYTES[WEIGHT_DTYPE[precision]]
    per_weight = 0.55 if quantization == "4bit" else weight_bytes
    if others is None:
        others = len(shape.other_models) * params
    tokens = batch_size * shape.sequences_per_row * sequence
    hidden, layers, intermediate = facts["hidden"], facts["layers"], facts["intermediate"]
    # bf16 autocast on a CPU keeps fp32 copies beside the bf16 activations (RMSNorm's upcast, LoRA's
    # fp32 adapters): 3 bytes an element fits the bf16 peaks measured (module docstring)
    width = (2 if cuda else 3) if half else 4
    # per token and layer: six hidden-wide and four intermediate-wide tensors, and LoRA's dropped-out
    # inputs of the seven projections (six hidden-wide, one intermediate-wide)
    per_layer = width * (6 * hidden + 4 * intermediate) + width * (6 * hidden + intermediate)
    if checkpointing:  # one input kept per layer, one layer's full activations at a time
        activations = tokens * (layers * width * hidden + per_layer)
    elif answers_only(shape, facts, checkpointing, sequence, completion):
        # the answers' activations; per layer, the keys and values of the whole packed pair (the
        # prompt's cached ones joined to the answers', and repeated to every query head) kept for
        # the backward pass; and the prompt's cache itself
        kv, packed = facts.get("kv_width") or hidden, batch_size * (sequence + completion)
        activations = (batch_size * shape.sequences_per_row * completion * layers * per_layer
                       + packed * layers * width * 2 * (hidden + kv)
                       + batch_size * (sequence - completion) * layers * width * 2 * kv)
    else:
        activations = tokens * layers * per_layer
    parts = {
        "weights": int(params * per_weight),
        "lora_and_optimizer": int(params * 0.01 * 16),  # ~1% trainable: fp32 weights, grads, two moments
        "activations": int(activations),
        "logits": int(logit_tokens(shape, facts, batch_size, sequence, completion) * facts["vocab"] * 4 * LOGIT_COPIES)
        if shape.vocab_logits else 0,
        "other_models": int(others * weight_bytes),
    }
    total = sum(parts.values()) * HEADROOM + RUNTIME_BYTES["cuda" if cuda else "cpu"]
    return Need(int(total), parts)


def answers_only(shape: Shape, facts: dict[str, Any], checkpointing: bool, sequence: int, completion: int) -> bool:
    """Whether a step keeps activations for the answers only: the method runs its prompts without
    gradients (``shared_prompt.split_run``), which needs a model that packs and no gradient
    checkpointing (a replayed layer cannot hold a cache)."""
    return bool(shape.frozen_prompt and facts.get("packs") and not checkpointing and 0 < completion < sequence)


def logit_tokens(shape: Shape, facts: dict[str, Any], batch_size: int, sequence: int, completion: int) -> int:
    """Tokens whose logits a step computes: every one, or each row's completion where the method
    cuts its logits to them and the start model packs."""
    cut = shape.completion_logits and facts.get("logits_cut") and 0 < completion < sequence
    return batch_size * shape.sequences_per_row * (completion if cut else sequence)


def fit(facts: dict[str, Any], shape: Shape, config, sequence: int, available: int, *, cuda: bool,
        workspace: Workspace | None = None, completion: int = 0, others: int | None = None) -> Fit:
    """The largest micro-batch (halving from ``batch_size``, the accumulation growing to keep
    the effective batch) that fits in ``available`` bytes, without gradient checkpointing when
    possible; at micro-batch 1 with checkpointing, the fit that does not fit (``fits`` False).
    ``config``: the method's ``TrainConfig``; ``workspace``: whose recorded CPU precision ``auto`` follows;
    ``completion`` and ``others``: as ``need`` takes them."""
    precision = precision_of(config, cuda, workspace)
    options = {"on": [True], "off": [False]}.get(config.gradient_checkpointing, [False, True])
    effective = config.batch_size * config.grad_accum
    last = None
    for checkpointing in options:
        batch = config.batch_size
        while True:
            n = need(facts, shape, batch, sequence, cuda=cuda, precision=precision,
                     quantization=config.quantization, checkpointing=checkpointing, completion=completion,
                     others=others)
            last = Fit(batch, math.ceil(effective / batch), checkpointing, n, n.bytes <= available)
            if last.fits or batch == 1:
                break
            batch = max(1, batch // 2)
            while effective % batch and batch > 1:  # keep micro-batch x accumulation = the effective batch
                batch -= 1
        if last.fits:
            return last
    return last


def precision_of(config, cuda: bool, workspace: Workspace | None = None) -> str:
    """The precision a ``TrainConfig`` trains in, as ``modeling.choose_precision`` picks it:
    ``auto`` is bf16 on GPUs that compute in it (compute capability 8 and newer), else fp16; on a
    CPU, bf16 where the workspace's recorded decision for this CPU says so, else fp32 (also before
    any decision is recorded: the larger estimate). Reads only."""
    if config.precision != "auto":
        return config.precision
    if cuda:
        from workbench.gpu_memory import devices

        return "bf16" if all(d.bf16 for d in devices()) else "fp16"
    from workbench.models.precision import recorded

    decision = recorded(workspace) if workspace is not None else None
    return "bf16" if decision is not None and decision.dtype == "bfloat16" else "fp32"


def describe(fitted: Fit, available: int, where: str) -> str:
    parts = ", ".join(f"{k.replace('_', ' ')} {v / GIB:.1f}" for k, v in fitted.need.parts.items() if v >= 0.05 * GIB)
    return (f"about {fitted.need.gib:.1f} GiB at micro-batch {fitted.batch_size} x {fitted.grad_accum} accumulation"
            f"{', gradient checkpointing' if fitted.gradient_checkpointing else ''} ({parts}); "
            f"{available / GIB:.1f} GiB {where}")


def room(cap_gb: float, processes: int, *, free: bool, cuda: bool, visible: str | None = None) -> tuple[int, str]:
    """Bytes a run may plan for, and where they are: on a machine with a GPU (``cuda``), the
    tightest visible GPU's memory (free now, or in all); else the host's RAM (``host_memory``)
    divided among the run's ``processes``, each rank holding a whole copy of the model. Reads only."""
    from workbench.gpu_memory import devices

    gpus = devices(visible) if cuda else []
    if gpus:
        return (int(min(d.free_gib if free else d.total_gib for d in gpus) * GIB),
                "free on the GPU" if free else "on the GPU")
    where = ("of RAM for training (WORKBENCH_TRAIN_MEMORY_GB)" if cap_gb > 0 else
             "of RAM available" if free else "of RAM on this machine")
    if processes > 1:
        where += f" to each of {processes} processes"
    return host_memory(free, cap_gb) // max(1, processes), where


def host_memory(free: bool, cap_gb: float = 0.0) -> int:
    """Bytes of RAM a run may plan for: what is available now (``free``), else the machine's
    total; at most ``cap_gb`` when it is set (``WORKBENCH_TRAIN_MEMORY_GB``, a shared box's share)."""
    import os

    key = "MemAvailable:" if free else "MemTotal:"
    found = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key):
                found = int(line.split()[1]) * 1024
    except OSError:
        pass
    return min(found, int(cap_gb * GIB)) if cap_gb > 0 else found
