"""Worker processes. ``supervise`` starts one consumer for the CPU queue and one per GPU for the GPU
queue (each pinned with CUDA_VISIBLE_DEVICES, so GPU jobs run one at a time per GPU), restarts
any that die, and reaps runs whose worker is gone. ``consume`` is one Huey consumer."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from jobs import control
from jobs.gpus import host_gpus
from jobs.queues import QUEUES, get_huey, task_ids_on
from jobs.reaper import lost_messages, reap
from storage import RunStore, write_json_atomic
from storage.runs import QUEUED, RUNNING, now_iso
from workbench.settings import Settings
from workbench.subprocesses import die_with_parent

STOP_POLL_S = 0.2  # how soon the supervisor notices a stop signal

log = logging.getLogger("workbench.worker")


class WorkerRecord:
    """``workers/<host>-<pid>.json``: which queue a live worker serves, refreshed as a heartbeat;
    the same loop reaps runs whose worker died."""

    def __init__(self, settings: Settings, queue: str, device: str | None):
        self.settings = settings
        self.path = settings.workspace.workers / f"{socket.gethostname()}-{os.getpid()}.json"
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "queue": queue,
                     "device": device, "started": now_iso()}
        self._stop = threading.Event()

    def start(self) -> None:
        self.beat()
        threading.Thread(target=self._loop, daemon=True, name="worker-heartbeat").start()

    def beat(self) -> None:
        write_json_atomic(self.path, {**self.info, "time": time.time()})

    def _loop(self) -> None:
        store = RunStore(self.settings.workspace.runs)
        while not self._stop.wait(self.settings.heartbeat_s / 2):
            try:
                self.beat()
                reap(store, self.settings.stale_after)
            except OSError as exc:
                log.warning("worker heartbeat failed: %s", exc)
            try:
                self.requeue_lost(store)
            except Exception as exc:  # noqa: BLE001 - a queue out of reach now is asked again next beat
                log.warning("requeueing lost queue messages failed: %s", exc)

    def requeue_lost(self, store: RunStore) -> list[str]:
        """Put back on this worker's queue the runs whose message a consumer took and died with
        before starting them (``reaper.lost_messages``); one process requeues each. Their ids."""
        queue, huey = self.info["queue"], get_huey(self.settings, self.info["queue"])
        requeued = []
        for run, lost in lost_messages(store, queue, lambda: task_ids_on(huey), self.settings.stale_after):
            if run.transition({QUEUED}, QUEUED, when=lambda status: status.get("task_id") == lost, task_id=None):
                run.log("its queue message was lost with a worker that died before starting it: queued again")
                control.enqueue(self.settings, run)
                requeued.append(run.id)
        return requeued

    def stop(self) -> None:
        self._stop.set()
        self.path.unlink(missing_ok=True)


def consume(settings: Settings, queue: str, workers: int = 1) -> None:
    """Run one Huey consumer in this process until SIGINT (finish the job) or SIGTERM (stop now)."""
    settings.workspace.ensure()
    huey = get_huey(settings, queue)
    reap(RunStore(settings.workspace.runs), settings.stale_after)
    record = WorkerRecord(settings, queue, os.environ.get("CUDA_VISIBLE_DEVICES"))
    record.start()
    # An idle SQLite consumer polls every 0.1 s at most (Huey's default backs off to 10 s), so
    # a job starts within ~0.1 s of enqueue; one indexed select per poll costs next to nothing.
    # Redis blocks on the queue and ignores these.
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                    initial_delay=0.02, max_delay=0.1, backoff=1.15)
    try:
        consumer.run()
    finally:
        record.stop()


def _child_command(queue: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "jobs.worker", "--queue", queue, "--workers", str(workers)]


def supervise(settings: Settings, queues: tuple[str, ...] = QUEUES) -> None:
    """Start and watch the consumers; on SIGINT/SIGTERM ask running jobs to stop, then exit. It
    hears SIGTERM when the process that started it dies (a terminal closed, an app killed with -9),
    so no supervisor stays behind with parent 1; a worker meant to outlive its terminal runs as a
    service (``deploy/``), whose parent, the service manager, does not die."""
    die_with_parent()
    settings.workspace.ensure()
    store = RunStore(settings.workspace.runs)
    gpus = len(host_gpus())
    plan: list[tuple[str, int, str | None]] = []
    if "cpu" in queues:
        plan.append(("cpu", settings.cpu_workers, None))
    if "gpu" in queues:
        plan.extend(("gpu", 1, str(i)) for i in range(gpus))
        if not gpus:
            plan.append(("gpu", 1, None))
    # A signal handler must take no lock: Event.set() in one, arriving while the main thread is
    # inside Event.wait() holding the same lock, deadlocks the supervisor for good (its consumers
    # left as zombies, the process orphaned once its parent is gone). A flag and short sleeps.
    stopping: list[int] = []
    children: dict[int, subprocess.Popen] = {}

    def start(index: int) -> None:
        queue, workers, device = plan[index]
        env = settings.child_env()
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        children[index] = subprocess.Popen(_child_command(queue, workers), env=env,
                                           preexec_fn=_consumer_setup)
        log.info("started %s worker pid %s%s", queue, children[index].pid,
                 f" on GPU {device}" if device is not None else "")

    def on_signal(signum, _frame):
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    reap(store, settings.stale_after)
    for index in range(len(plan)):
        start(index)
    print(f"workbench worker: queues {', '.join(q for q, _, _ in plan)}; "
          f"{gpus} GPU(s); workspace {settings.workspace.home}", flush=True)
    next_check = 0.0
    while not stopping:
        time.sleep(STOP_POLL_S)
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + settings.heartbeat_s / 2
        for index, proc in list(children.items()):
            if proc.poll() is not None and not stopping:
                log.warning("%s worker pid %s exited with %s; restarting", plan[index][0], proc.pid, proc.returncode)
                start(index)
    _shutdown(store, children, settings)


def _consumer_setup() -> None:
    """preexec_fn of a consumer: it dies with the supervisor, and it hears SIGINT (its graceful
    stop) from its first instruction. A job started in the background by a shell ignores SIGINT and
    so would its children, and Huey installs its handler only once the consumer runs: a supervisor
    stopped within a second of its start waited 30 s for a consumer that never heard, then killed it."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _shutdown(store: RunStore, children: dict[int, subprocess.Popen], settings: Settings) -> None:
    pids = {p.pid for p in children.values()}
    for run in store.all():  # running jobs stop cooperatively at their next step (resumable)
        status = run.status()
        if isinstance(status, dict) and status.get("status") == RUNNING and status.get("pid") in pids:
            run.request_cancel()
            run.log("worker shutting down: cancel requested")
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.time() + 30
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()  # reaped before the supervisor exits: no zombie left to its parent's parent
    reap(store, settings.stale_after)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.worker", description="one queue consumer")
    parser.add_argument("--queue", choices=QUEUES, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    consume(Settings.from_env(), args.queue, args.workers)


if __name__ == "__main__":
    main()
