"""Scores from a reward model, framed by the chat template exactly as the trainers frame them
(``system``: the system prompt the model was trained under): per answer, and the accuracy and
margin of a set of preference pairs."""
from __future__ import annotations

from typing import Any

from workbench.chat.prompt import chat_messages


def reward_scores(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 8,
                  max_length: int | None = None, system: str = "") -> list[float]:
    import torch

    texts = [tokenizer.apply_chat_template(chat_messages(p, system) + [{"role": "assistant", "content": a}],
                                           tokenize=False) for p, a in zip(prompts, answers)]
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    device = next(model.parameters()).device
    scores: list[float] = []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                                truncation=max_length is not None, max_length=max_length, add_special_tokens=False)
                logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
                scores.extend(logits[:, 0].float().cpu().tolist())
    finally:
        tokenizer.padding_side = side
    return scores


def pair_margins(model, tokenizer, pairs: list[dict[str, str]], batch_size: int = 8, system: str = "") -> list[float]:
    """Each pair's chosen score minus its rejected score."""
    prompts = [p["prompt"] for p in pairs]
    chosen = reward_scores(model, tokenizer, prompts, [p["chosen"] for p in pairs], batch_size, system=system)
    rejected = reward_scores(model, tokenizer, prompts, [p["rejected"] for p in pairs], batch_size, system=system)
    return [c - r for c, r in zip(chosen, rejected)]


def pair_metrics(model, tokenizer, pairs: list[dict[str, str]], batch_size: int = 8, system: str = "") -> dict[str, Any]:
    """Share of pairs whose chosen answer scores higher, and the mean score margin."""
    if not pairs:
        return {}
    margins = pair_margins(model, tokenizer, pairs, batch_size, system)
    return {"accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins),
            "pairs": len(pairs)}


def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 48, batch_size: int = 8,
                     do_sample: bool = False, temperature: float = 1.0, seed: int = 0, system: str = "") -> list[str]:
    """The model's answers to ``prompts`` (chat template, left-padded batches)."""
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    answers: list[str] = []
    try:
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                texts = [tokenizer.apply_chat_template(chat_messages(p, system), tokenize=False,
                                                       add_generation_prompt=True)
                         for p in prompts[start:start + batch_size]]
                enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                     temperature=temperature if do_sample else None, top_p=None, top_k=None,
                                     pad_token_id=tokenizer.pad_token_id)
                answers += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return answers


def answer_logprobs(model, tokenizer, prompts: list[str], answers: list[str], system: str = "") -> list[float]:
    """Sum of the log-probabilities the model gives each answer's tokens after its prompt."""
    import torch

    device = next(model.parameters()).device
    totals = []
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers):
            head = tokenizer.apply_chat_template(chat_messages(prompt, system), tokenize=False,
                                                 add_generation_prompt=True)
            head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            if not answer_ids:
                totals.append(0.0)
                continue
            ids = torch.tensor([head_ids + answer_ids], device=device)
            logprobs = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
            picked = logprobs[len(head_ids) - 1:].gather(1, ids[0, len(head_ids):, None])
            totals.append(picked.sum().item())
    return totals
