"""How far annotators agree, corrected for chance, on pairs with two or more votes.

- Cohen's kappa for each two annotators, on the pairs both voted on;
- Krippendorff's alpha (nominal) over everyone, missing votes allowed (the ``krippendorff``
  package);
- each annotator's agreement with the majority of the others on the same pairs;
- each annotator's accuracy on gold pairs (a side known to be right).

Every figure comes with the number of pairs behind it: a kappa on four pairs says little.
Choices are compared as shown (A = left), which every annotator of a pair saw the same way.
"""
from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Any

import numpy as np

from workbench.feedback.votes import CHOICES

MIN_GOLD_VOTES = 3  # an accuracy on fewer gold pairs is shown but never used to drop anyone


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; ``None`` when chance agreement is
    total (both always gave the same single label), where kappa is undefined."""
    if len(first) != len(second) or not first:
        raise ValueError("two lists of labels of the same non-zero length are needed")
    labels = sorted(set(first) | set(second))
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for x, y in zip(first, second):
        table[index[x], index[y]] += 1
    table /= table.sum()
    observed = np.trace(table)
    expected = float(table.sum(axis=1) @ table.sum(axis=0))
    if expected >= 1.0:
        return None
    return float((observed - expected) / (1.0 - expected))


def krippendorff_alpha(units: dict[str, dict[str, str]]) -> float | None:
    """Nominal alpha over units (item -> {rater: label}); ``None`` with fewer than two rated
    units or a single label used throughout."""
    import krippendorff

    units = {u: r for u, r in units.items() if len(r) >= 2}
    raters = sorted({rater for ratings in units.values() for rater in ratings})
    labels = sorted({label for ratings in units.values() for label in ratings.values()})
    if len(units) < 2 or len(labels) < 2:
        return None
    code = {label: float(i) for i, label in enumerate(labels)}
    data = np.full((len(raters), len(units)), np.nan)
    for j, ratings in enumerate(units.values()):
        for i, rater in enumerate(raters):
            if rater in ratings:
                data[i, j] = code[ratings[rater]]
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


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
        for rater, label in ratings.items():
            others = Counter(v for r, v in ratings.items() if r != rater).most_common()
            if not others or (len(others) > 1 and others[0][1] == others[1][1]):
                continue
            hit = tallies.setdefault(rater, [0, 0])
            hit[0] += label == others[0][0]
            hit[1] += 1
    return {r: {"agreement": round(same / n, 4), "pairs": n} for r, (same, n) in sorted(tallies.items())}


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
