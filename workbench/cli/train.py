"""``workbench train sft|reward|dpo|grpo [--config FILE.yaml] [--set key=value ...] [--flag ...]
[--queue] [--json]``: the Train tab, headless. Every option of a method's Config is a flag; a YAML
file sets many at once, ``--set`` and flags override it."""
from __future__ import annotations

import argparse

from workbench.cli.common import add_config_arguments, config_from_arguments, run_kind
from workbench.kinds import TRAIN_METHODS, get_kind
from workbench.settings import Settings


def add_parsers(sub) -> None:
    train = sub.add_parser("train", help="train a model: " + ", ".join(TRAIN_METHODS))
    methods = train.add_subparsers(dest="method", required=True)
    for method, kind in TRAIN_METHODS.items():
        add_config_arguments(methods.add_parser(method, help=get_kind(kind).description), get_kind(kind).load()[0])


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    kind = TRAIN_METHODS[args.method]
    return run_kind(settings, kind, config_from_arguments(args, get_kind(kind).load()[0]), args.queue, args.json)


COMMANDS = {"train": cmd_train}
