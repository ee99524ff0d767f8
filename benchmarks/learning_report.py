"""The tables of ``benchmarks/learning.py``'s results (the JSONL files its ``--out`` writes, one
run a line): the learning curve at the defaults, each DPO or GRPO run's answers judged by every
rule, each setting's figure by rule, and each rule left out in turn while a setting is chosen on
the others.

    python benchmarks/learning_report.py RESULTS.jsonl [MORE.jsonl ...]
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def figure_of(row: dict) -> str:
    return "accuracy" if row["method"] == "reward" else "win_rate"


def cell(rows: list[dict]) -> str:
    """One run: its figure and 95 % Wilson interval. Several (seeds): their mean, the lowest and
    highest run, and how many; runs draw other votes but are measured on the same held-out items,
    so one interval over all their items would count each item several times."""
    key = figure_of(rows[0])
    if len(rows) == 1:
        row = rows[0]
        if key == "accuracy":
            return f"{row['accuracy']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"
        return (f"{row['win_rate']:.2f} [{row['low']:.2f}, {row['high']:.2f}] "
                f"({row['wins']}-{row['losses']}-{row['ties']})")
    values = [r[key] for r in rows]
    return f"{statistics.mean(values):.2f} (runs {min(values):.2f} to {max(values):.2f}, {len(rows)} runs)"


def curve(rows: list[dict]) -> list[str]:
    """At the defaults: a line per set, method and rule, a column per vote count."""
    cells = defaultdict(list)
    for r in rows:
        if r["setting"] == "defaults":
            cells[(r.get("set", ""), r["method"], r["rule"], r["votes"])].append(r)
    counts = sorted({key[3] for key in cells})
    out = ["| set | method | rule | " + " | ".join(f"{n} votes" for n in counts) + " |",
           "|---|---|---|" + "---|" * len(counts)]
    for line in sorted({key[:3] for key in cells}):
        out.append(f"| {' | '.join(line)} | " + " | ".join(cell(cells[(*line, n)]) if cells[(*line, n)] else ""
                                                        for n in counts) + " |")
    return out


def by_setting(rows: list[dict]) -> list[str]:
    cells = defaultdict(list)
    for r in rows:
        cells[(r["setting"], r["rule"])].append(r)
    rules = sorted({r["rule"] for r in rows})
    out = ["| setting | " + " | ".join(rules) + " | mean |", "|---|" + "---|" * (len(rules) + 1)]
    for setting in sorted({key[0] for key in cells}, key=lambda s: (s != "defaults", s)):
        means = [statistics.mean(r[figure_of(r)] for r in cells[(setting, rule)]) if cells[(setting, rule)] else None
                 for rule in rules]
        known = [m for m in means if m is not None]
        overall = f"{statistics.mean(known):.3f}" if known else ""
        out.append(f"| {setting} | " + " | ".join("" if m is None else f"{m:.3f}" for m in means) + f" | {overall} |")
    return out


def by_rule(rows: list[dict]) -> list[str]:
    """Each DPO or GRPO run's answers judged by every rule (``by_rule``, wins-losses-ties against
    the base): what else the votes of one rule moved."""
    judged = [r for r in rows if r.get("by_rule")]
    if not judged:
        return []
    rules = list(judged[0]["by_rule"])
    out = ["| rule trained | votes | seed | setting | " + " | ".join(f"by {name}" for name in rules) + " |",
           "|---|---|---|---|" + "---|" * len(rules)]
    for r in sorted(judged, key=lambda r: (r["rule"], r["votes"], r["seed"], r["setting"])):
        cells = [f"{v['wins']}-{v['losses']}-{v['ties']}" if v else ""
                 for v in (r["by_rule"].get(name) for name in rules)]
        out.append(f"| {r['rule']} | {r['votes']} | {r['seed']} | {r['setting']} | " + " | ".join(cells) + " |")
    return out


def leave_one_rule_out(rows: list[dict]) -> list[dict]:
    """For each rule in turn, the setting with the best mean figure on the other rules (every vote
    count and seed run), and what it and the defaults score on the rule left out."""
    rules = sorted({r["rule"] for r in rows})
    labels = sorted({r["setting"] for r in rows})

    def mean(setting: str, among: set[str]) -> float | None:
        values = [r[figure_of(r)] for r in rows if r["setting"] == setting and r["rule"] in among]
        return round(statistics.mean(values), 3) if values else None

    out = []
    for left in rules:
        others = set(rules) - {left}
        scored = [(m, s) for s in labels if (m := mean(s, others)) is not None]
        if len(scored) < 2:
            continue
        best_mean, best = max(scored, key=lambda ms: (ms[0], ms[1] == "defaults"))  # a tie keeps the defaults
        out.append({"left_out": left, "chosen": best, "chosen_on_others": best_mean,
                    "left_out_with_chosen": mean(best, {left}), "left_out_with_defaults": mean("defaults", {left})})
    return out


def main() -> None:
    rows = [json.loads(line) for path in sys.argv[1:] for line in Path(path).read_text().splitlines() if line.strip()]
    for (set_name, method), group in sorted(_groups(rows).items()):
        print(f"\n## {set_name or 'the set'}: {method}\n")
        print("\n".join(curve(group)))
        if lines := by_rule(group):
            print()
            print("\n".join(lines))
        if len({r["setting"] for r in group}) > 1:
            print()
            print("\n".join(by_setting(group)))
            for line in leave_one_rule_out(group):
                print(json.dumps(line))


def _groups(rows: list[dict]) -> dict:
    out = defaultdict(list)
    for r in rows:
        out[(r.get("set", ""), r["method"])].append(r)
    return out


if __name__ == "__main__":
    main()
