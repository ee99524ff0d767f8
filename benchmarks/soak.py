"""Soak: nothing is lost while workers are killed and the web process restarts.

For each queue backend (SQLite, then Redis on loopback): a throw-away workspace, ``workbench
worker`` (the supervisor and its consumers) and ``app.py --no-worker`` with an auth file of 20
annotators. Then, at once:

- ``--jobs`` short jobs (the self-test at one step) submitted through ``jobs.control``;
- five ``kill -9`` of a consumer process while they run (the supervisor starts a new one; the
  reaper marks the killed consumer's run ``failed: worker lost``), and two restarts of the web
  process (killed, started again on the same port);
- 20 annotators voting through the API (``gradio_client``: ``/next_pair`` then ``/vote``), each
  reconnecting when the web process is down.

It prints the jobs in each terminal state (goal: every job in exactly one, none left ``queued``
or ``running``), the votes on disk against the votes the API accepted (goal: equal; a vote whose
call failed while the web process died may or may not be on disk and is counted apart), and the
queue's throughput in jobs per second.

    .venv/bin/python benchmarks/soak.py [--jobs 1000] [--backend sqlite --backend redis]
        [--minutes 20] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import free_port  # noqa: E402
ANNOTATORS = 20
PAIRS = 40
KILLS, RESTARTS = 5, 2
CALL_TIMEOUT_S = 30
VOTERS_GRACE_S = 120  # after the jobs: the annotators finish the pairs left


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


class App:
    """``app.py --no-worker`` on a fixed port, killed and started again on demand."""

    def __init__(self, env: dict[str, str], port: int, log: Path):
        self.env, self.port, self.log, self.proc = env, port, log, None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "app.py", "--no-worker"], cwd=ROOT, env=self.env,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/config", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # 401: up, asking for a login
            except OSError:
                time.sleep(0.25)
        raise SystemExit(f"the app did not start: see {self.log}")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def make_pairs(workspace) -> dict[str, str]:
    """Ready pairs (answers stored as a generation job stores them); pair id by prompt."""
    from workbench.feedback.annotation import pair_store
    from workbench.feedback.pairs import Side, make_pair

    store = pair_store(workspace)
    pairs = [make_pair(f"Soak question {i}: what does step {i} do?", "typed", Side("base", 0.0), Side("base", 0.8))
             for i in range(PAIRS)]
    store.add(pairs)
    store.save_answers([(p.pair_id, side, f"Answer {side} to question {i}.", "") for i, p in enumerate(pairs)
                        for side in ("a", "b")])
    return {p.prompt: p.pair_id for p in pairs}


def voter(name: str, url: str, pairs: dict[str, str], stop: threading.Event, tally: dict) -> None:
    from gradio_client import Client

    client = None
    while not stop.is_set():
        try:
            if client is None:
                client = Client(url, auth=(name, f"{name}-pw"), verbose=False)
            # the pair leased to this annotator. A call the dying web process never answers
            # would wait forever: each has a time limit.
            shown = client.submit(api_name="/next_pair").result(timeout=CALL_TIMEOUT_S)
            if not shown["pair_id"]:
                return  # every pair voted
            pair_id = shown["pair_id"]
        except Exception:  # noqa: BLE001 - the web process is down: connect again
            client = None
            time.sleep(0.5)
            continue
        try:
            answer = client.submit(pair_id, random.choice(["a", "b", "tie", "both_bad"]), api_name="/vote").result(
                timeout=CALL_TIMEOUT_S)
            if answer["recorded"]:
                tally["accepted"].add((name, pair_id))
        except Exception:  # noqa: BLE001 - died mid-call: on disk or not, counted apart
            tally["uncertain"].add((name, pair_id))
            client = None


def soak(backend: str, jobs: int, minutes: float) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"wb-soak-{backend}-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0", WORKBENCH_HEARTBEAT_S="1",
               WORKBENCH_PORT=str(port), WORKBENCH_AUTH_FILE=str(home.parent / f"{home.name}-users.json"),
               WORKBENCH_QUEUE_NAME=f"soak-{uuid.uuid4().hex[:8]}", GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if backend == "redis":
        env["WORKBENCH_QUEUE"] = "redis://127.0.0.1:6379/0"
    os.environ.update(env)
    from jobs import control
    from storage import RunStore
    from storage.jsonl import read_jsonl
    from workbench.auth import add_user
    from workbench.settings import Settings

    settings = Settings.from_env()
    workspace = settings.workspace.ensure()
    for i in range(ANNOTATORS):
        add_user(Path(env["WORKBENCH_AUTH_FILE"]), f"ann{i}", f"ann{i}-pw", "annotator")
    pairs = make_pairs(workspace)
    worker = subprocess.Popen([sys.executable, "-m", "workbench.cli", "worker"], cwd=ROOT, env=env,
                              stdout=open(home / "worker.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    app = App(env, port, home / "app.log")
    app.start()

    started = time.perf_counter()
    ids = [control.submit(settings, "selftest", {"steps": 1, "step_seconds": 0, "checkpoint_every": 0},
                          user="soak").id for _ in range(jobs)]
    submit_s = time.perf_counter() - started
    stop, tally = threading.Event(), {"accepted": set(), "uncertain": set()}
    voters = [threading.Thread(target=voter, args=(f"ann{i}", f"http://127.0.0.1:{port}/", pairs, stop, tally), daemon=True)
              for i in range(ANNOTATORS)]
    for thread in voters:
        thread.start()

    store = RunStore(workspace.runs)

    def states() -> dict[str, int]:
        counts: dict[str, int] = {}
        for run_id in ids:
            status = store.get(run_id).status()
            state = status.get("status", "unreadable") if isinstance(status, dict) else "unreadable"
            counts[state] = counts.get(state, 0) + 1
        return counts

    events = ["kill"] * KILLS + ["restart"] * RESTARTS
    random.Random(0).shuffle(events)
    deadline = time.time() + 60 * minutes
    done_at = None
    for n, event in enumerate(events, start=1):  # spread over the jobs as they finish
        target = n * jobs // (len(events) + 2)
        while time.time() < deadline:
            counts = states()
            if jobs - counts.get("queued", 0) - counts.get("running", 0) >= target:
                break
            time.sleep(0.5)
        if event == "kill":  # the consumer running a job, as a crash would hit it
            busy = [s.get("pid") for s in (store.get(i).status() for i in ids)
                    if isinstance(s, dict) and s.get("status") == "running" and s.get("pid")]
            consumers = [pid for pid in busy if pid in children_of(worker.pid)] or children_of(worker.pid)
            if consumers:
                os.kill(random.choice(consumers), signal.SIGKILL)
        else:
            app.kill()
            app.start()
    while time.time() < deadline:
        counts = states()
        if not counts.get("queued") and not counts.get("running"):
            done_at = time.perf_counter()
            break
        time.sleep(1)
    voting_ends = min(deadline, time.time() + VOTERS_GRACE_S)
    for thread in voters:
        thread.join(timeout=max(0.1, voting_ends - time.time()))
    stop.set()
    counts = states()
    on_disk = {(v["annotator"], v["pair_id"]) for v in read_jsonl(workspace.feedback_file)} \
        if workspace.feedback_file.exists() else set()
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=60)
    app.kill()
    return {"backend": backend, "jobs": jobs, "states": counts,
            "stuck": counts.get("queued", 0) + counts.get("running", 0),
            "votes_accepted": len(tally["accepted"]), "votes_on_disk": len(on_disk),
            "accepted_missing_on_disk": len(tally["accepted"] - on_disk),
            "uncertain_calls": len(tally["uncertain"]), "uncertain_on_disk": len(tally["uncertain"] & on_disk),
            "jobs_per_s": round(jobs / (done_at - started), 2) if done_at else None,
            "submit_s": round(submit_s, 1), "workspace": str(home)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--backend", action="append", choices=("sqlite", "redis"))
    parser.add_argument("--minutes", type=float, default=20, help="a bound on each backend's run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = []
    for backend in args.backend or ["sqlite", "redis"]:
        result = soak(backend, args.jobs, args.minutes)
        report.append(result)
        print(f"{backend}: jobs {result['states']} (stuck {result['stuck']}); votes accepted "
              f"{result['votes_accepted']}, on disk {result['votes_on_disk']} (accepted but missing "
              f"{result['accepted_missing_on_disk']}; calls cut by a restart {result['uncertain_calls']}, "
              f"{result['uncertain_on_disk']} of them on disk); {result['jobs_per_s']} jobs/s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
