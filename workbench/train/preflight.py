"""Checks every method runs before anything is queued, so a bad launch is refused with what to
fix: the start model, the output name, batch and length settings against the data, QLoRA on a
machine without CUDA."""
from __future__ import annotations

from pathlib import Path

from storage import Workspace
from workbench.chat.prompt import chat_messages
from workbench.configs import AUTO
from workbench.errors import WorkbenchError
from workbench.models.loading import ModelNotFound, ModelSpec, resolve
from workbench.settings import Settings
from workbench.train.config import TrainConfig
from workbench.train.data import NONE, data_file


def newest_trained(workspace: Workspace, which) -> str | None:
    """The model made last in this workspace whose manifest ``which`` accepts, if any."""
    from workbench.models.registry import list_workspace_models

    found = [(str(m.get("created", "")), e["name"]) for e in list_workspace_models(workspace)
             for m in [e.get("manifest")] if isinstance(m, dict) and m.get("method") != "base" and which(m)]
    return max(found)[1] if found else None


def newest_sft(workspace: Workspace) -> str | None:
    """The SFT model trained last in this workspace, if any."""
    return newest_trained(workspace, lambda manifest: manifest.get("method") == "sft")


def start_name(settings: Settings, name: str, pinned: dict | None = None) -> str:
    """``name``, or for ``auto`` the model it stands for: the one the launch chose (``pinned``,
    a run's preflight summary), else the newest SFT model, else the base."""
    if name.strip() != AUTO:
        return name
    return (pinned or {}).get("start_model") or newest_sft(settings.workspace) or "base"


def start_model(settings: Settings, name: str, what: str = "start model") -> ModelSpec:
    try:
        return resolve(start_name(settings, name), settings.workspace, settings.base_model)
    except ModelNotFound as exc:
        raise WorkbenchError(f"{what}: {exc}") from None


def output_name_free(workspace: Workspace, config: TrainConfig, start: str | None = None) -> None:
    from storage.paths import safe_name

    if safe_name(config.output_name) != config.output_name.strip():
        raise WorkbenchError(f"output_name {config.output_name!r}: use letters, digits, '-', '_' and '.' only")
    from workbench.models.loading import lineage

    if config.output_name.strip() in lineage(workspace, start or config.model):
        raise WorkbenchError(f"output_name {config.output_name!r} is the start model or one of its ancestors: "
                             "training on top of a model cannot replace it; choose a new name")
    if workspace.model_dir(config.output_name).exists() and not config.overwrite:
        raise WorkbenchError(f"a model named {config.output_name!r} exists: choose another output_name "
                             "or set overwrite (it is replaced only when the new run succeeds)")


def eval_file(workspace: Workspace, config: TrainConfig, default: Path | None) -> Path | None:
    if config.eval_dataset.strip().lower() == NONE:
        return None
    if config.eval_dataset.strip():
        return data_file(workspace, config.eval_dataset)
    return default if default is not None and default.is_file() else None


def batch_fits(config: TrainConfig, rows: int, what: str = "rows") -> None:
    problem = config.too_few_rows(rows, what)
    if problem:
        raise WorkbenchError(problem)


def prompts_fit(config: TrainConfig, tokenizer, prompts: list, budget_note: str = "", system: str = "") -> int:
    """The longest prompt in tokens as training gives it (a string cut to ``max_prompt_length``,
    or the messages before the answer, rendered with the chat template); refuses a max_length
    that cannot hold it."""
    longest, where = 0, 0
    for index, prompt in enumerate(prompts):
        messages = chat_messages(prompt, system) if isinstance(prompt, str) else prompt
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if isinstance(prompt, str) and config.max_prompt_length:
            length = min(length, config.max_prompt_length)
        if length > longest:
            longest, where = length, index + 1
    if config.max_length and config.max_length <= longest:
        raise WorkbenchError(f"max_length {config.max_length} is shorter than the longest prompt "
                             f"({longest} tokens, row {where}){budget_note}: raise max_length or shorten it")
    return longest


