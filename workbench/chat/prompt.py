"""The RAG prompt: the question, then ``\\n\\nContext:\\n`` and the retrieved chunks, one after
another. The same shape as a ``dataset_rlhf.jsonl`` prompt, so a chat turn becomes a preference
pair unchanged.

``chat_messages`` turns a prompt into the messages every model sees, in chat and in training
alike: the workspace's system prompt and a line asking for the answer in the question's
language, then the prompt, closed by that line again when the context is in another language."""
from __future__ import annotations

from workbench.language import detect_language, question_language

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


LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
                  "pt": "Portuguese", "nl": "Dutch"}
# In English whatever the language: on 12 questions asked across languages (6 French over English
# context, 6 English over French), SmolLM2-135M answered 2 in the question's language with no
# system line, 6 with this one, 6 with "Answer in French." and 3 with the line written in French
# (`python benchmarks/answer_language.py`; 8 with this one closing the context too, below).
ANSWER_IN = "Always answer in {language}, the language of the question, even when the context is in another language."


def answer_instruction(prompt: str) -> str | None:
    """The line asking for an answer in the question's language, when it is clear and known."""
    return _instruction(question_language(split_prompt(prompt)[0]))


def _instruction(asked: str | None) -> str | None:
    language = LANGUAGE_NAMES.get(asked or "")
    return ANSWER_IN.format(language=language) if language else None


def chat_messages(prompt: str, system: str = "") -> list[dict[str, str]]:
    """The prompt as the conversation a model is given: one system message (the workspace's
    system prompt, ``system``, then the answer-language line), when there is either, then the
    prompt as the user's message, the answer-language line closing it too when the retrieved
    context is in another language than the question; the model's own chat template does the rest."""
    question, context = split_prompt(prompt)
    asked = question_language(question)
    line = _instruction(asked)
    lines = [text for text in (system.strip(), line) if text]
    # After a retrieved context in another language the system line alone is far behind. In the
    # question's language on 30 questions a manual (`python benchmarks/answer_language.py --set
    # NAME`): French over Rust's English book, 5 with the system line alone, 16 with this line
    # closing the context too, 12 with the line in the question's language closing it ("Réponds
    # en français."); French over Django's, 1, 9 and 1; English over LilyPond's French manual, 0,
    # 2 and 3; the 12 short questions there, 6, 8 and 9. This line wins by far where a French
    # team asks over English documents, and is a question behind on the other two.
    closes = line is not None and bool(context) and detect_language(context) not in (None, asked)
    user = f"{prompt}\n\n{line}" if closes else prompt
    return ([{"role": "system", "content": "\n\n".join(lines)}] if lines else []) + [{"role": "user", "content": user}]


def fit_prompt(tokenizer, prompt: str, budget: int, why: str = "to fit the model's context",
               system: str = "") -> tuple[str, str]:
    """The prompt within ``budget`` tokens as the model is given it (``chat_messages``, chat
    template): a RAG prompt loses the end of its context first, a plain one its beginning;
    returns (prompt, note), the note empty when nothing was cut."""
    def length(text: str) -> int:
        rendered = tokenizer.apply_chat_template(chat_messages(text, system), tokenize=False,
                                                 add_generation_prompt=True)
        return len(tokenizer(rendered, add_special_tokens=False)["input_ids"])

    total = length(prompt)
    if total <= budget:
        return prompt, ""
    question, context = split_prompt(prompt)
    over = total - budget
    if context:
        ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        kept = tokenizer.decode(ids[:max(0, len(ids) - over - 8)])
        cut = question + CONTEXT_MARKER + kept if kept.strip() else question
        if length(cut) <= budget:
            removed = len(ids) - len(tokenizer(kept, add_special_tokens=False)["input_ids"])
            return cut, f"the retrieved context was cut by {removed} tokens {why}"
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[over + 8:]), f"the prompt's first {over + 8} tokens were cut {why}"
