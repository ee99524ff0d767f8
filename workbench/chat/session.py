"""One chat turn: retrieve (optional), build the RAG prompt, stream the model's answer, and keep
the turn (prompt with its context, answer, model, chunk ids) for the Annotate tab on request.
The Chat tab and ``workbench ask`` both call ``answer_stream``."""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from storage import Workspace, append_jsonl
from storage.runs import now_iso
from workbench.chat.model_cache import CACHE, ModelCache
from workbench.chat.prompt import build_prompt, chat_messages
from workbench.chat.system_prompt import current_system_prompt
from workbench.errors import WorkbenchError
from workbench.index.modes import DEFAULT_MODE
from workbench.index.search import Hit, retriever_for
from workbench.limits import ANSWER_CHARS, PROMPT_CHARS, check_text
from workbench.models.generation import (Sampling, context_window, generation_kwargs, one_stream_kwargs,
                                         trim_loop)
from workbench.runtime import name_os_thread, release_openmp_pool
from workbench.settings import Settings


@dataclass
class ChatRequest:
    question: str
    model: str = "base"
    rag: bool = True
    k: int = 5
    mode: str = DEFAULT_MODE
    temperature: float = 0.0
    max_new_tokens: int = 256
    repetition_penalty: float | None = None  # None: the model's default (models.generation)
    stop_loops: bool = True
    rerank: bool | None = None  # rerank the retrieved chunks with the chat model (workbench.index.rerank);
    # None: where it pays (on a GPU, while it costs under rerank.BUDGET_S a question)

    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.max_new_tokens, self.repetition_penalty, self.stop_loops)

    def validate(self) -> None:
        if not self.question or not self.question.strip():
            raise WorkbenchError("the question is empty")
        check_text("the question", self.question, PROMPT_CHARS)
        if not 1 <= self.k <= 50:
            raise WorkbenchError(f"top-k must be between 1 and 50, got {self.k}")
        self.sampling().validate()


@dataclass
class Turn:
    id: str
    question: str
    prompt: str
    model: str
    request: dict[str, Any]
    sources: list[Hit] = field(default_factory=list)
    answer: str = ""
    delta: str = ""  # text added since the previous yield
    done: bool = False
    new_tokens: int = 0
    ttft_s: float | None = None
    seconds: float = 0.0
    note: str | None = None  # e.g. "no documents indexed yet: answered without context"
    weights: str = ""  # how the model's weights are held, e.g. "int8 weights, bfloat16 activations"
    cut: bool = False  # the answer reached max_new_tokens: it may stop mid-sentence
    system_version: int = 0  # the workspace's system prompt it was answered under (0: none)

    @property
    def chunk_ids(self) -> list[str]:
        return [h.chunk_id for h in self.sources]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("delta")
        data["sources"] = [h.to_dict() for h in self.sources]
        data["chunk_ids"] = self.chunk_ids
        data["tokens_per_s"] = round(self.new_tokens / self.seconds, 2) if self.seconds else None
        return data


RERANK_DEPTH = 10  # chunks the model reranks before the top k are kept


def retrieve(settings: Settings, request: ChatRequest, loaded=None) -> tuple[list[Hit], str | None]:
    """The request's top k chunks; reranked (``request.rerank``, or where it pays when that is
    None) from the top ``RERANK_DEPTH`` by ``loaded`` (the chat model), whose ``rerank_seconds``
    keeps what the last rerank cost."""
    if not request.rag:
        return [], None
    from workbench.index import rerank as reranker

    notes = []
    wanted = request.rerank
    if wanted is None and loaded is not None:
        wanted, why = reranker.pays(loaded.device, loaded.rerank_seconds)
        notes.append(why)
    reranking = bool(wanted) and loaded is not None
    depth = max(request.k, RERANK_DEPTH) if reranking else request.k
    retriever = retriever_for(settings.workspace, settings.embedding_model)
    hits = retriever.search(request.question, depth, request.mode)
    if reranking and hits:
        started = time.perf_counter()
        hits = reranker.rerank(loaded.model, loaded.tokenizer, request.question, hits)[:request.k]
        loaded.rerank_seconds = time.perf_counter() - started
    if not hits:
        return hits, "no documents indexed yet: answered without context"
    if request.mode == "hybrid":
        notes.append(retriever.lexical_note(request.question))
    return hits, "; ".join(filter(None, notes)) or None


