"""Merge votes into ``data/dataset_rlhf.jsonl``: one preference pair per line with the seed's
fields (``prompt``, ``chosen``, ``rejected``, ``annotator_comment``, ``timestamp``) plus where it
came from (``id``, ``annotators``, ``model_chosen``, ``model_rejected``, ``votes``).

Rules: ties and both-bad votes give no pair; an annotator's rewritten answer is chosen against
both answers; a pair voted both ways is settled by majority (an even split is dropped and
reported); identical pairs are kept once, and a pair whose two answers are the same text is
dropped and reported (it teaches nothing, and the trainers refuse it). An optional split sends a
deterministic share of prompts (by a hash of the prompt, so one prompt never lands on both
sides) to a test file.
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

from storage.jsonl import write_jsonl_atomic
from workbench.datasets.split import in_test_share
from workbench.feedback.votes import read_votes


def _key(prompt: str, chosen: str, rejected: str) -> str:
    return hashlib.sha256("\x00".join((prompt, chosen, rejected)).encode()).hexdigest()[:16]


def _pair_rows(pair_id: str, votes: list[dict], report: dict) -> list[dict[str, Any]]:
    """The preference rows one A/B pair gives, after majority between annotators."""
    rows = []
    for v in votes:  # rewritten answers stand on their own: chosen against both answers
        edited = (v.get("edited_answer") or "").strip()
        if edited:
            for side in ("a", "b"):
                rows.append(_row(v["prompt"], edited, v[f"answer_{side}"], "annotator", v.get(f"model_{side}", ""), [v]))
    decisive = [v for v in votes if v["choice"] in ("a", "b") and not (v.get("edited_answer") or "").strip()]
    for v in votes:
        if v["choice"] in ("tie", "both_bad") and not (v.get("edited_answer") or "").strip():
            report["dropped"][v["choice"]] += 1
    if not decisive:
        return rows
    counts = Counter(v["choice"] for v in decisive)
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


def _agreement(by_pair: dict[str, list[dict]]) -> float | None:
    """Share of annotator pairs (on the same A/B pair) who made the same choice."""
    same = total = 0
    for votes in by_pair.values():
        for x, y in combinations(votes, 2):
            total += 1
            same += x["choice"] == y["choice"]
    return round(same / total, 4) if total else None


def merge_feedback(feedback: Path, output: Path, test_fraction: float = 0.0, seed: int = 0,
                   test_output: Path | None = None) -> dict[str, Any]:
    """Read every vote (a malformed line raises before anything is written), write the pairs,
    return the summary."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test fraction must be in [0, 1), got {test_fraction}")
    votes = read_votes(feedback)
    latest: dict[str, dict] = {}
    for v in votes:  # one vote per annotator and pair: the last one written wins
        latest[v["id"]] = v
    by_pair: dict[str, list[dict]] = defaultdict(list)
    for v in latest.values():
        by_pair[v["pair_id"]].append(v)
    report: dict[str, Any] = {"votes": len(latest), "pairs_voted": len(by_pair),
                              "dropped": Counter(), "conflicts": [],
                              "per_annotator": dict(Counter(v["annotator"] for v in latest.values())),
                              "agreement": _agreement(by_pair)}
    rows, seen = [], set()
    for pair_id, pair_votes in by_pair.items():
        for row in _pair_rows(pair_id, pair_votes, report):
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
    report.update(kept=len(train), output=str(output), dropped=dict(report["dropped"]))
    return report
