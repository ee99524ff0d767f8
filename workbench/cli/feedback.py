"""``workbench merge-feedback`` and ``workbench feedback import|list``: the Annotate tab's data,
headless."""
from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path

from workbench import audit
from workbench.settings import Settings


def add_parsers(sub) -> None:
    merge = sub.add_parser("merge-feedback", help="votes (data/feedback.jsonl) -> data/dataset_rlhf.jsonl")
    merge.add_argument("--test-fraction", type=float, default=0.0,
                       help="share of prompts written to dataset_rlhf_test.jsonl instead (default: 0)")
    merge.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    merge.add_argument("--output", help="default: data/dataset_rlhf.jsonl")
    merge.add_argument("--json", action="store_true")

    feedback = sub.add_parser("feedback", help="import or list votes").add_subparsers(dest="feedback_cmd", required=True)
    imp = feedback.add_parser("import", help="add votes (vote lines or prompt/chosen/rejected pairs)")
    imp.add_argument("file")
    imp.add_argument("--annotator", help="for lines without one (default: your user name)")
    imp.add_argument("--json", action="store_true")
    feedback.add_parser("list", help="every vote").add_argument("--json", action="store_true")


def _summary_text(report: dict) -> str:
    lines = [f"{report['kept']} pairs written to {report['output']} (from {report['votes']} votes on "
             f"{report['pairs_voted']} A/B pairs)"]
    if report.get("test_file"):
        lines.append(f"{report['test_pairs']} pairs written to {report['test_file']}")
    dropped = {k: v for k, v in report["dropped"].items() if v}
    lines.append("dropped: " + (", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items()) or "none"))
    for c in report["conflicts"]:
        outcome = f"majority {c['resolved'].upper()}" if c["resolved"] else "no majority, dropped"
        lines.append(f"conflict on pair {c['pair_id']}: {c['a']} for A, {c['b']} for B -> {outcome}")
    lines.append("per annotator: " + ", ".join(f"{a} {n}" for a, n in sorted(report["per_annotator"].items())))
    agreement = report["agreement"]
    lines.append("agreement: " + ("n/a (no pair has two votes)" if agreement is None else f"{agreement:.0%}"))
    return "\n".join(lines)


def cmd_merge(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.feedback.merge import merge_feedback

    ws = settings.workspace
    if not ws.feedback_file.exists():
        raise ValueError(f"no votes yet: {ws.feedback_file} does not exist")
    output = Path(args.output) if args.output else ws.rlhf_file
    report = merge_feedback(ws.feedback_file, output, args.test_fraction, args.seed)
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
    votes = read_votes(ws.feedback_file) if ws.feedback_file.exists() else []
    if args.json:
        print(json.dumps(votes, indent=2, ensure_ascii=False))
    for v in [] if args.json else votes:
        print(f"{v['timestamp']}  {v['annotator']:12} {v['choice']:8} {v['pair_id']}  {v['prompt'][:60]!r}")
    return 0


COMMANDS = {"merge-feedback": cmd_merge, "feedback": cmd_feedback}
