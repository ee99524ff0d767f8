"""Built-in Python reward functions for GRPO, in TRL's signature ``f(prompts, completions, **kw)``:
grounding in the prompt's ``Context:`` and a length penalty."""
from __future__ import annotations

import re

WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]{3,}")
TARGET_WORDS = 60


def _text(item) -> str:
    if isinstance(item, list):  # conversational: a list of messages
        return " ".join(m.get("content", "") for m in item if isinstance(m, dict))
    return str(item)


def _context(prompt: str) -> str:
    return prompt.split("Context:", 1)[1] if "Context:" in prompt else ""


def grounding(prompts, completions, **kwargs) -> list[float]:
    """Share of the answer's words (4+ letters) found in the prompt's context; 0 without one."""
    scores = []
    for prompt, completion in zip(prompts, completions):
        context = {w.lower() for w in WORD.findall(_context(_text(prompt)))}
        words = [w.lower() for w in WORD.findall(_text(completion))]
        scores.append(sum(w in context for w in words) / len(words) if context and words else 0.0)
    return scores


def length_penalty(prompts, completions, **kwargs) -> list[float]:
    """0 up to TARGET_WORDS words, then minus the share of words beyond it; -1 for an empty answer."""
    scores = []
    for completion in completions:
        words = len(_text(completion).split())
        scores.append(-1.0 if words == 0 else -max(0, words - TARGET_WORDS) / TARGET_WORDS)
    return scores


FUNCTIONS = {"grounding": grounding, "length": length_penalty}
