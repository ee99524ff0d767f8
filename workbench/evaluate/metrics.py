"""The evaluation's metrics as plain functions of plain data: ROUGE-L, a win-rate with its Wilson
interval, a Bradley–Terry rating of models from pairwise votes with bootstrap intervals, hit@k
and MRR of a ranking, and answer grounding in a retrieved context."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from workbench.models.generation import words

# Words that carry no claim: grounding counts the others.
STOPWORDS = frozenset("""a an and are as at be been but by can could did do does for from had has have he her
his how i if in into is it its me my no not of on or our she so that the their them then there these they
this to was we were what when where which who why will with would you your""".split())


def lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased words: the longest common subsequence against both lengths."""
    cand, ref = words(candidate), words(reference)
    if not cand or not ref:
        return 0.0
    common = lcs_length(cand, ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def grounding(answer: str, context: str) -> float | None:
    """Share of the answer's content words (not stopwords, not single characters) that appear in
    the context; None for an answer without any."""
    content = [w for w in words(answer) if w not in STOPWORDS and len(w) > 1]
    if not content:
        return None
    seen = set(words(context))
    return sum(w in seen for w in content) / len(content)


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default); ties may count as halves."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# Student's t at 97.5 % for 1 to 30 degrees of freedom; beyond, its Cornish–Fisher expansion.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
FEW = 20  # under this many items a score is flagged: its interval is wide


def t_975(df: int) -> float:
    if df <= len(T_975):
        return T_975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df)


def mean_interval(values) -> tuple[float, float] | None:
    """The 95 % t interval of a mean; None under two values (no spread to measure)."""
    values = [v for v in values if v is not None]
    n = len(values)
    if n < 2:
        return None
    centre = sum(values) / n
    sd = math.sqrt(sum((v - centre) ** 2 for v in values) / (n - 1))
    half = t_975(n - 1) * sd / math.sqrt(n)
    return centre - half, centre + half


def ratio_interval(numerators: list[float], denominators: list[float], samples: int = 400,
                   seed: int = 0) -> tuple[float, float] | None:
    """A 95 % percentile-bootstrap interval of sum(numerators) / sum(denominators), resampling the
    items (a per-token loss over prompts of different lengths); None under two items."""
    n = len(numerators)
    if n < 2:
        return None
    rng = random.Random(seed)
    draws = []
    for _ in range(samples):
        picked = [rng.randrange(n) for _ in range(n)]
        total = sum(denominators[i] for i in picked)
        if total:
            draws.append(sum(numerators[i] for i in picked) / total)
    if not draws:
        return None
    draws.sort()
    return draws[int(0.025 * (len(draws) - 1))], draws[int(0.975 * (len(draws) - 1))]


def score_text(value, interval=None, n: int | None = None) -> str:
    """A score as people read it: ``0.75 [0.41, 0.93] · n=8 ⚠`` (the warning under ``FEW`` items)."""
    if value is None:
        return ""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    if interval:
        text += f" [{interval[0]:.3g}, {interval[1]:.3g}]"
    if n is not None:
        text += f" · n={n}" + (" ⚠" if n < FEW else "")
    return text


def win_rate(scores: list[float], against: list[float]) -> dict:
    """How often the first answer of each prompt outscores the second (a tie counts half), with
    its 95 % Wilson interval."""
    if len(scores) != len(against):
        raise ValueError("win_rate needs one score of each side per prompt")
    wins = sum(1.0 if s > o else 0.5 if s == o else 0.0 for s, o in zip(scores, against))
    n = len(scores)
    low, high = wilson_interval(wins, n)
    return {"rate": wins / n if n else None, "low": low, "high": high, "n": n}


