"""What a trainer reads about a team's annotation: per set, pairs done, votes left and who is
working now; per annotator, votes, agreement with the others and accuracy on gold pairs;
overall, chance-corrected agreement. Read-only: the Annotate counters, Monitor,
``workbench feedback stats`` and the merge report all come from here."""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from storage import Workspace
from workbench.feedback.agreement import agreement_report, gold_accuracy
from workbench.feedback.distribution import live_leases, target
from workbench.feedback.guidelines import current_guidelines
from workbench.feedback.pairs import PairSummary, pair_store
from workbench.feedback.sets import read_sets
from workbench.feedback.tally import VoteRow, vote_rows, voters_by_pair
from workbench.safe_text import counted


def set_counters(pairs: dict[str, PairSummary], voters: dict[str, dict[str, str]], workspace: Workspace,
                 now: float | None = None) -> list[dict[str, Any]]:
    sets = read_sets(workspace)
    leases = live_leases(workspace, time.time() if now is None else now)
    working: dict[str, set[str]] = defaultdict(set)
    for annotator, lease in leases.items():
        pair = pairs.get(lease["pair_id"])
        if pair is not None:
            working[pair.set_name].add(annotator)
    counters: dict[str, dict[str, Any]] = {}
    for pair in pairs.values():
        c = counters.setdefault(pair.set_name, {"set": pair.set_name, "votes_per_pair": target(pair, sets),
                                                "pairs": 0, "generating": 0, "done": 0, "votes": 0, "votes_left": 0})
        have = len(voters.get(pair.pair_id, {}))
        c["pairs"] += 1
        c["generating"] += not pair.ready
        c["votes"] += have
        c["done"] += have >= c["votes_per_pair"]
        c["votes_left"] += max(0, c["votes_per_pair"] - have)
    for name, c in counters.items():
        c["working"] = sorted(working.get(name, ()))
    return sorted(counters.values(), key=lambda c: c["set"])


def gold_votes(rows: list[VoteRow], pairs: dict[str, PairSummary]) -> list[tuple[str, str, str]]:
    """``(annotator, choice, right letter as shown)`` of every vote on a gold pair."""
    out = []
    for row in rows:
        pair = pairs.get(row.pair_id)
        if pair is not None and pair.gold:
            out.append((row.annotator, row.choice, pair.shown_letter(pair.gold)))
    return out


def team_stats(workspace: Workspace, now: float | None = None) -> dict[str, Any]:
    rows = vote_rows(workspace.feedback_file)
    pairs = pair_store(workspace).summaries()
    voters = voters_by_pair(rows)
    per_annotator = Counter(row.annotator for row in rows)
    gold = gold_accuracy(gold_votes(rows, pairs))
    agreement = agreement_report(voters)
    annotators = {a: {"votes": n, "majority": agreement["majority"].get(a), "gold": gold.get(a)}
                  for a, n in sorted(per_annotator.items())}
    return {"votes": len(rows), "pairs": len(pairs), "sets": set_counters(pairs, voters, workspace, now),
            "annotators": annotators, "agreement": {k: agreement[k] for k in ("pairs", "alpha", "kappa")},
            "guidelines": {"current": current_guidelines(workspace).version,
                           "votes_by_version": dict(sorted(Counter(r.guidelines_version for r in rows).items()))}}


def progress(workspace: Workspace, annotator: str, skipped: set[str] | None = None,
             now: float | None = None) -> dict[str, Any]:
    """One annotator's counters and their sets'; ``skipped``: the pairs they skipped on this page."""
    pairs = pair_store(workspace).summaries()
    rows = vote_rows(workspace.feedback_file)
    voters = voters_by_pair(rows)
    sets = read_sets(workspace)
    mine = {row.pair_id for row in rows if row.annotator == annotator} & set(pairs)
    open_to_me = {p.pair_id for p in pairs.values() if p.pair_id not in mine
                  and len(voters.get(p.pair_id, {})) < target(p, sets)}
    passed = open_to_me & set(skipped or ())
    return {"mine": len(mine), "left": len(open_to_me - passed), "skipped": len(passed), "total": len(pairs),
            "generating": sum(not p.ready for p in pairs.values()),
            "per_annotator": dict(Counter(row.annotator for row in rows)),
            "sets": set_counters(pairs, voters, workspace, now)}


def progress_text(p: dict[str, Any]) -> str:
    totals = ", ".join(f"{a}: {n}" for a, n in sorted(p["per_annotator"].items())) or "none yet"
    generating = f" ({p['generating']} still generating)" if p.get("generating") else ""
    passed = f", {p['skipped']} skipped" if p.get("skipped") else ""
    text = (f"**{p['mine']} voted · {p['left']} left for you**{passed} of {p['total']} pair{'s' * (p['total'] != 1)}"
            f"{generating} · all annotators: {totals}")
    for c in p.get("sets", []) if len(p.get("sets", [])) > 1 or any(c["votes_per_pair"] > 1 or c["working"]
                                                                     for c in p.get("sets", [])) else []:
        working = ", ".join(c["working"]) or "nobody"
        text += (f"\n\nset **{c['set']}** ({c['votes_per_pair']} vote{'s' * (c['votes_per_pair'] > 1)} a pair): "
                 f"{c['done']} of {counted(c['pairs'], 'pair')} done · {counted(c['votes_left'], 'vote')} left · "
                 f"working now: {working}")
    return text


def _share(figure: dict | None, key: str) -> str:
    return f"{figure[key]:.0%} of {counted(figure['pairs'], 'pair')}" if figure else "–"


def stats_markdown(stats: dict[str, Any]) -> str:
    """The trainer's view: sets, agreement with the pairs behind each figure, annotators."""
    lines = ["| set | votes a pair | pairs done | votes left | generating | working now |", "|---|---|---|---|---|---|"]
    for c in stats["sets"]:
        lines.append(f"| {c['set']} | {c['votes_per_pair']} | {c['done']} / {c['pairs']} | {c['votes_left']} | "
                     f"{c['generating']} | {', '.join(c['working']) or '–'} |")
    agreement = stats["agreement"]
    alpha = agreement["alpha"]
    lines += ["", f"**Agreement** on {counted(agreement['pairs'], 'pair')} with two votes or more: Krippendorff's alpha "
                  + ("n/a" if alpha is None else f"**{alpha:.2f}**")
              + " (1 = always agree, 0 = chance, below 0 = worse than chance)"]
    if agreement["kappa"]:
        lines += ["", "| annotators | Cohen's kappa | raw agreement | pairs |", "|---|---|---|---|"]
        for k in agreement["kappa"]:
            kappa = "n/a" if k["kappa"] is None else f"{k['kappa']:.2f}"
            lines.append(f"| {k['annotators'][0]} · {k['annotators'][1]} | {kappa} | {k['raw_agreement']:.0%} | {k['pairs']} |")
    if stats["annotators"]:
        lines += ["", "| annotator | votes | agrees with the majority | gold accuracy |", "|---|---|---|---|"]
        for name, a in stats["annotators"].items():
            lines.append(f"| {name} | {a['votes']} | {_share(a['majority'], 'agreement')} | {_share(a['gold'], 'accuracy')} |")
    g = stats["guidelines"]
    by_version = ", ".join(f"v{v}: {n}" for v, n in g["votes_by_version"].items()) or "none"
    lines += ["", f"Guidelines: version {g['current']} · votes by version: {by_version}"]
    return "\n".join(lines)
