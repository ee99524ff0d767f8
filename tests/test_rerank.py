"""Reranking retrieved chunks by the chat model's likelihood of the question (the real default
model): the passage that answers scores highest, and the fused order is a renumbered permutation
that keeps a chunk both orders put first."""
from __future__ import annotations


def hits_for(texts: list[str]):
    from workbench.index.search import Hit

    return [Hit(rank=i + 1, score=1.0 - i / 10, source=f"doc{i}.txt", page=None, section=None,
                chunk_id=f"doc{i}:0", doc_id=f"doc{i}", text=text) for i, text in enumerate(texts)]


def test_the_passage_that_answers_scores_highest_and_leads_the_fused_order(pulled_base):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.index.rerank import question_log_likelihoods, rerank

    tokenizer = AutoTokenizer.from_pretrained(pulled_base[1])
    model = AutoModelForCausalLM.from_pretrained(pulled_base[1], dtype=torch.float32).eval()
    question = "What is the capital of Germany?"
    hits = hits_for(["Berlin is the capital and largest city of Germany.",
                     "Bananas are yellow when ripe and grow in tropical climates.",
                     "To bake bread, mix flour, water, yeast and salt, then let the dough rise."])
    scores = question_log_likelihoods(model, tokenizer, question, hits)
    assert len(scores) == 3 and scores[0] == max(scores) and all(s < 0 for s in scores)
    # a passage's score does not depend on the others beside it
    alone = question_log_likelihoods(model, tokenizer, question, hits[2:])
    assert abs(alone[0] - scores[2]) < 1e-6

    reordered = rerank(model, tokenizer, question, hits[::-1])  # the answer last in the first stage
    assert sorted(h.chunk_id for h in reordered) == sorted(h.chunk_id for h in hits)
    assert [h.rank for h in reordered] == [1, 2, 3]
    assert reordered[-1].chunk_id != "doc0:0"  # it moved up: the model's order counts
    kept = rerank(model, tokenizer, question, hits)  # first in both orders: stays first
    assert kept[0].chunk_id == "doc0:0"
    assert rerank(model, tokenizer, question, hits[:1]) == hits[:1]
