"""What every command group shares: the error type, JSON output, and running a job kind either
in this process (with a progress bar and a run record the Monitor tab sees) or on the queue."""
from __future__ import annotations

import getpass
import json
import sys
from typing import Any

from storage import RunStore, Unreadable


class CliError(Exception):
    pass


def read_config_file(path: str) -> dict:
    import yaml
    from pathlib import Path

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a mapping of option: value")
    return data


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def run_kind(settings, kind: str, config: dict[str, Any], queue: bool, as_json: bool,
             extra: dict[str, Any] | None = None, result_extra=None) -> int:
    """Enqueue (``--queue``) or run in this process with a progress bar; exit code follows the
    outcome. ``extra`` is merged into the JSON output, and so is ``result_extra(run)`` once a
    run in this process has ended. Preflight warnings go to stderr."""
    from jobs import control
    from jobs.runner import execute

    run = control.create(settings, kind, config, user=getpass.getuser())
    status = run.status()
    for warning in (status.get("warnings") or []) if isinstance(status, dict) else []:
        print(f"workbench: warning: {warning}", file=sys.stderr)
    if queue:
        control.enqueue(settings, run)
        print_json({"id": run.id, "status": "queued", **(extra or {})}) if as_json else print(run.id)
        return 0
    if not as_json:
        print(f"run {run.id}", file=sys.stderr)
    status = execute(settings, run.id, echo=not as_json)
    if as_json:
        after = result_extra(run) if result_extra else {}
        print_json({**show(run.folder.parent, run.id), **(extra or {}), **after})
    else:
        print(f"{status.get('status')}" + (f": {status.get('error')}" if status.get("error") else ""))
    return {"succeeded": 0, "cancelled": 130}.get(status.get("status"), 1)


def show(runs_root, run_id: str) -> dict:
    run = RunStore(runs_root).get(run_id)
    status, config, metrics = run.status(), run.config(), run.metrics()
    status = {} if isinstance(status, Unreadable) else status
    return {**run.summary(), "folder": str(run.folder),
            "last_metrics": metrics[-1] if metrics else None,
            "config": None if isinstance(config, Unreadable) else config,
            **{key: status.get(key) for key in ("result", "pid", "host", "resume_from", "warnings")}}


def add_config_arguments(parser, config_cls) -> None:
    """``--config FILE.yaml``, ``--set KEY=VALUE``, one flag per option of ``config_cls``,
    ``--queue`` and ``--json``: what every config-driven command takes."""
    from workbench.configs import add_arguments

    parser.add_argument("--config", dest="config_file", help="a YAML (or JSON) file of options")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="set one option (repeatable)")
    add_arguments(parser, config_cls)
    parser.add_argument("--queue", action="store_true", help="enqueue for a worker and print the run id")
    parser.add_argument("--json", action="store_true")


def config_from_arguments(args, config_cls) -> dict[str, Any]:
    """The options given: the file first, then ``--set``, then the flags."""
    from workbench.configs import arguments_to_dict, parse_assignments

    config = read_config_file(args.config_file) if args.config_file else {}
    config.update(parse_assignments(args.assignments))
    config.update(arguments_to_dict(args, config_cls))
    return config
