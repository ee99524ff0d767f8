"""``workbench eval --models base,NAME [--sets test,preferences,rag,votes] [--flag ...] [--queue]
[--json]``: the Evaluate tab's launch, headless; ``workbench scoreboard [--csv FILE] [--json]``:
its table; ``workbench questions add|list``: the RAG question set; ``workbench eval-retrieval
QUESTIONS [--mode dense|hybrid] [--json]``: search quality on a question set, with the misses."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli.common import add_config_arguments, config_from_arguments, print_json, run_kind
from workbench.kinds import get_kind
from workbench.settings import Settings

KIND = "evaluate"


def add_parsers(sub) -> None:
    add_config_arguments(sub.add_parser("eval", help=get_kind(KIND).description), get_kind(KIND).load()[0])
    ret = sub.add_parser("eval-retrieval", help="hit@1, hit@5, MRR and the misses of search on a question set")
    ret.add_argument("questions", help="JSONL or TSV: question, sources (the documents that answer it)")
    ret.add_argument("--mode", choices=["dense", "hybrid"], action="append",
                     help="search mode (repeatable; default: both)")
    ret.add_argument("--rerank", nargs="?", const="base", metavar="MODEL",
                     help="also rerank each mode's top 10 with a model (default: base), shown as <mode>+rerank")
    ret.add_argument("--json", action="store_true")
    board = sub.add_parser("scoreboard", help="every model with its newest evaluation scores and lineage")
    board.add_argument("--csv", dest="csv_file", help="write the table as CSV to this file ('-' = stdout)")
    board.add_argument("--json", action="store_true")
    questions = sub.add_parser("questions", help="the RAG question set of evaluation").add_subparsers(
        dest="questions_cmd", required=True)
    add = questions.add_parser("add", help="add a question with the document(s) that answer it")
    add.add_argument("question")
    add.add_argument("--source", action="append", required=True, help="a document of the corpus (repeatable)")
    add.add_argument("--reference", default="", help="a reference answer")
    add.add_argument("--file", default="rag_questions.jsonl", help="the set, under data/")
    listing = questions.add_parser("list")
    listing.add_argument("--file", default="rag_questions.jsonl")
    listing.add_argument("--json", action="store_true")


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    code = run_kind(settings, KIND, config_from_arguments(args, get_kind(KIND).load()[0]), args.queue, args.json,
                    result_extra=_scores)
    if not args.queue and not args.json:
        _print_latest(settings)
    return code


def _scores(run) -> dict:
    """What ``--json`` adds to the run record: each model's scores and intervals, the retrieval
    scores and what they were computed with, from the run's report."""
    from storage import read_json

    report = read_json(run.folder / "report.json", default=None)
    if not isinstance(report, dict):
        return {}
    return {"scores": {m: {"metrics": row.get("metrics"), "intervals": row.get("intervals"), "n": row.get("n") or {},
                           "error": row.get("error")} for m, row in (report.get("models") or {}).items()},
            "retrieval": report.get("retrieval"), "retrieval_questions": report.get("retrieval_questions"),
            "environment": report.get("environment")}


def _print_latest(settings: Settings) -> None:
    from workbench.evaluate.scoreboard import evaluation_reports

    reports = evaluation_reports(settings)
    if not reports:
        return
    report = reports[0]
    from workbench.evaluate.metrics import score_text

    for name, row in report["models"].items():
        found = ", ".join(f"{k} {score_text(v, row['intervals'].get(k), (row.get('n') or {}).get(k))}"
                          for k, v in row["metrics"].items())
        print(f"{name}: {row['error'] or found or 'no scores'}")
    for mode, scores in (report.get("retrieval") or {}).items():
        print(f"retrieval {mode}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
              + (f" ({report['retrieval_questions']} questions)" if report.get("retrieval_questions") else ""))
    print(f"report: {settings.workspace.runs / report['run_id'] / 'report.html'}")


def cmd_eval_retrieval(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.evaluate.retrieval import run_retrieval
    from workbench.evaluate.sets import rag_questions

    questions = rag_questions(Path(args.questions))
    found = run_retrieval(settings, questions, tuple(args.mode or ("dense", "hybrid")), rerank_with=args.rerank)
    report = {mode: {**scores, "misses": found.misses(mode)} for mode, scores in found.scores().items()}
    if args.json:
        print_json({"questions": len(questions), "modes": report})
        return 0
    for mode, scores in report.items():
        print(f"{mode}: hit@1 {scores['hit@1']:.3f}  hit@5 {scores['hit@5']:.3f}  MRR {scores['mrr']:.3f}  "
              f"({len(questions)} questions)")
        for miss in scores["misses"]:
            where = f"first: {miss['first']}" if miss["first"] else "nothing retrieved"
            rank = f"found at {miss['rank']}" if miss["rank"] else "not in the top 10"
            print(f"  miss: {miss['question']!r} expects {', '.join(miss['expected'])}; {where}; {rank}")
    return 0


def cmd_scoreboard(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.evaluate.scoreboard import build, table, to_csv, to_json

    board = build(settings)
    if args.csv_file:
        text = to_csv(board)
        if args.csv_file == "-":
            sys.stdout.write(text)
        else:
            Path(args.csv_file).write_text(text, encoding="utf-8")
            print(f"wrote {args.csv_file} ({len(board.rows)} models)", file=sys.stderr)
        return 0
    if args.json:
        print_json(to_json(board))
        return 0
    headers, cells = table(board)
    widths = [max(len(str(x)) for x in [h, *(c[i] for c in cells)]) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    return 0


def cmd_questions(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.evaluate import sets
    from workbench.train.data import data_file

    ws = settings.workspace.ensure()
    if args.questions_cmd == "add":
        print_json(sets.append_question(ws, args.file, args.question, args.source, args.reference))
        return 0
    rows = sets.rag_questions(data_file(ws, args.file))
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(f"{row['question']}  [{', '.join(row['sources'])}]")
    return 0


COMMANDS = {"eval": cmd_eval, "eval-retrieval": cmd_eval_retrieval, "scoreboard": cmd_scoreboard,
            "questions": cmd_questions}