def device_notes(config: TrainConfig) -> list[str]:
    from workbench.train.modeling import cuda_available

    notes = []
    if config.quantization == "4bit":
        if not cuda_available():
            notes.append("QLoRA without a CUDA GPU: bitsandbytes runs the 4-bit NF4 weights on the CPU, "
                         "many times slower than LoRA (quantization=none). It is useful to check a setup, "
                         "not to train a model here.")
    if config.num_processes > 1:
        from workbench.gpu_memory import devices

        gpus = devices(visible="")
        if gpus and len(gpus) < config.num_processes:
            raise WorkbenchError(f"num_processes {config.num_processes} reserves one GPU per process and this "
                                 f"machine has {len(gpus)}: lower num_processes to {len(gpus)} or less")
    return notes


def start_and_output(config: TrainConfig, settings: Settings) -> ModelSpec:
    """The start model (it exists; QLoRA is not asked on an adapter) and a free output name."""
    spec = start_model(settings, config.model)
    no_qlora_on_adapters(config, spec)
    output_name_free(settings.workspace, config, spec.name)
    return spec


def no_qlora_on_adapters(config: TrainConfig, spec: ModelSpec) -> None:
    if config.quantization == "4bit" and spec.adapters:
        raise WorkbenchError(f"QLoRA loads 4-bit weights, into which the adapter {config.model!r} cannot be "
                             f"merged: export it first (`workbench models merge {config.model}`) and start "
                             "from the merged model, or use quantization=none")


def cut_prompts(config: TrainConfig, tokenizer, prompts: list[str], log=None, system: str = "") -> list[str]:
    """Each prompt within ``max_prompt_length`` tokens (``chat.prompt.fit_prompt``: a RAG prompt
    loses the end of its context); how many were cut goes to ``log``."""
    from workbench.chat.prompt import fit_prompt

    if not config.max_prompt_length:
        return list(prompts)
    cut = {p: fit_prompt(tokenizer, p, config.max_prompt_length, f"to max_prompt_length {config.max_prompt_length}",
                         system)
           for p in dict.fromkeys(prompts)}
    changed = sum(1 for _, note in cut.values() if note)
    if changed and log is not None:
        log(f"{changed} of {len(cut)} prompts cut to max_prompt_length {config.max_prompt_length} tokens "
            "(a RAG prompt loses the end of its retrieved context)")
    return [cut[p][0] for p in prompts]


def memory_fits(config: TrainConfig, settings: Settings, spec: ModelSpec, shape, sequence: int,
                completion: int = 0, others: list[str | Path] = ()) -> dict:
    """Refuse, before anything is queued, a run this machine cannot hold even at micro-batch 1
    with gradient checkpointing (its GPU's memory, else its RAM); what the start-time fit needs
    (``launch``): the sequence length, the longest completion (``completion``: its tokens with
    the template's, where only they get logits), the parameters of the models loaded beside the
    policy (``others``: their folders, one per model, as ``shape.other_models`` names them), and
    the estimate at the asked batch."""
    from workbench.train import memory
    from workbench.train.modeling import cuda_available

    facts = memory.model_facts(spec.path)
    read = {str(folder): memory.model_facts(folder)["parameters"] for folder in set(map(str, others))}
    sizes = [read[str(folder)] for folder in others]  # PPO's reward and value models: one folder, read once
    summary = {"sequence_tokens": sequence, **({"completion_tokens": completion} if completion else {}),
               **({"other_model_parameters": sum(sizes)} if sizes and all(sizes) else {})}
    if not facts["parameters"]:
        return summary
    cuda = cuda_available()
    total, where = memory.room(settings.train_memory_gb, config.num_processes, free=False, cuda=cuda)
    others_size = summary.get("other_model_parameters")
    asked = memory.need(facts, shape, config.batch_size, sequence, cuda=cuda,
                        precision=memory.precision_of(config, cuda, settings.workspace),
                        quantization=config.quantization, checkpointing=config.gradient_checkpointing == "on",
                        completion=completion, others=others_size)
    fitted = memory.fit(facts, shape, config, sequence, total, cuda=cuda, workspace=settings.workspace,
                        completion=completion, others=others_size)
    if not fitted.fits:
        raise WorkbenchError(f"this run does not fit on this machine even at micro-batch 1 with gradient checkpointing: "
                             f"it needs {memory.describe(fitted, total, where)}; lower max_length or max_prompt_length, "
                             "or start from a smaller model")
    return {**summary, "memory_gib": round(asked.gib, 2)}
