"""What the two methods that learn from preference pairs (the reward model and DPO) share: the
held-out pairs, the checks before they are queued, and the setup in the training child (start
model, tokenizer, pairs with their prompts cut to fit, the model, the max length)."""
from __future__ import annotations

from workbench.chat.prompt import chat_messages
from workbench.chat.system_prompt import current_system_prompt, system_input
from workbench.kinds import Preflight
from workbench.settings import Settings
from workbench.train import data as rows_of
from workbench.train.modeling import padded_length
from workbench.train.preflight import (batch_fits, cut_prompts, device_notes, eval_file, memory_fits,
                                       prompts_fit, start_and_output, start_model)

HELD_OUT = "dataset_rlhf_test.jsonl"
SHARE_PROMPT = ("run each pair as one sequence, its prompt once with chosen and rejected after it, kept apart by "
                "the attention mask (train.shared_prompt: about half the tokens on RAG prompts); off: two rows a pair")
PROMPT_GRADIENTS = ("train through the prompts' tokens too; off: a training step runs each pair's prompt once "
                    "without gradients, then its answers reading the prompt's cached keys and values "
                    "(train.shared_prompt): the same scores, a backward pass over the answers' tokens only, so a "
                    "faster step and a third of the memory on long RAG prompts; the weights then learn from how "
                    "the answers read the prompt, not from how the prompt is represented. With share_prompt off "
                    "or gradient checkpointing on, the prompts keep their gradients")


def prompts_without_gradients(config) -> bool:
    """Whether a method's options ask for its prompts to run without gradients: ``prompt_gradients``
    off, with the pairs packed (``share_prompt``); the model and gradient checkpointing decide the rest."""
    return config.share_prompt and not config.prompt_gradients


def check_pair_options(config) -> None:
    """The checks of the options DPO and the reward model share."""
    if not 0 < config.eval_fraction < 1:
        raise ValueError("eval_fraction must be in (0, 1)")


def preference_preflight(config, settings: Settings, shape_of) -> Preflight:
    """The checks DPO and the reward model share: start model, name, pairs, held-out pairs,
    lengths, and memory (``shape_of``: the method's ``memory_shape``)."""
    ws = settings.workspace
    spec = start_and_output(config, settings)
    train_file = rows_of.data_file(ws, config.dataset)
    pairs = rows_of.preference_pairs(train_file)
    held = eval_file(ws, config, ws.data / HELD_OUT)
    if held is not None:
        rows_of.preference_pairs(held)
    train_rows = len(pairs) if held is not None or config.eval_dataset.strip().lower() == rows_of.NONE else \
        len(rows_of.held_out_split(pairs, config.eval_fraction, config.seed)[0])
    batch_fits(config, train_rows, "training pairs")
    from workbench.train.modeling import load_tokenizer

    tokenizer = load_tokenizer(spec)
    system = current_system_prompt(ws).text
    longest = prompts_fit(config, tokenizer, [p["prompt"] for p in pairs], system=system)
    answer = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for p in pairs for a in (p["chosen"], p["rejected"]))
    sequence = config.max_length or padded_length(longest + answer + 8)
    return Preflight({"train": train_file, **({"eval": held} if held else {}), **system_input(ws)}, device_notes(config),
                     {"start_model": spec.name, "pairs": len(pairs), "training_pairs": train_rows,
                      "longest_prompt_tokens": longest,
                      **memory_fits(config, settings, spec, shape_of(config), sequence, answer + 8)})


def split_pairs(config, job) -> tuple[list[dict], list[dict]]:
    pairs = rows_of.preference_pairs(job.input("train"))
    if job.input("eval"):
        return pairs, rows_of.preference_pairs(job.input("eval"))
    if config.eval_dataset.strip().lower() == rows_of.NONE:
        return pairs, []
    return rows_of.held_out_split(pairs, config.eval_fraction, config.seed)


def pair_datasets(pairs: list[dict], held: list[dict], system: str) -> dict:
    """The trainer's datasets: the training and held-out pairs as TRL's conversational rows."""
    from datasets import Dataset

    def rows(some: list[dict]):
        return Dataset.from_list([rows_of.conversational_pair(p, system) for p in some])

    return {"train_dataset": rows(pairs), "eval_dataset": rows(held) if held else None}


def pair_max_length(tokenizer, pairs, model_config, system: str = "") -> int:
    from workbench.train.modeling import length_from_data

    longest = 0
    for p in pairs:
        for answer in (p["chosen"], p["rejected"]):
            ids = tokenizer.apply_chat_template(chat_messages(p["prompt"], system) + [{"role": "assistant", "content": answer}],
                                                tokenize=True, return_dict=True)["input_ids"]
            longest = max(longest, len(ids))
    return length_from_data(longest, model_config)


def pair_setup(config, job, head: str = "causal-lm"):
    """What DPO and the reward model load before their trainer: precision, start model, tokenizer,
    training and held-out pairs, the model (with ``head``), max length and checkpointing."""
    from workbench.train.modeling import choose_precision, count_parameters, load_tokenizer, use_gradient_checkpointing

    precision = choose_precision(config.precision, job.settings.workspace)
    spec = start_model(job.settings, config.model)
    tokenizer = load_tokenizer(spec)
    pairs, held = split_pairs(config, job)
    originals = [p["prompt"] for p in pairs + held]
    cut = dict(zip(originals, cut_prompts(config, tokenizer, originals, job.log, job.system)))
    pairs, held = ([dict(p, prompt=cut[p["prompt"]]) for p in rows] for rows in (pairs, held))
    job.log(f"{len(pairs)} training pairs, {len(held)} held out")
    model = job.load_policy(spec, config, precision, head=head, pad_token_id=tokenizer.pad_token_id)
    max_length = config.max_length or pair_max_length(tokenizer, pairs + held, model.config, job.system)
    checkpointing = use_gradient_checkpointing(config, count_parameters(model))
    job.log_start(config, model, precision, checkpointing, max_length=max_length)
    if not config.prompt_gradients:
        from workbench.train.shared_prompt import supported

        if not config.share_prompt:
            job.log("share_prompt is off: the prompts keep their gradients (they run without them only in a packed pair)")
        elif not supported(model):
            job.log("this model runs two rows a pair (train.shared_prompt): the prompts keep their gradients")
        elif checkpointing:
            job.log("gradient checkpointing is on: the prompts keep their gradients (a cached prompt cannot be replayed)")
        else:
            job.log("prompts run without gradients in training: the answers' tokens are trained through, reading "
                    "the prompts' cached keys and values")
    return precision, spec, tokenizer, pairs, held, model, max_length, checkpointing
