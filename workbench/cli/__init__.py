"""The ``workbench`` command: every step of the pipeline, headless.

One module per command group (system, models, jobs, corpus, feedback, pairs, data, train, evaluate), each with
``add_parsers`` and ``COMMANDS``. Long commands run in-process with a progress bar and a run
record (so the Monitor tab sees them); ``--queue`` enqueues them for a worker instead and prints
the run id. Like ``app.py``, this is an entry point: it may import ``jobs``; it never imports
gradio unless serving.
"""
from __future__ import annotations

import argparse
import sys

from workbench.cli import corpus, data, evaluate, feedback, jobs, models, pairs, system, train
from workbench.cli.common import CliError
from workbench.configs import ConfigError
from workbench.errors import WorkbenchError
from workbench.settings import Settings

GROUPS = (system, models, jobs, corpus, feedback, pairs, data, train, evaluate)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of the group that owns ``argv``'s command, or of every group (for ``--help``
    and mistakes): a group's flags come from its job Configs, and importing every training
    method to answer ``workbench feedback stats`` would take a third of a second."""
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    first = next((a for a in argv or [] if not a.startswith("-")), None)
    owners = [g for g in GROUPS if first in g.COMMANDS] or GROUPS
    for group in owners:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    commands = {name: command for group in GROUPS for name, command in group.COMMANDS.items()}
    try:
        settings = Settings.from_env()
        settings.secure_files()
        return commands[args.command](settings, args)
    except (CliError, ConfigError, ValueError, KeyError, FileNotFoundError, WorkbenchError) as exc:  # JsonlError is a ValueError
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"workbench: error: {message}", file=sys.stderr)
        return 2
