"""``workbench serve | worker | selftest | users | backup``: the app, the queue consumers, the
self-test job, the auth file and a consistent copy of the workspace."""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from workbench.cli.common import CliError, run_kind
from workbench.configs import add_arguments, arguments_to_dict
from workbench.kinds import get_kind
from workbench.settings import Settings


def add_parsers(sub) -> None:
    from workbench.auth import ROLES  # here: only this group's commands need it (10 ms a command)

    serve = sub.add_parser("serve", help="start the web app (same as python app.py)")
    serve.add_argument("--no-worker", action="store_true", help="do not start the embedded worker")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    worker = sub.add_parser("worker", help="run queue consumers (all queues, one GPU consumer per GPU)")
    worker.add_argument("--queue", choices=["cpu", "gpu"], help="serve one queue in this process only")
    worker.add_argument("--workers", type=int, default=1, help="threads for --queue")

    selftest = sub.add_parser("selftest", help="a tiny training job: checks queue, device, logs, curves")
    add_arguments(selftest, get_kind("selftest").load()[0])
    selftest.add_argument("--queue", action="store_true", help="enqueue for a worker and print the run id")
    selftest.add_argument("--json", action="store_true")

    backup = sub.add_parser("backup", help="copy the workspace consistently while the app and workers run")
    backup.add_argument("destination", help="a new (or empty) folder outside the workspace")
    backup.add_argument("--json", action="store_true")

    users = sub.add_parser("users", help="manage the auth file").add_subparsers(dest="users_cmd", required=True)
    add = users.add_parser("add", help="add or replace a user")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    passwd = users.add_parser("passwd", help="set a user's password (and role)")
    passwd.add_argument("name")
    passwd.add_argument("--role", choices=ROLES)
    disable = users.add_parser("disable", help="stop a user from signing in (kept in the file)")
    disable.add_argument("name")
    disable.add_argument("--enable", action="store_true", help="let the user sign in again")
    listing = users.add_parser("list", help="users, roles, disabled or not")
    listing.add_argument("--json", action="store_true")
    for command in (add, passwd, disable, listing):
        command.add_argument("--auth-file")
    for command in (add, passwd):
        command.add_argument("--password-stdin", action="store_true")


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import app

    return app.main(no_worker=args.no_worker, host=args.host, port=args.port)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from jobs.worker import consume, supervise

    if args.queue:
        consume(settings, args.queue, args.workers)
    else:
        supervise(settings)
    return 0


def cmd_selftest(settings: Settings, args: argparse.Namespace) -> int:
    config_cls, _ = get_kind("selftest").load()
    return run_kind(settings, "selftest", arguments_to_dict(args, config_cls), args.queue, args.json)


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.auth import add_user, change_user, list_users

    path = args.auth_file or settings.auth_file
    if not path:
        raise CliError("set WORKBENCH_AUTH_FILE or pass --auth-file")
    try:
        if args.users_cmd == "list":
            users = list_users(Path(path))
            if args.json:
                print(json.dumps(users))
            for u in [] if args.json else users:
                print(f"{u['username']:20s} {u['role']:10s} {'disabled' if u['disabled'] else ''}".rstrip())
            return 0
        if args.users_cmd == "disable":
            change_user(Path(path), args.name, disabled=not args.enable)
            print(f"user {args.name} {'enabled' if args.enable else 'disabled'} in {path}")
            return 0
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(f"password for {args.name}: ")
        if args.users_cmd == "add":
            add_user(path, args.name, password, args.role)
            print(f"user {args.name} ({args.role}) saved in {path}")
        else:
            entry = change_user(Path(path), args.name, password=password, role=args.role)
            print(f"user {args.name} ({entry['role']}): password changed in {path}")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from workbench.backup import backup

    report = backup(settings.workspace, Path(args.destination))
    print(json.dumps(report)) if args.json else print(
        f"{report['files']} files ({report['bytes'] / 1e6:.1f} MB) copied to {report['destination']} "
        f"in {report['seconds']} s")
    return 0


COMMANDS = {"serve": cmd_serve, "worker": cmd_worker, "selftest": cmd_selftest, "users": cmd_users,
            "backup": cmd_backup}
