"""What the online methods (GRPO, PPO) share before they are queued: the prompts they sample
answers to, and the reward model that scores them, checked to read the policy's tokens."""
from __future__ import annotations

from workbench.chat.system_prompt import current_system_prompt, system_input
from workbench.errors import WorkbenchError
from workbench.kinds import Preflight
from workbench.settings import Settings
from workbench.train import data as rows_of
from workbench.train.preflight import batch_fits, device_notes, memory_fits, prompts_fit, start_and_output


def reward_model_spec(settings: Settings, name: str, policy_tokenizer):
    """The reward model's folder, checked: a scoring model that reads the policy's tokens."""
    from workbench.models.loading import ModelNotFound
    from workbench.train.modeling import load_tokenizer
    from storage import read_manifest

    folder = settings.workspace.model_dir(name)
    manifest = read_manifest(folder) if folder.is_dir() else None
    if not isinstance(manifest, dict):
        raise WorkbenchError(f"reward model {name!r} not found under models/: train one first "
                             "(`workbench train reward`) or name another")
    from storage import read_json

    architectures = (read_json(folder / "config.json", default={}) or {}).get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise WorkbenchError(f"{name!r} is not a reward model (a sequence-classification model); "
                             f"its manifest says {manifest.get('method', 'unknown')}")
    try:
        from workbench.models.loading import ModelSpec

        tokenizer = load_tokenizer(ModelSpec(name, str(folder)))
    except (OSError, ValueError, ModelNotFound) as exc:
        raise WorkbenchError(f"reward model {name!r}: cannot load its tokenizer: {exc}") from None
    if tokenizer.get_vocab() != policy_tokenizer.get_vocab():
        raise WorkbenchError(f"reward model {name!r} uses another tokenizer than the start model "
                             f"({len(tokenizer)} vs {len(policy_tokenizer)} tokens): train a reward model "
                             "on this model family")
    return folder, tokenizer


def prompt_preflight(config, settings: Settings, reward_model: str, memory_shape) -> Preflight:
    """Start model, output name, prompts, the reward model (when named) and the length budget:
    the longest prompt plus ``max_completion_length`` must fit ``max_length`` when it is set."""
    from workbench.train.modeling import load_tokenizer

    spec = start_and_output(config, settings)
    train_file = rows_of.data_file(settings.workspace, config.dataset)
    prompts = rows_of.prompts(train_file)
    batch_fits(config, len(prompts), "prompts")
    tokenizer = load_tokenizer(spec)
    shape = memory_shape(config)
    # every model loaded beside the policy (PPO's reward and value models) comes from the reward model's folder
    others = [reward_model_spec(settings, reward_model, tokenizer)[0]] * len(shape.other_models) if reward_model else []
    budget = f" plus {config.max_completion_length} answer tokens"
    longest = prompts_fit(config, tokenizer, prompts, budget, current_system_prompt(settings.workspace).text)
    if config.max_length and config.max_length < longest + config.max_completion_length:
        raise WorkbenchError(f"max_length {config.max_length} cannot hold the longest prompt ({longest} tokens){budget}")
    sequence = config.max_length or longest + config.max_completion_length
    return Preflight({"train": train_file, **system_input(settings.workspace)}, device_notes(config),
                     {"prompts": len(prompts), "longest_prompt_tokens": longest,
                      **memory_fits(config, settings, spec, shape, sequence, others=others)})
