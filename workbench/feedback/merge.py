"""Merge votes into ``data/dataset_rlhf.jsonl``: one preference pair per line with the seed's
fields (``prompt``, ``chosen``, ``rejected``, ``annotator_comment``, ``timestamp``) plus where it
came from (``id``, ``annotators``, ``model_chosen``, ``model_rejected``, ``votes``).

Rules: ties and both-bad votes give no pair; an annotator's rewritten answer is chosen against
both answers; a pair voted both ways is settled by majority (an even split is dropped and
reported); identical pairs are kept once, and a pair whose two answers are the same text is
dropped and reported (it teaches nothing, and the trainers refuse it). An optional split sends a
deterministic share of prompts (by a hash of the prompt, so one prompt never lands on both
sides) to a test file.

``MergeRules`` choose votes before that: leave out named annotators, annotators under a gold
accuracy, votes cast under older guidelines; keep only pairs with enough decisive votes and a
large enough majority. Gold pairs made or imported as checks (``source`` gold) measure the
annotators and stay out of the data. The report says what each rule removed.
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from storage import Workspace
from workbench.errors import WorkbenchError
from workbench.feedback.agreement import MIN_GOLD_VOTES, agreement_report, gold_accuracy

from storage.jsonl import write_jsonl_atomic
from workbench.datasets.split import in_test_share
from workbench.feedback.guidelines import current_guidelines
from workbench.feedback.pairs import pair_store
from workbench.feedback.votes import read_votes

WRITTEN = "annotator"  # a row's ``model_chosen`` when an annotator wrote its chosen answer


def _key(prompt: str, chosen: str, rejected: str) -> str:
    return hashlib.sha256("\x00".join((prompt, chosen, rejected)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MergeRules:
    min_votes: int = 1  # decisive votes (A or B) a pair needs to give a row
    min_agreement: float = 0.0  # share of those votes the majority must hold (1.0: unanimous)
    exclude_annotators: tuple[str, ...] = ()
    gold_threshold: float | None = None  # leave out annotators under this accuracy on gold pairs
    current_guidelines_only: bool = False

    def validate(self) -> None:
        if isinstance(self.min_votes, bool) or not isinstance(self.min_votes, int) or self.min_votes < 1:
            raise WorkbenchError(f"min votes must be a whole number from 1, got {self.min_votes!r}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise WorkbenchError(f"min agreement is a share from 0 to 1, got {self.min_agreement!r}")
        if self.gold_threshold is not None and not 0.0 <= self.gold_threshold <= 1.0:
            raise WorkbenchError(f"the gold threshold is an accuracy from 0 to 1, got {self.gold_threshold!r}")


def _select_votes(latest: list[dict], rules: MergeRules, gold_letters: dict[str, str], guidelines: int,
                  report: dict) -> list[dict]:
    """The votes the annotator rules keep; ``report["removed"]`` counts what each rule left out."""
    removed = report["removed"]
    excluded = set(rules.exclude_annotators)  # grows by the annotators under the gold threshold
    accuracy = gold_accuracy([(v["annotator"], v["choice"], gold_letters[v["pair_id"]])
                              for v in latest if v["pair_id"] in gold_letters])
    report["gold"] = accuracy
    if rules.gold_threshold is not None:
        under = {a for a, g in accuracy.items() if g["pairs"] >= MIN_GOLD_VOTES and g["accuracy"] < rules.gold_threshold}
        report["under_gold_threshold"] = sorted(under)
        excluded |= under
    named = set(rules.exclude_annotators)
    kept = []
    for v in latest:
        if v["annotator"] in named:
            removed["excluded_annotator_votes"] += 1
        elif v["annotator"] in excluded:
            removed["under_gold_threshold_votes"] += 1
        elif rules.current_guidelines_only and int(v.get("guidelines_version") or 0) != guidelines:
            removed["older_guidelines_votes"] += 1
        else:
            kept.append(v)
    return kept


def _pair_rows(pair_id: str, votes: list[dict], report: dict, rules: MergeRules) -> list[dict[str, Any]]:
    """The preference rows one A/B pair gives, after majority between annotators."""
    rows = []
    for v in votes:  # rewritten answers stand on their own: chosen against both answers
        edited = (v.get("edited_answer") or "").strip()
        if edited:
            for side in ("a", "b"):
                rows.append(_row(v["prompt"], edited, v[f"answer_{side}"], WRITTEN, v.get(f"model_{side}", ""), [v]))
    decisive = [v for v in votes if v["choice"] in ("a", "b") and not (v.get("edited_answer") or "").strip()]
    for v in votes:
        if v["choice"] in ("tie", "both_bad") and not (v.get("edited_answer") or "").strip():
            report["dropped"][v["choice"]] += 1
    if not decisive:
        return rows
    counts = Counter(v["choice"] for v in decisive)
    if len(decisive) < rules.min_votes:
        report["removed"]["too_few_votes_pairs"] += 1
        return rows
    if max(counts["a"], counts["b"]) / len(decisive) < rules.min_agreement:
        report["removed"]["split_votes_pairs"] += 1
        return rows
    if counts["a"] == counts["b"]:
        report["dropped"]["no_majority"] += 1
        report["conflicts"].append({"pair_id": pair_id, "a": counts["a"], "b": counts["b"], "resolved": None})
        return rows
    winner = "a" if counts["a"] > counts["b"] else "b"
    loser = "b" if winner == "a" else "a"
    if counts["a"] and counts["b"]:
        report["conflicts"].append({"pair_id": pair_id, "a": counts["a"], "b": counts["b"], "resolved": winner})
    backing = [v for v in decisive if v["choice"] == winner]
    first = backing[0]
    rows.append(_row(first["prompt"], first[f"answer_{winner}"], first[f"answer_{loser}"],
                     first.get(f"model_{winner}", ""), first.get(f"model_{loser}", ""), backing))
    return rows


def _row(prompt: str, chosen: str, rejected: str, model_chosen: str, model_rejected: str,
         votes: list[dict]) -> dict[str, Any]:
    comments = [v["comment"].strip() for v in votes if (v.get("comment") or "").strip()]
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected,
            "annotator_comment": " | ".join(comments),
            "timestamp": max(v["timestamp"] for v in votes),
            "id": _key(prompt, chosen, rejected), "annotators": sorted({v["annotator"] for v in votes}),
            "model_chosen": model_chosen, "model_rejected": model_rejected,
            "votes": [v["id"] for v in votes]}


def _agreement(by_pair: dict[str, dict[str, str]]) -> float | None:
    """Raw share of annotator pairs (on the same A/B pair) who made the same choice."""
    same = total = 0
    for ratings in by_pair.values():
        for x, y in combinations(ratings.values(), 2):
            total += 1
            same += x == y
    return round(same / total, 4) if total else None


def merge_feedback(feedback: Path, output: Path, test_fraction: float = 0.0, seed: int = 0,
                   test_output: Path | None = None, rules: MergeRules | None = None,
                   gold_letters: dict[str, str] | None = None, guidelines: int = 0,
                   checks: set[str] | None = None) -> dict[str, Any]:
    """Read every vote (a malformed line raises before anything is written), write the pairs,
    return the summary. ``gold_letters``: pair id -> the right letter as shown, for gold pairs;
    ``guidelines``: the current guidelines version; ``checks``: pairs that are only checks."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test fraction must be in [0, 1), got {test_fraction}")
    rules = rules or MergeRules()
    rules.validate()
    votes = read_votes(feedback)
    latest: dict[str, dict] = {}
    for v in votes:  # one vote per annotator and pair: the last one written wins
        latest[v["id"]] = v
    everyone: dict[str, dict[str, str]] = defaultdict(dict)
    for v in latest.values():
        everyone[v["pair_id"]][v["annotator"]] = v["choice"]
    report: dict[str, Any] = {"votes": len(latest), "pairs_voted": len(everyone),
                              "dropped": Counter(), "removed": Counter(), "conflicts": [],
                              "per_annotator": dict(Counter(v["annotator"] for v in latest.values())),
                              "agreement": _agreement(everyone), "chance_corrected": agreement_report(everyone)}
    by_pair: dict[str, list[dict]] = defaultdict(list)
    for v in _select_votes(list(latest.values()), rules, gold_letters or {}, guidelines, report):
        if v["pair_id"] in (checks or ()):
            report["removed"]["gold_check_votes"] += 1
            continue
        by_pair[v["pair_id"]].append(v)
    rows, seen = [], set()
    for pair_id, pair_votes in by_pair.items():
        for row in _pair_rows(pair_id, pair_votes, report, rules):
            if row["chosen"].strip() == row["rejected"].strip():  # teaches nothing; trainers refuse it
                report["dropped"]["same_answer"] += 1
                continue
            if row["id"] in seen:
                report["dropped"]["duplicate"] += 1
                continue
            seen.add(row["id"])
            rows.append(row)
    held_out = [bool(test_fraction) and in_test_share(r["prompt"], test_fraction, seed) for r in rows]
    train = [r for r, out in zip(rows, held_out) if not out]
    test = [r for r, out in zip(rows, held_out) if out]
    write_jsonl_atomic(Path(output), train)
    if test_fraction:
        target = test_output or Path(output).with_name(Path(output).stem + "_test.jsonl")
        write_jsonl_atomic(target, test)
        report["test_file"], report["test_pairs"] = str(target), len(test)
    report.update(kept=len(train), output=str(output), dropped=dict(report["dropped"]), removed=dict(report["removed"]))
    return report


def merge_votes(workspace: Workspace, output: Path | None = None, test_fraction: float = 0.0, seed: int = 0,
                rules: MergeRules | None = None) -> dict[str, Any]:
    """``merge_feedback`` on a workspace: its votes, its gold pairs, its current guidelines."""
    if not workspace.feedback_file.exists():
        raise WorkbenchError(f"no votes yet: {workspace.feedback_file} does not exist")
    pairs = pair_store(workspace).all().values()
    gold = {p.pair_id: p.shown_letter(p.gold) for p in pairs if p.gold}
    return merge_feedback(workspace.feedback_file, output or workspace.rlhf_file, test_fraction, seed,
                          rules=rules, gold_letters=gold, guidelines=current_guidelines(workspace).version,
                          checks={p.pair_id for p in pairs if p.gold and p.source == "gold"})
