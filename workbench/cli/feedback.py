"""``workbench merge-feedback`` and ``workbench feedback import|list|stats|guidelines``: the
Annotate tab's data, headless."""
from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path

from workbench import audit
from workbench.safe_text import counted
from workbench.settings import Settings


def add_parsers(sub) -> None:
    merge = sub.add_parser("merge-feedback", help="votes (data/feedback.jsonl) -> data/dataset_rlhf.jsonl")
    merge.add_argument("--test-fraction", type=float, default=0.0,
                       help="share of prompts written to dataset_rlhf_test.jsonl instead (default: 0)")
    merge.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    merge.add_argument("--output", help="default: data/dataset_rlhf.jsonl")
    merge.add_argument("--min-votes", type=int, default=1,
                       help="decisive votes (A or B) a pair needs to be kept (default: 1)")
    merge.add_argument("--min-agreement", type=float, default=0.0,
                       help="share of a pair's decisive votes its majority must hold, e.g. 1 for unanimous (default: 0)")
    merge.add_argument("--exclude-annotators", default="", help="comma-separated annotators whose votes are left out")
    merge.add_argument("--gold-threshold", type=float, default=None,
                       help="leave out annotators whose accuracy on gold pairs is under this (from 3 gold votes)")
    merge.add_argument("--current-guidelines", action="store_true",
                       help="keep only votes cast under the current guidelines")
    merge.add_argument("--json", action="store_true")

    feedback = sub.add_parser("feedback", help="import or list votes").add_subparsers(dest="feedback_cmd", required=True)
    imp = feedback.add_parser("import", help="add votes (vote lines or prompt/chosen/rejected pairs)")
    imp.add_argument("file")
    imp.add_argument("--annotator", help="for lines without one (default: your user name)")
    imp.add_argument("--json", action="store_true")
    feedback.add_parser("list", help="every vote").add_argument("--json", action="store_true")
    feedback.add_parser("stats", help="per set: pairs done, votes left, who is working; agreement; gold accuracy"
                        ).add_argument("--json", action="store_true")
    guide = feedback.add_parser("guidelines", help="show the annotation guidelines, or set them from a Markdown file")
    guide.add_argument("file", nargs="?", help="Markdown or text file in UTF-8: becomes the next version")
    guide.add_argument("--json", action="store_true")


