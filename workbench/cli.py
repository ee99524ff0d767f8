"""The ``workbench`` command: every step of the pipeline, headless.

Long commands run in-process with a progress bar and a run record (so the Monitor tab sees
them); ``--queue`` enqueues them for a worker instead and prints the run id. Like ``app.py``,
this is an entry point: it may import ``jobs``; it never imports gradio unless serving.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import Any

from storage import RunStore, Unreadable
from storage.runs import ACTIVE
from workbench import cli_corpus, cli_data, cli_feedback
from workbench.configs import ConfigError, add_arguments, arguments_to_dict
from workbench.errors import WorkbenchError
from workbench.kinds import get_kind
from workbench.monitor import progress_text
from workbench.settings import Settings


class CliError(Exception):
    pass


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def run_kind(settings: Settings, kind: str, config: dict[str, Any], queue: bool, as_json: bool,
             extra: dict[str, Any] | None = None) -> int:
    """Enqueue (``--queue``) or run in this process with a progress bar; exit code follows the
    outcome. ``extra`` is merged into the JSON output."""
    from jobs import control
    from jobs.runner import execute

    if queue:
        run = control.submit(settings, kind, config, user=getpass.getuser())
        _print_json({"id": run.id, "status": "queued", **(extra or {})}) if as_json else print(run.id)
        return 0
    run = control.create(settings, kind, config, user=getpass.getuser())
    if not as_json:
        print(f"run {run.id}", file=sys.stderr)
    status = execute(settings, run.id, echo=not as_json)
    if as_json:
        _print_json({**_show(run.folder.parent, run.id), **(extra or {})})
    else:
        print(f"{status.get('status')}" + (f": {status.get('error')}" if status.get("error") else ""))
    return {"succeeded": 0, "cancelled": 130}.get(status.get("status"), 1)


def _show(runs_root, run_id: str) -> dict:
    run = RunStore(runs_root).get(run_id)
    status, config, metrics = run.status(), run.config(), run.metrics()
    status = {} if isinstance(status, Unreadable) else status
    return {**run.summary(), "folder": str(run.folder),
            "last_metrics": metrics[-1] if metrics else None,
            "config": None if isinstance(config, Unreadable) else config,
            **{key: status.get(key) for key in ("result", "pid", "host", "resume_from")}}


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    from jobs import control

    store = control.store(settings)
    store.reap(settings.stale_after)
    if args.jobs_cmd == "list":
        runs = store.list()
        if args.json:
            _print_json(runs)
            return 0
        print(f"{'ID':42} {'KIND':12} {'STATUS':10} {'PROGRESS':16} STARTED")
        for r in runs:
            print(f"{r['id']:42} {r['kind']:12} {r['status']:10} {progress_text(r['progress']):16} "
                  f"{r.get('started') or ''}" + (f"  {r['error']}" if r.get("error") else ""))
        return 0
    if args.jobs_cmd == "show":
        data = _show(store.root, args.id)
        _print_json(data) if args.json else print("\n".join(f"{k}: {v}" for k, v in data.items()))
        return 0
    if args.jobs_cmd == "logs":
        run = store.get(args.id)
        offset = 0
        while True:
            text = run.read_log(max_bytes=10**9)
            sys.stdout.write(text[offset:])
            sys.stdout.flush()
            offset = len(text)
            status = run.status()
            if not args.follow or (isinstance(status, dict) and status.get("status") not in ACTIVE):
                return 0
            time.sleep(0.5)
            store.reap(settings.stale_after)
    if args.jobs_cmd == "cancel":
        outcome = control.cancel(settings, args.id)
        _print_json({"id": args.id, "outcome": outcome}) if args.json else print(outcome)
        return 0
    if args.jobs_cmd == "resume":
        run = control.resume(settings, args.id)
        status = run.status()
        _print_json({"id": run.id, "status": status["status"], "attempt": status["attempt"],
                     "resume_from": status.get("resume_from")}) if args.json else print(
            f"{run.id} queued (attempt {status['attempt']})")
        return 0
    raise CliError("jobs: choose list, show, logs, cancel or resume")


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    if args.models_cmd == "pull":
        config_cls, _ = get_kind("models.pull").load()
        return run_kind(settings, "models.pull", arguments_to_dict(args, config_cls), args.queue, args.json)
    if args.models_cmd == "list":
        from workbench.models.registry import list_workspace_models

        models = list_workspace_models(settings.workspace)
        if args.json:
            _print_json(models)
            return 0
        if not models:
            print("no models yet: run `workbench models pull`")
        for m in models:
            manifest = m.get("manifest", {})
            detail = m.get("error") or ", ".join(f"{k}={manifest[k]}" for k in ("name", "method", "base", "source") if k in manifest)
            print(f"{m['name']:28} {m['kind']:12} {detail}")
        return 0
    raise CliError("models: choose pull or list")


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.auth import add_user

    path = args.auth_file or settings.auth_file
    if not path:
        raise CliError("set WORKBENCH_AUTH_FILE or pass --auth-file")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(f"password for {args.name}: ")
    add_user(path, args.name, password, args.role)
    print(f"user {args.name} ({args.role}) saved in {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the web app (same as python app.py)")
    serve.add_argument("--no-worker", action="store_true", help="do not start the embedded worker")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    worker = sub.add_parser("worker", help="run queue consumers (all queues, one GPU consumer per GPU)")
    worker.add_argument("--queue", choices=["cpu", "gpu"], help="serve one queue in this process only")
    worker.add_argument("--workers", type=int, default=1, help="threads for --queue")

    models = sub.add_parser("models", help="base model and trained models").add_subparsers(dest="models_cmd", required=True)
    pull = models.add_parser("pull", help="provision models/base (default: SmolLM2-135M-Instruct, offline)")
    add_arguments(pull, get_kind("models.pull").load()[0])
    for p in (pull, models.add_parser("list", help="base, adapters, reward models with their manifests")):
        p.add_argument("--json", action="store_true")
    pull.add_argument("--queue", action="store_true", help="enqueue for a worker and print the run id")

    selftest = sub.add_parser("selftest", help="a tiny training job: checks queue, device, logs, curves")
    add_arguments(selftest, get_kind("selftest").load()[0])
    selftest.add_argument("--queue", action="store_true", help="enqueue for a worker and print the run id")
    selftest.add_argument("--json", action="store_true")

    jobs = sub.add_parser("jobs", help="runs: list, show, logs, cancel, resume").add_subparsers(dest="jobs_cmd", required=True)
    jobs.add_parser("list").add_argument("--json", action="store_true")
    for name in ("show", "logs", "cancel", "resume"):
        p = jobs.add_parser(name)
        p.add_argument("id")
        p.add_argument("--json", action="store_true")
        if name == "logs":
            p.add_argument("-f", "--follow", action="store_true")

    cli_corpus.add_parsers(sub)
    cli_feedback.add_parsers(sub)
    cli_data.add_parsers(sub)

    users = sub.add_parser("users", help="manage the auth file").add_subparsers(dest="users_cmd", required=True)
    add = users.add_parser("add", help="add or replace a user")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "annotator"], required=True)
    add.add_argument("--auth-file")
    add.add_argument("--password-stdin", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "serve":
            import app

            return app.main(no_worker=args.no_worker, host=args.host, port=args.port)
        if args.command == "worker":
            from jobs.worker import consume, supervise

            if args.queue:
                consume(settings, args.queue, args.workers)
            else:
                supervise(settings)
            return 0
        if args.command == "selftest":
            config_cls, _ = get_kind("selftest").load()
            return run_kind(settings, "selftest", arguments_to_dict(args, config_cls), args.queue, args.json)
        commands = {"jobs": cmd_jobs, "models": cmd_models, "users": cmd_users, **cli_corpus.COMMANDS,
                    **cli_feedback.COMMANDS, **cli_data.COMMANDS}
        return commands[args.command](settings, args)
    except (CliError, ConfigError, ValueError, KeyError, FileNotFoundError, WorkbenchError) as exc:  # JsonlError is a ValueError
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"workbench: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
