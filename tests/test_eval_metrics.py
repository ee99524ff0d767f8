"""Each evaluation metric on fixtures whose value is known by hand: ROUGE-L, the Wilson interval
and win-rate, the t interval of a mean and the bootstrap of a per-token loss, a Bradley–Terry fit on votes whose order is certain, grounding, and hit@k / MRR of
dense and hybrid search on a real three-document FAISS index."""
from __future__ import annotations

import json
import math

import pytest

from tests.conftest import RAG_QUESTIONS, ingest
from tests.helpers import three_docs, write_jsonl


def test_rouge_l_by_hand():
    from workbench.evaluate.metrics import lcs_length, rouge_l

    # candidate: the cat sat on the mat (6), reference: the cat is on the mat (6)
    # LCS = the cat on the mat (5): P = R = 5/6, F1 = 5/6
    assert lcs_length("the cat sat on the mat".split(), "the cat is on the mat".split()) == 5
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    # candidate 2 words, reference 4, LCS 2: P = 1, R = 1/2, F1 = 2/3
    assert rouge_l("alpha beta", "alpha gamma beta delta") == pytest.approx(2 / 3)
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("x y z", "a b c") == 0.0


def test_wilson_interval_and_win_rate():
    from workbench.evaluate.metrics import win_rate, wilson_interval

    low, high = wilson_interval(8, 10)  # textbook value: [0.490, 0.943]
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    found = win_rate([3.0, 2.0, 1.0, 0.5], [1.0, 2.0, 2.0, 0.0])  # win, tie, loss, win
    assert found["rate"] == pytest.approx(2.5 / 4) and found["n"] == 4
    assert found["low"] < found["rate"] < found["high"]
    with pytest.raises(ValueError):
        win_rate([1.0], [1.0, 2.0])


def test_intervals_of_a_mean_and_of_a_per_token_loss_and_how_a_score_reads():
    from workbench.evaluate.metrics import mean_interval, ratio_interval, score_text, t_975

    # 2, 4, 6, 8: mean 5, s = 2.582, t(3) = 3.182 -> 5 ± 4.108
    low, high = mean_interval([2.0, 4.0, 6.0, 8.0])
    assert (round(low, 3), round(high, 3)) == (0.892, 9.108)
    assert mean_interval([1.0]) is None and mean_interval([1.0, None]) is None
    assert t_975(30) == 2.042 and abs(t_975(60) - 2.000) < 0.002 and abs(t_975(10_000) - 1.960) < 0.001
    # a per-token loss: 6 nats over 3 tokens and 2 over 1, the whole is 8 / 4 = 2; resampled prompts
    # give ratios between the two prompts' own (2 and 2): the interval is exactly [2, 2]
    assert ratio_interval([6.0, 2.0], [3, 1]) == (2.0, 2.0)
    low, high = ratio_interval([1.0, 9.0, 4.0, 2.0], [1, 3, 2, 2])
    assert 1.0 <= low < 16 / 8 < high <= 3.0
    assert ratio_interval([1.0], [1]) is None
    assert score_text(0.75, (0.4123, 0.9346), 8) == "0.75 [0.412, 0.935] · n=8 ⚠"
    assert score_text(0.5, None, 40) == "0.5 · n=40" and score_text(None) == ""


def test_bradley_terry_recovers_a_certain_order():
    from workbench.evaluate.metrics import Comparison, bradley_terry

    votes = ([Comparison("dpo", "sft", 1.0)] * 6 + [Comparison("sft", "base", 1.0)] * 6
             + [Comparison("base", "dpo", 0.0)] * 6 + [Comparison("sft", "dpo", 0.5)] * 2)
    ratings = bradley_terry(votes, samples=50)
    assert ratings["dpo"]["rating"] > ratings["sft"]["rating"] > ratings["base"]["rating"]
    assert ratings["dpo"]["votes"] == 14 and ratings["base"]["votes"] == 12
    assert math.isclose(sum(r["rating"] for r in ratings.values()) / 3, 1000.0, abs_tol=1e-6)
    for r in ratings.values():
        assert r["low"] <= r["rating"] <= r["high"]
    assert bradley_terry([]) == {}


def test_grounding_counts_content_words_in_the_context():
    from workbench.evaluate.metrics import grounding

    # content words: etna, volcano, sicily, paris -> 3 of 4 in the context
    assert grounding("Etna is a volcano in Sicily, not Paris.", "Mount Etna is an active volcano on Sicily.") == 0.75
    assert grounding("it is", "anything") is None


def test_hit_at_k_and_mrr_on_a_three_document_index(wb, settings, tmp_path):
    from workbench.evaluate import sets
    from workbench.evaluate.metrics import first_relevant_rank, retrieval_scores
    from workbench.index.search import Retriever

    code, _, err = ingest(wb, str(three_docs(tmp_path / "docs")))
    assert code == 0, err
    questions = write_jsonl(settings.workspace.data / "q.jsonl", RAG_QUESTIONS)
    rows = sets.rag_questions(questions)
    expected = sets.resolve_sources(settings.workspace, rows)
    retriever = Retriever(settings.workspace, settings.embedding_model)
    for mode in ("dense", "hybrid"):
        hits = retriever.search_many([r["question"] for r in rows], 3, mode)
        ranks = [first_relevant_rank([h.doc_id for h in row], relevant) for row, relevant in zip(hits, expected)]
        assert ranks == [1, 1, 1], mode
        assert retrieval_scores(ranks) == {"hit@1": 1.0, "hit@5": 1.0, "mrr": 1.0}
    # the same through `workbench eval-retrieval`, and a question whose expected page is wrong is a miss
    code, out, _ = wb("eval-retrieval", str(questions), "--json")
    assert code == 0 and json.loads(out)["modes"]["dense"] == {"hit@1": 1.0, "hit@5": 1.0, "mrr": 1.0, "misses": []}
    wrong = write_jsonl(settings.workspace.data / "wrong.jsonl",
                        [{"question": "How do bees show where the flowers are?", "sources": ["solar.md"]}])
    code, out, _ = wb("eval-retrieval", str(wrong), "--mode", "dense")
    assert code == 0 and "hit@1 0.000" in out and "expects solar.md; first: bees.md" in out
    # the ranking arithmetic: ranks 1, 3 and a miss
    assert retrieval_scores([1, 3, None]) == pytest.approx({"hit@1": 1 / 3, "hit@5": 2 / 3, "mrr": (1 + 1 / 3) / 3})
    # a TSV question set reads the same; a document not in the corpus is named
    tsv = settings.workspace.data / "q.tsv"
    tsv.write_text("question\tsources\treference\nWhy does a volcano erupt?\tvolcano.md|bees.md\tMagma.\n")
    assert sets.rag_questions(tsv)[0]["sources"] == ["volcano.md", "bees.md"]
    with pytest.raises(Exception, match="not in the corpus: atlas.pdf"):
        sets.resolve_sources(settings.workspace, [{"question": "q", "sources": ["atlas.pdf"], "reference": ""}])
