"""Scores from a reward model, framed by the chat template exactly as the trainers frame them:
per answer, and the accuracy and margin of a set of preference pairs."""
from __future__ import annotations

from typing import Any


def reward_scores(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 8,
                  max_length: int | None = None) -> list[float]:
    import torch

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": a}],
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


def pair_metrics(model, tokenizer, pairs: list[dict[str, str]], batch_size: int = 8) -> dict[str, Any]:
    """Share of pairs whose chosen answer scores higher, and the mean score margin."""
    if not pairs:
        return {}
    prompts = [p["prompt"] for p in pairs]
    chosen = reward_scores(model, tokenizer, prompts, [p["chosen"] for p in pairs], batch_size)
    rejected = reward_scores(model, tokenizer, prompts, [p["rejected"] for p in pairs], batch_size)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins),
            "pairs": len(pairs)}
