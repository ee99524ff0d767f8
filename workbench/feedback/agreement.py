"""How far annotators agree, corrected for chance, on pairs with two or more votes.

- Cohen's kappa for each two annotators, on the pairs both voted on;
- Krippendorff's alpha (nominal) over everyone, missing votes allowed;
- each annotator's agreement with the majority of the others on the same pairs;
- each annotator's accuracy on gold pairs (a side known to be right).

Every figure comes with the number of pairs behind it: a kappa on four pairs says little.
Choices are compared as shown (A = left), which every annotator of a pair saw the same way.

Plain Python on purpose: ``workbench feedback stats`` must answer in 200 ms at 10,000 votes, and
importing numpy (which the ``krippendorff`` package needs) takes 60-80 ms of it on two cores. The
tests hold both figures to published examples and alpha to the ``krippendorff`` package.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any

from workbench.feedback.votes import CHOICES

MIN_GOLD_VOTES = 3  # an accuracy on fewer gold pairs is shown but never used to drop anyone


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; ``None`` when chance agreement is
    total (both always gave the same single label), where kappa is undefined."""
    if len(first) != len(second) or not first:
        raise ValueError("two lists of labels of the same non-zero length are needed")
    n = len(first)
    observed = sum(x == y for x, y in zip(first, second)) / n
    a, b = _counts(first), _counts(second)
    expected = sum(count * b.get(label, 0) for label, count in a.items()) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha(units: dict[str, dict[str, str]]) -> float | None:
    """Nominal alpha over units (item -> {rater: label}), from the coincidence matrix
    (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"); ``None`` with fewer than
    two rated units or a single label used throughout."""
    totals: dict[str, int] = {}
    disagreement = 0.0  # the coincidence matrix's off-diagonal mass
    rated = 0
    for ratings in units.values():
        m = len(ratings)
        if m < 2:
            continue
        rated += 1
        unit = _counts(ratings.values())
        for label, count in unit.items():
            totals[label] = totals.get(label, 0) + count
        disagreement += (m * m - sum(c * c for c in unit.values())) / (m - 1)
    if rated < 2 or len(totals) < 2:
        return None
    n = sum(totals.values())
    expected = n * n - sum(c * c for c in totals.values())
    return 1.0 - (n - 1) * disagreement / expected


def pairwise_kappa(units: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    raters = sorted({rater for ratings in units.values() for rater in ratings})
    rows = []
    for x, y in combinations(raters, 2):
        shared = [r for r in units.values() if x in r and y in r]
        if shared:
            kappa = cohen_kappa([r[x] for r in shared], [r[y] for r in shared])
            rows.append({"annotators": [x, y], "kappa": None if kappa is None else round(kappa, 4),
                         "pairs": len(shared),
                         "raw_agreement": round(sum(r[x] == r[y] for r in shared) / len(shared), 4)})
    return rows


def majority_agreement(units: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Per annotator: how often their vote matches the strict majority of the others on the
    same pair (pairs where the others split evenly are not counted)."""
    tallies: dict[str, list[int]] = {}
    for ratings in units.values():
        if len(ratings) < 2:
            continue
        others = _counts(ratings.values())
        for rater, label in ratings.items():
            others[label] -= 1  # everyone but this rater
            most = max(others.values())
            leaders = [v for v, n in others.items() if n == most]
            others[label] += 1
            if len(leaders) > 1:
                continue
            hit = tallies.setdefault(rater, [0, 0])
            hit[0] += label == leaders[0]
            hit[1] += 1
    return {r: {"agreement": round(same / n, 4), "pairs": n} for r, (same, n) in sorted(tallies.items())}


def _counts(labels) -> dict[str, int]:
    """How many times each label occurs (a dict: ``Counter`` costs twice as much on 10,000 pairs)."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return counts


def gold_accuracy(votes: list[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    """Per annotator, from ``(annotator, choice, right letter as shown)`` of votes on gold pairs."""
    tallies: dict[str, list[int]] = {}
    for annotator, choice, right in votes:
        hit = tallies.setdefault(annotator, [0, 0])
        hit[0] += choice == right
        hit[1] += 1
    return {a: {"accuracy": round(right / n, 4), "pairs": n} for a, (right, n) in sorted(tallies.items())}


def agreement_report(by_pair: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Every agreement figure over the pairs with two votes or more."""
    units = {pair: ratings for pair, ratings in by_pair.items() if len(ratings) >= 2}
    alpha = krippendorff_alpha(units)
    return {"pairs": len(units), "alpha": None if alpha is None else round(alpha, 4),
            "kappa": pairwise_kappa(units), "majority": majority_agreement(units), "labels": list(CHOICES)}
