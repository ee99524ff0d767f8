"""Retrieval quality on a question set: for each search mode, hit@1, hit@5 and MRR by document
(a question is answered when a chunk of one of its expected documents is retrieved), and the
misses (the question, what it expected, what came first). ``workbench eval-retrieval`` and the
evaluation's RAG set both use it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workbench.evaluate import metrics
from workbench.evaluate.sets import resolve_sources
from workbench.index.search import MODES, Hit, Retriever
from workbench.settings import Settings

DEPTH = 10  # ranks looked at for MRR; hit@k for k up to this


@dataclass
class RetrievalRun:
    questions: list[dict[str, Any]]
    expected: list[set[str]]  # document ids per question
    ranked: dict[str, list[list[Hit]]] = field(default_factory=dict)  # mode -> hits per question

    def scores(self) -> dict[str, dict[str, float]]:
        return {mode: metrics.retrieval_scores(self.ranks(mode)) for mode in self.ranked}

    def ranks(self, mode: str) -> list[int | None]:
        return [metrics.first_relevant_rank([h.doc_id for h in hits], relevant)
                for hits, relevant in zip(self.ranked[mode], self.expected)]

    def misses(self, mode: str, k: int = 1) -> list[dict[str, Any]]:
        """Questions whose first ``k`` hits hold none of the expected documents."""
        out = []
        for question, rank, hits in zip(self.questions, self.ranks(mode), self.ranked[mode]):
            if rank is None or rank > k:
                out.append({"question": question["question"], "expected": question["sources"], "rank": rank,
                            "first": hits[0].where() if hits else None})
        return out


def run_retrieval(settings: Settings, questions: list[dict[str, Any]], modes: tuple[str, ...] = MODES,
                  depth: int = DEPTH, rerank_with: str | None = None) -> RetrievalRun:
    """Search every question in every mode (one batch of embeddings per mode). ``rerank_with``: a
    model name; each mode's results are also reranked by it, as ``<mode>+rerank``."""
    expected = resolve_sources(settings.workspace, questions)
    retriever = Retriever(settings.workspace, settings.embedding_model)
    texts = [q["question"] for q in questions]
    ranked = {mode: retriever.search_many(texts, depth, mode) for mode in modes}
    if rerank_with:
        from workbench.index.rerank import rerank
        from workbench.models.loading import load_for_inference, resolve

        model, tokenizer, _ = load_for_inference(resolve(rerank_with, settings.workspace, settings.base_model),
                                                 workspace=settings.workspace)
        for mode in modes:
            ranked[f"{mode}+rerank"] = [rerank(model, tokenizer, text, hits) for text, hits in zip(texts, ranked[mode])]
    return RetrievalRun(questions, expected, ranked)