def stream_generate(loaded, prompt: str, sampling: Sampling, system: str = "") -> Iterator[tuple[str, int]]:
    """Yield (text piece, new tokens so far is unknown until the end: 0) while generating, then
    ("", total new tokens) once done; ``system``: the workspace's system prompt. Errors in the
    generating thread are raised here."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    tokenizer, model = loaded.tokenizer, loaded.model
    inputs = tokenizer.apply_chat_template(chat_messages(prompt, system), add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True).to(loaded.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    outcome: dict[str, Any] = {}
    stop = threading.Event()

    class StopWhenAbandoned(StoppingCriteria):
        """The reader went away (a closed browser tab closes this generator): stop decoding."""

        def __call__(self, input_ids, scores, **kwargs):
            return stop.is_set()

    def work():
        try:
            name_os_thread("generate")
            prompt_length = inputs["input_ids"].shape[-1]
            kwargs = generation_kwargs(model, tokenizer, sampling, prompt_length)
            kwargs.update(one_stream_kwargs(model, loaded.device, prompt_length + sampling.max_new_tokens))
            criteria = StoppingCriteriaList([StopWhenAbandoned(), *kwargs.pop("stopping_criteria", [])])
            with torch.inference_mode():
                out = model.generate(**inputs, streamer=streamer, stopping_criteria=criteria, **kwargs)
            outcome["tokens"] = int(out.shape[-1] - inputs["input_ids"].shape[-1])
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc
            streamer.end()

    release_openmp_pool()  # the generating thread is then the only one with an OpenMP pool
    thread = threading.Thread(target=work, name="generate", daemon=True)
    thread.start()
    try:
        for piece in streamer:
            if piece:
                yield piece, 0
    finally:
        stop.set()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield "", outcome.get("tokens", 0)


def fit_context(loaded, question: str, hits: list[Hit], max_new_tokens: int, system: str = "") -> tuple[list[Hit], int]:
    """Drop the lowest-ranked chunks until prompt, system prompt and answer fit the model's
    context window."""
    limit = context_window(loaded.model) - max_new_tokens - 64  # chat template's own tokens
    if system.strip():
        limit -= len(loaded.tokenizer(system)["input_ids"])
    kept = list(hits)
    while kept:
        length = len(loaded.tokenizer(build_prompt(question, [h.text for h in kept]))["input_ids"])
        if length <= limit:
            break
        kept.pop()
    return kept, len(hits) - len(kept)


def answer_stream(settings: Settings, request: ChatRequest, cache: ModelCache = CACHE) -> Iterator[Turn]:
    """Yield the turn as it grows (``delta`` holds the new text); the last one has ``done``."""
    request.validate()
    loaded = cache.get(request.model, settings.workspace, settings.base_model, settings.decode_weights)
    hits, note = retrieve(settings, request, loaded)
    system = current_system_prompt(settings.workspace)
    hits, trimmed = fit_context(loaded, request.question, hits, request.max_new_tokens, system.text)
    if trimmed:
        note = "; ".join(filter(None, [note, f"{trimmed} retrieved chunk(s) left out to fit the model's context window"]))
    prompt = build_prompt(request.question, [h.text for h in hits])
    turn = Turn(id=uuid.uuid4().hex[:12], question=request.question.strip(), prompt=prompt,
                model=request.model, request=asdict(request), sources=hits, note=note, weights=loaded.weights,
                system_version=system.version)
    started = time.perf_counter()
    for piece, tokens in stream_generate(loaded, prompt, request.sampling(), system.text):
        if piece:
            if turn.ttft_s is None:
                turn.ttft_s = round(time.perf_counter() - started, 4)
            turn.answer += piece
            turn.delta = piece
            turn.seconds = time.perf_counter() - started
            yield turn
        else:
            turn.new_tokens = tokens
    turn.delta, turn.done = "", True
    turn.cut = turn.new_tokens >= request.max_new_tokens
    turn.answer = trim_loop(turn.answer.strip()) if request.stop_loops else turn.answer.strip()
    turn.seconds = round(time.perf_counter() - started, 4)
    yield turn


def save_turn(workspace: Workspace, turn: dict[str, Any], user: str | None) -> dict[str, Any]:
    """Keep a finished turn for the Annotate tab (``data/chat_turns.jsonl``)."""
    if not turn.get("answer", "").strip() or not turn.get("prompt", "").strip():
        raise WorkbenchError("nothing to send: ask a question and wait for the answer first")
    check_text("the turn's prompt", turn["prompt"], PROMPT_CHARS)
    check_text("the turn's answer", turn["answer"], ANSWER_CHARS)
    record = {"id": turn["id"], "prompt": turn["prompt"], "answer": turn["answer"],
              "model": turn["model"], "chunk_ids": turn.get("chunk_ids", []),
              "sources": [{k: s.get(k) for k in ("source", "page", "section", "chunk_id")}
                          for s in turn.get("sources", [])],
              "request": turn.get("request", {}), "new_tokens": turn.get("new_tokens"), "cut": bool(turn.get("cut")),
              "system_version": turn.get("system_version", 0),
              "user": user, "timestamp": now_iso()}
    append_jsonl(workspace.chat_turns_file, [record])
    return record
