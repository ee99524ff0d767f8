"""One model on one set: load the model for its role, then the measures of each set — held-out
loss and ROUGE-L on the SFT references, answers to the preference prompts (judged later), RAG
answers with their grounding and reference overlap, a reward model's preference accuracy."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from storage import read_json, read_manifest
from workbench.chat.system_prompt import trained_under
from workbench.chat.prompt import chat_messages
from workbench.evaluate import metrics
from workbench.models.generation import Sampling, generate_batch
from workbench.models.loading import BASE, ModelSpec, load_for_inference, pick_device_dtype, resolve
from workbench.settings import Settings

POLICY, REWARD = "policy", "reward"


def model_role(settings: Settings, name: str) -> str:
    """``reward`` for a sequence-classification model (it scores answers), ``policy`` otherwise."""
    if name == BASE:
        return POLICY
    config = read_json(settings.workspace.model_dir(name) / "config.json", default={}) or {}
    architectures = config.get("architectures") or [] if isinstance(config, dict) else []
    return REWARD if any(a.endswith("ForSequenceClassification") for a in architectures) else POLICY


@dataclass
class Loaded:
    name: str
    role: str
    model: Any
    tokenizer: Any
    system: str = ""  # a reward model: the system prompt it was trained under, which frames what it scores


def load(settings: Settings, name: str) -> Loaded:
    """The model in eval mode on the best device, as its role needs it."""
    spec = resolve(name, settings.workspace, settings.base_model)
    role = model_role(settings, name)
    if role == POLICY:
        model, tokenizer, _ = load_for_inference(spec, workspace=settings.workspace)
        return Loaded(name, role, model, tokenizer)
    from transformers import AutoModelForSequenceClassification

    from workbench.train.modeling import load_tokenizer

    device, dtype = pick_device_dtype(settings.workspace)
    tokenizer = load_tokenizer(ModelSpec(name, spec.path))
    model = AutoModelForSequenceClassification.from_pretrained(spec.path, num_labels=1, dtype=dtype,
                                                               trust_remote_code=False, use_safetensors=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    system = trained_under(read_manifest(spec.path))
    return Loaded(name, role, model.to(device).eval(), tokenizer, system)


def reply_nll(model, tokenizer, conversations: list[list[dict]], replies: list[str],
              batch_size: int = 8) -> tuple[list[float], list[int]]:
    """Each reference reply's total negative log-likelihood after its conversation (the tokens the
    chat template puts after the generation prompt, end-of-turn included) and its token count."""
    import torch

    examples = []
    for messages, reply in zip(conversations, replies):
        head = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                             return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": reply}],
                                             tokenize=True, return_dict=True)["input_ids"]
        if full[:len(head)] != head:  # a template that re-renders earlier turns: score the reply alone
            full = head + tokenizer(reply, add_special_tokens=False)["input_ids"]
        examples.append((full, len(head)))
    device = next(model.parameters()).device
    totals: list[float] = []
    counts: list[int] = []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start:start + batch_size]
            width = max(len(ids) for ids, _ in batch)
            pad = tokenizer.pad_token_id or 0
            ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch], device=device)
            labels = ids.clone()
            for row, (tokens, head) in enumerate(batch):
                labels[row, :head] = -100
                labels[row, len(tokens):] = -100
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                       ignore_index=-100, reduction="none").view(target.shape)
            totals += losses.sum(dim=1).tolist()
            counts += (target != -100).sum(dim=1).tolist()
    return totals, counts


def test_set(loaded: Loaded, rows: list[dict], options, progress: Callable[[int], None]) -> dict[str, Any]:
    """``rows``: conversations (the system prompt in them already) and their reference replies."""
    nll, tokens = reply_nll(loaded.model, loaded.tokenizer, [r["messages"] for r in rows],
                            [r["reference"] for r in rows], options.batch_size)
    written = answers(loaded, [r["messages"] for r in rows], options, progress)
    loss = sum(nll) / max(sum(tokens), 1)
    overlaps = [metrics.rouge_l(a, r["reference"]) for a, r in zip(written, rows)]
    out = {"metrics": {"test_loss": loss, "test_perplexity": perplexity(loss), "test_rouge_l": metrics.mean(overlaps)},
           "n": {"test_loss": len(rows), "test_perplexity": len(rows), "test_rouge_l": len(rows)},
           "intervals": {}, "answers": written}
    spread = metrics.ratio_interval(nll, tokens)  # the loss is per token: prompts resampled, tokens weighed
    if spread:
        out["intervals"].update(test_loss=list(spread), test_perplexity=[perplexity(v) for v in spread])
    _add_mean_interval(out, "test_rouge_l", overlaps)
    return out


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def _add_mean_interval(out: dict[str, Any], key: str, values: list) -> None:
    found = metrics.mean_interval(values)
    if found:
        out["intervals"][key] = list(found)


def answers_only(loaded: Loaded, prompts: list, options, progress: Callable[[int], None],
                 system: str = "") -> dict[str, Any]:
    return {"metrics": {}, "answers": answers(loaded, prompts, options, progress, system)}


def rag_set(loaded: Loaded, questions: list[dict], prompts: list[str], contexts: list[str], options,
            progress: Callable[[int], None], system: str = "") -> dict[str, Any]:
    out = answers_only(loaded, prompts, options, progress, system)
    written = out["answers"]
    grounded = [g for g in (metrics.grounding(a, c) for a, c in zip(written, contexts)) if g is not None]
    out["metrics"] = {"rag_grounding": metrics.mean(grounded)}
    out["n"], out["intervals"] = {"rag_grounding": len(grounded)}, {}
    _add_mean_interval(out, "rag_grounding", grounded)
    overlaps = [metrics.rouge_l(a, q["reference"]) for a, q in zip(written, questions) if q["reference"]]
    if overlaps:
        out["metrics"]["rag_reference_rouge_l"] = metrics.mean(overlaps)
        out["n"]["rag_reference_rouge_l"] = len(overlaps)
        _add_mean_interval(out, "rag_reference_rouge_l", overlaps)
    return out


def reward_accuracy(loaded: Loaded, pairs: list[dict], options) -> dict[str, Any]:
    from workbench.train.scoring import pair_margins

    margins = pair_margins(loaded.model, loaded.tokenizer, pairs, options.batch_size, loaded.system)
    right = sum(m > 0 for m in margins)
    out = {"metrics": {"preference_accuracy": right / len(margins), "preference_margin": metrics.mean(margins)},
           "n": {"preference_accuracy": len(margins), "preference_margin": len(margins)},
           "intervals": {"preference_accuracy": list(metrics.wilson_interval(right, len(margins)))}}
    _add_mean_interval(out, "preference_margin", margins)
    return out


def judge_scores(loaded: Loaded, prompts: list[str], answers: list[str], options) -> list[float]:
    from workbench.train.scoring import reward_scores

    return reward_scores(loaded.model, loaded.tokenizer, prompts, answers, options.batch_size, system=loaded.system)


def sampling(options) -> Sampling:
    return Sampling(options.temperature, options.max_new_tokens, options.repetition_penalty, options.stop_loops)


def answers(loaded: Loaded, prompts: list, options, progress: Callable[[int], None], system: str = "") -> list[str]:
    """Batched answers with the same sampling and seed for every model."""
    return generate_batch(loaded.model, loaded.tokenizer, prompts, sampling(options), options.batch_size,
                          options.seed, on_batch=lambda done, _: progress(done), system=system)


def fit_context(tokenizer, question: str, contexts: list[str], budget: int, system: str = "") -> tuple[str, int]:
    """The RAG prompt with as many retrieved chunks as fit ``budget`` tokens (in rank order);
    returns the prompt and how many chunks were dropped to fit."""
    from workbench.chat.prompt import build_prompt

    kept = list(contexts)
    while True:
        prompt = build_prompt(question, kept)
        text = tokenizer.apply_chat_template(chat_messages(prompt, system), tokenize=False,
                                             add_generation_prompt=True)
        if not kept or len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= budget:
            return prompt, len(contexts) - len(kept)
        kept.pop()
