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


def test_one_padded_batch_scores_each_passage_as_it_scores_alone(pulled_base):
    """The GPU's path (one left-padded batch, each passage at its own positions) gives each
    passage the score it gets alone; run here in fp32 on the CPU, where it is not the default."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.index.rerank import question_log_likelihoods

    tokenizer = AutoTokenizer.from_pretrained(pulled_base[1])
    model = AutoModelForCausalLM.from_pretrained(pulled_base[1], dtype=torch.float32).eval()
    hits = hits_for(["Pour créer une table, on écrit CREATE TABLE suivi du nom et des colonnes.",
                     "Bananas are yellow.",
                     "An index speeds up a search on a column; CREATE INDEX builds one, and a large table "
                     "takes a while to index. Each index costs space and slows the writes a little."])
    question = "Comment crée-t-on une table ?"
    alone = question_log_likelihoods(model, tokenizer, question, hits, batched=False)
    together = question_log_likelihoods(model, tokenizer, question, hits, batched=True)
    assert max(abs(a - b) for a, b in zip(alone, together)) < 1e-4
    assert alone.index(max(alone)) == 0


def test_on_by_default_on_a_gpu_until_a_rerank_costs_over_the_budget():
    from workbench.index.rerank import BUDGET_S, pays

    assert pays("cpu", None) == (False, None)  # 3-4 s a question on two cores: asked for, never assumed
    assert pays("cuda:0", None) == (True, None)
    assert pays("cuda", BUDGET_S / 2) == (True, None)
    on, why = pays("cuda", 0.25)
    assert not on and "250 ms" in why and "100 ms" in why
