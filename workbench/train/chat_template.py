"""Training chat templates: assistant-only loss needs ``{% generation %}`` markers, which many
tokenizers' templates (SmolLM2's among them) lack. TRL ships training variants of the templates it
knows; this module adds the ones shipped in ``templates/`` and accepts a candidate only when it
renders every probe conversation and every data row exactly as the tokenizer's own template."""
from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"

PROBES: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"},
     {"role": "assistant", "content": "6"}],
]


def _has_markers(template: str | None) -> bool:
    from trl.chat_template_utils import has_generation_markers

    return bool(template) and has_generation_markers(template)


def renders_identically(tokenizer, candidate: str, conversations: list[list[dict[str, Any]]]) -> bool:
    for messages in conversations:
        for prompt_only in (False, True):
            shown = messages[:-1] if prompt_only else messages
            if not shown:
                continue
            own = tokenizer.apply_chat_template(shown, tokenize=False, add_generation_prompt=prompt_only)
            new = tokenizer.apply_chat_template(shown, tokenize=False, add_generation_prompt=prompt_only,
                                                chat_template=candidate)
            if own != new:
                return False
    return True


def training_template(tokenizer, rows: list[dict[str, Any]] | None = None) -> tuple[str | None, str]:
    """(template to train with, where it comes from). ``None`` with "own" when the tokenizer's
    template already has markers; ``None`` with a reason when no candidate renders identically
    (the caller then trains on the last reply through prompt/completion rows)."""
    own = getattr(tokenizer, "chat_template", None)
    if not own:
        return None, "the tokenizer has no chat template"
    if _has_markers(own):
        return None, "own"
    conversations = PROBES + [r["messages"] for r in (rows or [])[:64] if "messages" in r]
    candidates: list[tuple[str, str]] = []
    try:
        from trl.chat_template_utils import get_training_chat_template

        found = get_training_chat_template(tokenizer)
        if found:
            candidates.append((found, "trl"))
    except (ValueError, TypeError, NotImplementedError):
        pass
    candidates += [(p.read_text(), p.name) for p in sorted(TEMPLATES.glob("*.jinja"))]
    for template, source in candidates:
        try:
            if renders_identically(tokenizer, template, conversations):
                return template, source
        except Exception:  # a template for another family may not even render these messages
            continue
    return None, "no training template renders identically to the tokenizer's own"
