"""``workbench data import | stats | from-feedback``: SFT data, headless."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench import audit
from workbench.settings import Settings


def add_parsers(sub) -> None:
    data = sub.add_parser("data", help="SFT data: data/train.jsonl and data/test.jsonl").add_subparsers(
        dest="data_cmd", required=True)
    imp = data.add_parser("import", help="validate and add rows (messages, prompt/completion, Alpaca)")
    imp.add_argument("file")
    imp.add_argument("--into", choices=["train", "test"], default="train")
    imp.add_argument("--replace", action="store_true", help="replace the file instead of appending")
    imp.add_argument("--split", type=float, default=0.0, help="share of rows sent to test.jsonl (default: 0)")
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--json", action="store_true")
    st = data.add_parser("stats", help="rows, formats, a sample and token lengths")
    st.add_argument("which", choices=["train", "test"], nargs="?", default="train")
    st.add_argument("--json", action="store_true")
    fb = data.add_parser("from-feedback", help="chosen answers from data/feedback.jsonl as SFT rows")
    fb.add_argument("--into", choices=["train", "test"], default="train")
    fb.add_argument("--json", action="store_true")


def _tokenizer(settings: Settings):
    from workbench.models.loading import ModelNotFound, resolve

    try:
        spec = resolve("base", settings.workspace, settings.base_model)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(spec.path)
    except (ModelNotFound, OSError, ValueError):
        return None


def cmd_data(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.datasets.sft import add_chosen_answers, import_rows, stats

    ws = settings.workspace
    if args.data_cmd == "import":
        result = import_rows(Path(args.file), ws.train_file, ws.test_file, args.into, args.replace,
                             args.split, args.seed)
        audit.record(ws, audit.cli_user(), "import", Path(args.file).name,
                     detail=f"{result['train_rows']} train, {result['test_rows']} test rows")
    elif args.data_cmd == "from-feedback":
        result = add_chosen_answers(ws.feedback_file, ws.train_file, ws.test_file, args.into)
        audit.record(ws, audit.cli_user(), "import", ws.feedback_file.name,
                     detail=f"{result['train_rows']} train, {result['test_rows']} test rows")
    else:
        path = ws.train_file if args.which == "train" else ws.test_file
        if not path.exists():
            raise ValueError(f"{path} does not exist yet: `workbench data import FILE`")
        result = stats(path, _tokenizer(settings))
        if not args.json:
            print(f"{result['rows']} rows in {result['file']} ({', '.join(result['formats'])})")
            if "tokens" in result:
                print("tokens: " + ", ".join(f"{k} {v}" for k, v in result["tokens"].items()))
            for row in result["sample"]:
                print("  " + json.dumps(row, ensure_ascii=False)[:200])
            return 0
    if args.json or args.data_cmd == "stats":
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"{result['train_rows']} rows into {ws.train_file}, {result['test_rows']} into {ws.test_file}")
    return 0


COMMANDS = {"data": cmd_data}
