"""Enqueue-to-start latency of an idle worker, SQLite and Redis, against Huey's default polling.

Each sample submits a one-step self-test to an idle worker (idle for a random 1-6 s, so the
consumer's poll back-off has grown) and reads ``started_at - enqueued_at`` from its status.
Prints median and p95 per setup and the ratio to the default-poll baseline of this same run.

    python benchmarks/queue_latency.py [--samples 20] [--no-redis]
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import percentile  # noqa: E402
from jobs import control  # noqa: E402
from jobs.queues import build_huey  # noqa: E402
from workbench.settings import Settings  # noqa: E402

DEFAULT_POLL = ("from jobs.queues import get_huey; from workbench.settings import Settings; "
                "get_huey(Settings.from_env(), 'gpu').create_consumer(workers=1).run()")


def measure(env: dict[str, str], worker_cmd: list[str], samples: int) -> list[float]:
    settings = Settings.from_env(env)
    worker = subprocess.Popen(worker_cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    latencies = []
    try:
        warm = control.submit(settings, "selftest", {"steps": 1, "step_seconds": 0})
        _wait_done(warm)
        for _ in range(samples):
            time.sleep(random.uniform(1.0, 6.0))
            run = control.submit(settings, "selftest", {"steps": 1, "step_seconds": 0})
            status = _wait_done(run)
            latencies.append(status["started_at"] - status["enqueued_at"])
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        if settings.queue.startswith("redis"):
            for queue in ("cpu", "gpu"):
                build_huey(settings, queue).storage.flush_all()
    return latencies


def _wait_done(run, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = run.status()
        if isinstance(status, dict) and status.get("status") in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise TimeoutError(run.id)


def report(name: str, values: list[float], baseline: list[float] | None) -> None:
    med = statistics.median(values)
    p95 = percentile(values, 0.95)
    ratio = f"  ({statistics.median(baseline) / med:.1f}x faster than default polling)" if baseline else ""
    print(f"{name:34} median {med * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   n={len(values)}{ratio}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    tuned = [sys.executable, "-m", "jobs.worker", "--queue", "gpu"]
    default = [sys.executable, "-c", DEFAULT_POLL]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "WORKBENCH_HOME": home, "WORKBENCH_QUEUE_NAME": f"bench-{uuid.uuid4().hex[:6]}"}
        env.pop("WORKBENCH_QUEUE", None)
        baseline = measure(env, default, args.samples)
        report("sqlite, huey default polling", baseline, None)
        report("sqlite, workbench worker", measure(env, tuned, args.samples), baseline)
        if not args.no_redis:
            env["WORKBENCH_QUEUE"] = os.environ.get("WORKBENCH_BENCH_REDIS", "redis://127.0.0.1:6379/0")
            report("redis, workbench worker", measure(env, tuned, args.samples), baseline)


if __name__ == "__main__":
    main()