def _summary_text(report: dict) -> str:
    lines = [f"{counted(report['kept'], 'pair')} written to {report['output']} (from {counted(report['votes'], 'vote')} on "
             f"{report['pairs_voted']} A/B pairs)"]
    if report.get("test_file"):
        lines.append(f"{counted(report['test_pairs'], 'pair')} written to {report['test_file']}")
    dropped = {k: v for k, v in report["dropped"].items() if v}
    lines.append("dropped: " + (", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items()) or "none"))
    for c in report["conflicts"]:
        outcome = f"majority {c['resolved'].upper()}" if c["resolved"] else "no majority, dropped"
        lines.append(f"conflict on pair {c['pair_id']}: {c['a']} for A, {c['b']} for B -> {outcome}")
    lines.append("per annotator: " + ", ".join(f"{a} {n}" for a, n in sorted(report["per_annotator"].items())))
    removed = {k: v for k, v in report.get("removed", {}).items() if v}
    if removed:
        lines.append("removed by the rules: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in removed.items()))
    agreement = report["agreement"]
    lines.append("agreement: " + ("n/a (no pair has two votes)" if agreement is None else
                                  f"{agreement:.0%} raw, " + alpha_text(report["chance_corrected"])))
    return "\n".join(lines)


def alpha_text(agreement: dict) -> str:
    alpha = agreement.get("alpha")
    return (f"Krippendorff's alpha {alpha:.2f} on {counted(agreement['pairs'], 'pair')}" if alpha is not None
            else f"alpha n/a ({counted(agreement['pairs'], 'pair')} with two votes or more)")


def stats_text(stats: dict) -> str:
    lines = []
    for c in stats["sets"]:
        working = ", ".join(c["working"]) or "nobody"
        lines.append(f"set {c['set']}: {c['done']}/{counted(c['pairs'], 'pair')} done, {counted(c['votes_left'], 'vote')} left "
                     f"({c['votes_per_pair']} per pair), {c['generating']} generating; working now: {working}")
    lines.append(f"{counted(stats['votes'], 'vote')}; agreement: " + alpha_text(stats["agreement"]))
    for k in stats["agreement"]["kappa"]:
        kappa = "n/a" if k["kappa"] is None else f"{k['kappa']:.2f}"
        lines.append(f"  kappa {k['annotators'][0]} / {k['annotators'][1]}: {kappa} on {counted(k['pairs'], 'pair')}")
    for name, a in stats["annotators"].items():
        parts = [counted(a["votes"], "vote")]
        if a["majority"]:
            parts.append(f"agrees with the majority {a['majority']['agreement']:.0%} of {counted(a['majority']['pairs'], 'pair')}")
        if a["gold"]:
            parts.append(f"gold {a['gold']['accuracy']:.0%} of {a['gold']['pairs']}")
        lines.append(f"  {name}: " + ", ".join(parts))
    g = stats["guidelines"]
    lines.append(f"guidelines: version {g['current']}; votes by version: "
                 + (", ".join(f"v{v} {n}" for v, n in g["votes_by_version"].items()) or "none"))
    return "\n".join(lines)


def cmd_merge(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.feedback.merge import MergeRules, merge_votes

    ws = settings.workspace
    output = Path(args.output) if args.output else ws.rlhf_file
    rules = MergeRules(args.min_votes, args.min_agreement,
                       tuple(a.strip() for a in args.exclude_annotators.split(",") if a.strip()),
                       args.gold_threshold, args.current_guidelines)
    report = merge_votes(ws, output, args.test_fraction, args.seed, rules)
    audit.record(ws, audit.cli_user(), "merge", output.name, detail=f"{report['kept']} pairs")
    print(json.dumps(report, indent=2, ensure_ascii=False)) if args.json else print(_summary_text(report))
    return 0


def cmd_feedback(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.feedback.importing import import_votes
    from workbench.feedback.votes import read_votes

    ws = settings.workspace
    if args.feedback_cmd == "import":
        result = import_votes(Path(args.file), ws.feedback_file, args.annotator or getpass.getuser())
        print(json.dumps(result)) if args.json else print(
            f"{result['written']} votes imported into {ws.feedback_file} ({result['replaced']} replaced)")
        return 0
    if args.feedback_cmd == "stats":
        from workbench.feedback.stats import team_stats

        stats = team_stats(ws)
        print(json.dumps(stats, indent=2, ensure_ascii=False)) if args.json else print(stats_text(stats))
        return 0
    if args.feedback_cmd == "guidelines":
        from workbench.feedback.guidelines import current_guidelines, guidelines_from_file, save_guidelines

        if args.file:
            saved = save_guidelines(ws, guidelines_from_file(Path(args.file)), getpass.getuser())
            audit.record(ws, audit.cli_user(), "guidelines", Path(args.file).name, detail=f"version {saved.version}")
        current = current_guidelines(ws)
        print(json.dumps(current._asdict(), ensure_ascii=False)) if args.json else print(
            f"version {current.version}" + (f" by {current.author}, {current.timestamp}\n\n{current.text}"
                                            if current.version else " (none written yet)"))
        return 0
    votes = read_votes(ws.feedback_file) if ws.feedback_file.exists() else []
    if args.json:
        print(json.dumps(votes, indent=2, ensure_ascii=False))
    for v in [] if args.json else votes:
        print(f"{v['timestamp']}  {v['annotator']:12} {v['choice']:8} {v['pair_id']}  {v['prompt'][:60]!r}")
    return 0


COMMANDS = {"merge-feedback": cmd_merge, "feedback": cmd_feedback}
