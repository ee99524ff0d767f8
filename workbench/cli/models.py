"""``workbench models pull | list | merge``: the base model, trained models and their export."""
from __future__ import annotations

import argparse

from workbench.cli.common import CliError, print_json, run_kind
from workbench.configs import add_arguments, arguments_to_dict
from workbench.kinds import get_kind
from workbench.settings import Settings


def add_parsers(sub) -> None:
    models = sub.add_parser("models", help="base model, trained models, merge").add_subparsers(dest="models_cmd", required=True)
    pull = models.add_parser("pull", help="provision models/base (default: SmolLM2-135M-Instruct, offline)")
    add_arguments(pull, get_kind("models.pull").load()[0])
    merge = models.add_parser("merge", help="merge an adapter into a full safetensors model folder")
    merge.add_argument("name", help="the adapter under models/")
    add_arguments(merge, get_kind("models.merge").load()[0], exclude=("name",))
    listing = models.add_parser("list", help="base, adapters, reward models with their manifests")
    for p in (pull, merge, listing):
        p.add_argument("--json", action="store_true")
    for p in (pull, merge):
        p.add_argument("--queue", action="store_true", help="enqueue for a worker and print the run id")


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    if args.models_cmd in ("pull", "merge"):
        kind = f"models.{args.models_cmd}"
        config = arguments_to_dict(args, get_kind(kind).load()[0])
        return run_kind(settings, kind, config, args.queue, args.json)
    if args.models_cmd == "list":
        from workbench.models.loading import lineage
        from workbench.models.registry import list_workspace_models

        models = list_workspace_models(settings.workspace)
        for m in models:
            m["lineage"] = lineage(settings.workspace, m["name"])
        if args.json:
            print_json(models)
            return 0
        if not models:
            print("no models yet: run `workbench models pull`")
        for m in models:
            manifest = m.get("manifest", {})
            detail = m.get("error") or ", ".join(f"{k}={manifest[k]}" for k in ("method", "parent", "source") if manifest.get(k))
            print(f"{m['name']:28} {m['kind']:14} {detail}")
        return 0
    raise CliError("models: choose pull, list or merge")


COMMANDS = {"models": cmd_models}
