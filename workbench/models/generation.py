"""Generation settings and the guards every generating path shares: defaults that start from the
model's own ``generation_config`` and add what stops degenerate repetition (a mild repetition
penalty on the answer's own tokens, and a stop when the tail of an answer repeats itself),
batched generation with left padding, and the dtype a CPU runs fastest (bf16 only where a quick
timing says it pays)."""
from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from workbench.chat.prompt import chat_messages
from workbench.errors import WorkbenchError

REPETITION_PENALTY = 1.1  # mild: keeps names and numbers from the context, breaks loops
LOOP_COPIES = 3  # a token run repeated this many times in a row ends the answer
LOOP_MAX_TOKENS = 32  # the longest repeated run looked for
_WORD = re.compile(r"\w+")


@dataclass
class Sampling:
    """How one answer is generated; a repetition penalty of ``None`` (or 0, an emptied form field)
    takes the model's default."""

    temperature: float = 0.0
    max_new_tokens: int = 256
    repetition_penalty: float | None = None
    stop_loops: bool = True

    def validate(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise WorkbenchError(f"temperature must be between 0 and 2, got {self.temperature}")
        if not 1 <= self.max_new_tokens <= 4096:
            raise WorkbenchError(f"max new tokens must be between 1 and 4096, got {self.max_new_tokens}")
        if self.repetition_penalty and not 1.0 <= self.repetition_penalty <= 2.0:
            raise WorkbenchError(f"repetition penalty must be between 1 and 2, got {self.repetition_penalty}")


def default_repetition_penalty(model) -> float:
    """The model's own penalty when its generation_config sets one, else the mild default."""
    config = getattr(model, "generation_config", None)
    own = getattr(config, "repetition_penalty", None)
    return float(own) if own and float(own) != 1.0 else REPETITION_PENALTY


def generation_kwargs(model, tokenizer, sampling: Sampling, prompt_length: int = 0) -> dict[str, Any]:
    """``model.generate`` keyword arguments for ``sampling``: greedy at temperature 0, else
    sampling with the model's top-p/top-k (top-p 0.95 when it sets none)."""
    kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    penalty = sampling.repetition_penalty or default_repetition_penalty(model)
    kwargs["repetition_penalty"] = 1.0  # transformers' own would also penalise the prompt: see below
    if penalty != 1.0:
        from transformers import LogitsProcessorList

        kwargs["logits_processor"] = LogitsProcessorList([AnswerRepetitionPenalty(prompt_length, penalty)])
    if sampling.temperature > 0:
        config = getattr(model, "generation_config", None)
        kwargs.update(do_sample=True, temperature=sampling.temperature,
                      top_p=getattr(config, "top_p", None) or 0.95, top_k=getattr(config, "top_k", None))
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if sampling.stop_loops:
        from transformers import StoppingCriteriaList

        kwargs["stopping_criteria"] = StoppingCriteriaList([LoopStop(prompt_length)])
    return kwargs


STATIC_CACHE_MAX_POSITIONS = 3072  # past this, a static cache's attention costs more than it saves


def one_stream_kwargs(model, device: str, positions: int) -> dict[str, Any]:
    """``generate`` arguments for a single stream (chat) of ``model`` on ``device`` with room for
    ``positions`` tokens (prompt and answer). On a CPU: a static KV cache of exactly that size,
    allocated once, where the dynamic one grows every layer's keys and values by a copy at each
    token. With an 875-token prompt decoding ran 1.5x faster (batched generation gained nothing: it
    keeps the dynamic cache). Attention then reads every position of the cache, filled or not,
    about 3 ms per step per 1,000 positions for the 135M model on two cores, so past
    ``STATIC_CACHE_MAX_POSITIONS`` the dynamic cache is kept. The cache is made here, not with
    ``cache_implementation="static"``: transformers then sizes every later cache of the model to
    the longest one so far. GPUs keep transformers' defaults."""
    if device != "cpu" or positions > STATIC_CACHE_MAX_POSITIONS:
        return {}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper
    if not getattr(base, "_supports_default_dynamic_cache", lambda: True)():  # no cache objects (e.g. Mamba)
        return {}
    from transformers import StaticCache

    return {"cache": StaticCache(config=base.config.get_text_config(decoder=True), max_cache_len=positions)}


def repeats_at_end(items: list, copies: int = LOOP_COPIES, longest: int = LOOP_MAX_TOKENS) -> tuple[int, int]:
    """(n, partial): ``items`` ends in a run of n items repeated ``copies`` times in a row and then
    ``partial`` items of one more, unfinished copy; (0, 0) when it does not."""
    total = len(items)
    for n in range(1, longest + 1):
        for partial in range(n):
            end = total - partial
            if end < copies * n:
                break
            unit = items[end - n:end]
            if all(items[end - (c + 1) * n:end - c * n] == unit for c in range(1, copies)) \
                    and items[end:] == unit[:partial]:
                return n, partial
    return 0, 0


def _penalty_class():
    from transformers import LogitsProcessor

    class _AnswerRepetitionPenalty(LogitsProcessor):
        """transformers' repetition penalty on the answer's own tokens only: the prompt's are not
        penalised, so a RAG answer may still quote its context (names, numbers, terms)."""

        def __init__(self, prompt_length: int, penalty: float):
            self.prompt_length, self.penalty = prompt_length, penalty

        def __call__(self, input_ids, scores):
            import torch

            generated = input_ids[:, self.prompt_length:]
            if generated.shape[1] == 0:
                return scores
            picked = torch.gather(scores, 1, generated)
            picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
            return scores.scatter(1, generated, picked)

    return _AnswerRepetitionPenalty


def AnswerRepetitionPenalty(prompt_length: int, penalty: float):  # noqa: N802 - built on first use
    return _penalty_class()(prompt_length, penalty)


def _loop_stop_class():
    from transformers import StoppingCriteria

    class _LoopStop(StoppingCriteria):
        """Ends a sequence whose newest tokens repeat one run ``LOOP_COPIES`` times in a row."""

        def __init__(self, prompt_length: int = 0):
            self.prompt_length = prompt_length

        def __call__(self, input_ids, scores, **kwargs):
            import torch

            window = LOOP_COPIES * LOOP_MAX_TOKENS + LOOP_MAX_TOKENS
            done = []
            for row in input_ids:
                tail = row[max(self.prompt_length, row.shape[0] - window):].tolist()
                done.append(repeats_at_end(tail)[0] > 0)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return _LoopStop


def LoopStop(prompt_length: int = 0):  # noqa: N802 - a class made on first use (transformers loads lazily)
    return _loop_stop_class()(prompt_length)


def context_window(model) -> int:
    """The most tokens the model reads at once (prompt and answer)."""
    return int(getattr(model.config, "max_position_embeddings", 0) or 2048)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def ends_in_loop(text: str) -> bool:
    """Whether the answer ends in a run of words repeated three times or more (the last word may
    be cut short by the token limit)."""
    found = words(text)
    return repeats_at_end(found, LOOP_COPIES, 40)[0] > 0 or repeats_at_end(found[:-1], LOOP_COPIES, 40)[0] > 0


def trim_loop(text: str) -> str:
    """The answer with a looping tail cut back to the end of its first copy (marked "…")."""
    spans = list(_WORD.finditer(text))
    n, partial = repeats_at_end([m.group().lower() for m in spans], LOOP_COPIES, 40)
    if not n and spans:  # the last word cut short by the token limit
        spans = spans[:-1]
        n, partial = repeats_at_end([m.group().lower() for m in spans], LOOP_COPIES, 40)
    if not n:
        return text
    found = [m.group().lower() for m in spans]
    start = len(found) - partial - n  # the last whole copy; walk back to the first one
    while start - n >= 0 and found[start - n:start] == found[start:start + n]:
        start -= n
    return text[:spans[start + n - 1].end()].rstrip() + " …"


def generate_batch(model, tokenizer, prompts: list, sampling: Sampling, batch_size: int = 8, seed: int = 0,
                   on_batch: Callable[[int, list[str]], None] | None = None, system: str = "") -> list[str]:
    """Answers to ``prompts`` (strings, framed by ``chat_messages`` with the system prompt
    ``system``, or message lists, taken as they are) with the chat template, several prompts per
    forward pass (left-padded); ``on_batch(done, answers_of_the_batch)`` after each batch."""
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    answers: list[str] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                texts = [tokenizer.apply_chat_template(
                    chat_messages(p, system) if isinstance(p, str) else p, tokenize=False,
                    add_generation_prompt=True) for p in prompts[start:start + batch_size]]
                enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                width = enc["input_ids"].shape[1]
                out = model.generate(**enc, **generation_kwargs(model, tokenizer, sampling, width))
                batch = [trim_loop(a.strip()) if sampling.stop_loops else a.strip()
                         for a in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]
                answers += batch
                if on_batch is not None:
                    on_batch(len(answers), batch)
    finally:
        tokenizer.padding_side = side
    return answers


@functools.lru_cache(maxsize=1)
def cpu_bf16_pays() -> bool:
    """Whether bf16 matmuls beat fp32 on this CPU: never without native bf16 (AMX or AVX512-BF16:
    emulation is many times slower), else when a quick timing says so."""
    from workbench.runtime import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        return False
    import torch

    a32, b32 = torch.randn(256, 1024), torch.randn(1024, 1024)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = a32.to(dtype), b32.to(dtype)
        timings[dtype] = seconds_for(lambda: a @ b, 10)
    return timings[torch.bfloat16] * 1.2 < timings[torch.float32]


def seconds_for(fn, repeats: int) -> float:
    """Seconds ``repeats`` calls of ``fn`` take after one warm-up call: the hardware probes' timer."""
    fn()
    began = time.perf_counter()
    for _ in range(repeats):
        fn()
    return time.perf_counter() - began
