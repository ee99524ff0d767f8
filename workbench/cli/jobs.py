"""``workbench jobs list | show | logs | cancel | resume``: the Monitor tab, headless."""
from __future__ import annotations

import argparse
import sys
import time

from storage.runs import ACTIVE
from workbench.audit import cli_user
from workbench.cli.common import CliError, print_json, show
from workbench.settings import Settings


def add_parsers(sub) -> None:
    jobs = sub.add_parser("jobs", help="runs: list, show, logs, cancel, resume").add_subparsers(dest="jobs_cmd", required=True)
    jobs.add_parser("list").add_argument("--json", action="store_true")
    for name in ("show", "logs", "cancel", "resume"):
        p = jobs.add_parser(name)
        p.add_argument("id")
        p.add_argument("--json", action="store_true")
        if name == "logs":
            p.add_argument("-f", "--follow", action="store_true")


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    from jobs import control
    from jobs.reaper import reap
    from workbench.monitor import progress_text

    store = control.store(settings)
    reap(store, settings.stale_after)
    if args.jobs_cmd == "list":
        runs = store.list()
        if args.json:
            print_json(runs)
            return 0
        print(f"{'ID':42} {'KIND':12} {'STATUS':10} {'PROGRESS':16} STARTED")
        for r in runs:
            print(f"{r['id']:42} {r['kind']:12} {r['status']:10} {progress_text(r['progress']):16} "
                  f"{r.get('started') or ''}" + (f"  {r['error']}" if r.get("error") else ""))
        return 0
    if args.jobs_cmd == "show":
        data = show(store.root, args.id)
        if isinstance(data, dict) and data.get("status") == "queued":
            from workbench.monitor import gpu_state, live_workers, wait_reason

            data["waiting_for"] = wait_reason(data, store.list(), live_workers(settings.workspace, settings.stale_after),
                                              gpu_state())
        print_json(data) if args.json else print("\n".join(f"{k}: {v}" for k, v in data.items()))
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
            reap(store, settings.stale_after)
    if args.jobs_cmd == "cancel":
        outcome = control.cancel(settings, args.id, cli_user())
        print_json({"id": args.id, "outcome": outcome}) if args.json else print(outcome)
        return 0
    if args.jobs_cmd == "resume":
        run = control.resume(settings, args.id, cli_user())
        status = run.status()
        print_json({"id": run.id, "status": status["status"], "attempt": status["attempt"],
                    "resume_from": status.get("resume_from")}) if args.json else print(
            f"{run.id} queued (attempt {status['attempt']})")
        return 0
    raise CliError("jobs: choose list, show, logs, cancel or resume")


COMMANDS = {"jobs": cmd_jobs}
