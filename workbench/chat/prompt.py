"""The RAG prompt: the question, then ``\\n\\nContext:\\n`` and the retrieved chunks, one after
another. The same shape as a ``dataset_rlhf.jsonl`` prompt, so a chat turn becomes a preference
pair unchanged."""
from __future__ import annotations

CONTEXT_MARKER = "\n\nContext:\n"


def build_prompt(question: str, contexts: list[str]) -> str:
    question = question.strip()
    if not question:
        raise ValueError("the question is empty")
    texts = [t.strip() for t in contexts if t and t.strip()]
    if not texts:
        return question
    return question + CONTEXT_MARKER + "\n\n".join(texts)


def split_prompt(prompt: str) -> tuple[str, str]:
    """(question, context) of a prompt built above; context is "" without retrieval."""
    question, _, context = prompt.partition(CONTEXT_MARKER)
    return question, context


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """The prompt as one user message: the model's own chat template does the rest."""
    return [{"role": "user", "content": prompt}]
