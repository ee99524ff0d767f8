"""``workbench train sft|reward|dpo|grpo [--config FILE.yaml] [--set key=value ...] [--flag ...]
[--queue] [--json]``: the Train tab, headless. Every option of a method's Config is a flag; a YAML
file sets many at once, ``--set`` and flags override it."""
from __future__ import annotations

import argparse

from workbench.cli.common import read_config_file, run_kind
from workbench.configs import add_arguments, arguments_to_dict, parse_assignments
from workbench.kinds import TRAIN_METHODS, get_kind
from workbench.settings import Settings


def add_parsers(sub) -> None:
    train = sub.add_parser("train", help="train a model: " + ", ".join(TRAIN_METHODS))
    methods = train.add_subparsers(dest="method", required=True)
    for method, kind in TRAIN_METHODS.items():
        p = methods.add_parser(method, help=get_kind(kind).description)
        p.add_argument("--config", dest="config_file", help="a YAML (or JSON) file of options")
        p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                       help="set one option (repeatable)")
        add_arguments(p, get_kind(kind).load()[0])
        p.add_argument("--queue", action="store_true", help="enqueue for a worker and print the run id")
        p.add_argument("--json", action="store_true")


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    kind = TRAIN_METHODS[args.method]
    config = read_config_file(args.config_file) if args.config_file else {}
    config.update(parse_assignments(args.assignments))
    config.update(arguments_to_dict(args, get_kind(kind).load()[0]))
    return run_kind(settings, kind, config, args.queue, args.json)


COMMANDS = {"train": cmd_train}