# what each metric is, for tables and plots: (label, higher is better)
METRICS = {
    "test_loss": ("held-out loss", False),
    "test_perplexity": ("held-out perplexity", False),
    "test_rouge_l": ("ROUGE-L vs reference", True),
    "win_rate_vs_base": ("win-rate vs base", True),
    "win_rate_vs_parent": ("win-rate vs parent", True),
    "judge_reward": ("mean judge reward", True),
    "preference_accuracy": ("preference accuracy", True),
    "preference_margin": ("preference margin", True),
    "rag_grounding": ("RAG grounding", True),
    "rag_reference_rouge_l": ("RAG ROUGE-L vs reference", True),
    "human_rating": ("human rating (Bradley–Terry)", True),
    "human_votes": ("votes", True),
}


# ranking ----------------------------------------------------------------------------------
def first_relevant_rank(ranked: list[str], relevant: set[str]) -> int | None:
    """1-based rank of the first relevant item, None when none is in the ranking."""
    for rank, item in enumerate(ranked, start=1):
        if item in relevant:
            return rank
    return None


def retrieval_scores(ranks: list[int | None], ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """hit@k (share of queries with a relevant item in the top k) and MRR (mean of 1 / rank)."""
    n = len(ranks)
    if n == 0:
        return {}
    out = {f"hit@{k}": sum(r is not None and r <= k for r in ranks) / n for k in ks}
    out["mrr"] = sum(1 / r for r in ranks if r) / n
    return out


# Bradley–Terry -----------------------------------------------------------------------------
ELO_SCALE = 400 / math.log(10)  # a rating gap of 400 = 10:1 odds, as chess ratings read
ELO_BASE = 1000.0


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    outcome: float  # 1: first preferred, 0: second preferred, 0.5: tie


def fit_bradley_terry(comparisons: list[Comparison], prior: float = 0.1,
                      iterations: int = 100) -> dict[str, float]:
    """Log-strengths by Newton's method on the Bradley–Terry likelihood, with a small Gaussian
    prior (so a model that won every vote gets a large finite rating), centred on zero."""
    import numpy as np

    names = sorted({c.first for c in comparisons} | {c.second for c in comparisons})
    if not names:
        return {}
    index = {name: i for i, name in enumerate(names)}
    i = np.array([index[c.first] for c in comparisons])
    j = np.array([index[c.second] for c in comparisons])
    y = np.array([c.outcome for c in comparisons], dtype=float)
    theta = np.zeros(len(names))
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(theta[i] - theta[j])))
        grad = -prior * theta
        np.add.at(grad, i, y - p)
        np.add.at(grad, j, p - y)
        w = p * (1 - p)
        hess = -prior * np.eye(len(names))
        np.add.at(hess, (i, i), -w)
        np.add.at(hess, (j, j), -w)
        np.add.at(hess, (i, j), w)
        np.add.at(hess, (j, i), w)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.max(np.abs(step)) < 1e-9:
            break
    theta -= theta.mean()
    return {name: float(theta[index[name]]) for name in names}


def bradley_terry(comparisons: list[Comparison], samples: int = 200, seed: int = 0) -> dict[str, dict]:
    """Every model's rating on an Elo-like scale (1000 = the average model), a 95 % interval from
    a bootstrap over the votes, and the number of votes it appears in."""
    if not comparisons:
        return {}
    point = fit_bradley_terry(comparisons)
    rng = random.Random(seed)
    draws: dict[str, list[float]] = {name: [] for name in point}
    for _ in range(samples):
        resample = [comparisons[rng.randrange(len(comparisons))] for _ in comparisons]
        fitted = fit_bradley_terry(resample, iterations=30)
        for name in point:
            if name in fitted:
                draws[name].append(fitted[name])
    counts = {name: 0 for name in point}
    for c in comparisons:
        counts[c.first] += 1
        counts[c.second] += 1
    out = {}
    for name, value in point.items():
        values = sorted(draws[name]) or [value]
        low, high = values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))]
        out[name] = {"rating": ELO_BASE + ELO_SCALE * value, "low": ELO_BASE + ELO_SCALE * low,
                     "high": ELO_BASE + ELO_SCALE * high, "votes": counts[name]}
    return out
