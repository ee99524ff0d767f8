"""Reranking retrieved chunks with a causal language model: each chunk is scored by how likely
the model finds the question after reading it (query likelihood, as in UPR: Sachan et al.,
"Improving Passage Retrieval with Zero-Shot Question Generation", 2022), and that order is fused
with the first-stage order by reciprocal rank.

On the five documentation sets of ``benchmarks/retrieval.py``, the default chat model reranking
the hybrid top 10 this way lifts hit@1 by page from 0.72 to 0.82 (PostgreSQL), 0.897 to 0.936
(Rust's book) and 0.898 to 0.939 (Erlang's PDFs), and costs Django one question of 50 (0.80 to
0.78); the model's order alone was no better than the first stage's (0.72 and 0.68 on PostgreSQL
and Django, an earlier run), so both are kept. It costs a forward pass over each chunk and the
question: 1.3 to 1.6 s per question on two CPU cores.

The default model is English, yet on the French LilyPond manual its rerank lifts hybrid search
from 0.53 to 0.62 at hit@1 (48 of 78 questions first; 1.6 s a question on two cores:
``benchmarks/retrieval.py --set lilypond-fr --rerank MODEL_DIR``): the question's words are in
the passage that answers it, and the model's likelihood follows them in French too. So a
document's language is no reason to skip it.

On a GPU the ten passages go through the model in one batch: 76 ms a question at the median on an
H200 (Rust's book; 34 ms on the French manual) against 339 ms one passage at a time, the same
hit@1 both ways (``benchmarks/rerank_speed.py``). Under ``BUDGET_S`` it is on by default there.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from workbench.index.search import Hit

BUDGET_S = 0.1  # on by default where a question's rerank costs less than this
RRF_K = 10  # small: the lists are ten long, and the top of each should count
PASSAGE_CHARS = 1500
INSTRUCTION = "Write a question that this passage answers."


def passage_prompt(tokenizer: Any, hit: Hit) -> str:
    head = f"{hit.source} > {hit.section}" if hit.section else hit.source
    messages = [{"role": "user", "content": f"Passage:\n{head}\n{hit.text[:PASSAGE_CHARS]}\n\n{INSTRUCTION}"}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def question_log_likelihoods(model: Any, tokenizer: Any, question: str, hits: list[Hit],
                             batched: bool | None = None) -> list[float]:
    """Mean log-probability of the question's tokens after each hit's passage prompt.

    On a GPU the passages go in one left-padded batch (their own positions, the padding masked);
    elsewhere (``batched`` None) one pass per passage, unpadded: on a CPU a padded batch scored a
    little differently in bf16, and it moved hit@1, and batching gains little there."""
    import torch

    question_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    asked = len(question_ids)
    device = next(model.parameters()).device
    rows = [tokenizer(passage_prompt(tokenizer, hit), add_special_tokens=False)["input_ids"] + question_ids
            for hit in hits]
    if batched is None:
        batched = device.type == "cuda"
    groups = [rows] if batched else [[row] for row in rows]
    scores = []
    for group in groups:
        width = max(len(row) for row in group)
        ids = torch.tensor([[0] * (width - len(row)) + row for row in group], device=device)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in group], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():  # logits only where they predict the question, not a vocabulary per token
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                           logits_to_keep=asked + 1).logits.float()
        log_probs = torch.log_softmax(logits[:, :asked], dim=-1).gather(-1, ids[:, -asked:, None])[..., 0]
        scores += [float(v) for v in log_probs.mean(dim=-1)]
    return scores


def pays(device: str, seconds: float | None) -> tuple[bool, str | None]:
    """Whether a chat turn reranks when the asker did not say, and why not when it was on offer:
    on a GPU, until a rerank with this model has cost ``BUDGET_S`` or more; never on a CPU (3-3.5 s a
    question with the default model on two cores)."""
    if not device.startswith("cuda"):
        return False, None
    if seconds is not None and seconds >= BUDGET_S:
        return False, (f"sources not reranked: the last rerank with this model took {1000 * seconds:.0f} ms "
                       f"(over {1000 * BUDGET_S:.0f} ms); tick Rerank to have it anyway")
    return True, None


def fused_order(scores: list[float]) -> list[int]:
    """The positions of hits listed best first by the search, in the order that fuses the
    search's ranks with the ranks of the model's ``scores`` (one per hit) by reciprocal rank."""
    by_model = sorted(range(len(scores)), key=lambda i: -scores[i])
    model_rank = {index: rank for rank, index in enumerate(by_model)}
    return sorted(range(len(scores)), key=lambda i: -(1 / (RRF_K + i) + 1 / (RRF_K + model_rank[i])))


def rerank(model: Any, tokenizer: Any, question: str, hits: list[Hit]) -> list[Hit]:
    """``hits`` (best first) in the fused order, ranks renumbered from 1."""
    if len(hits) < 2:
        return list(hits)
    fused = fused_order(question_log_likelihoods(model, tokenizer, question, hits))
    return [dataclasses.replace(hits[i], rank=rank) for rank, i in enumerate(fused, start=1)]
