"""The Redis backend against a real redis-server: a worker takes jobs from a shared queue."""
from __future__ import annotations

import socket

import pytest

from jobs import control
from jobs.queues import build_huey
from tests.conftest import run_status, wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_env(env):
    if not _redis_up():
        pytest.fail("redis-server is not running on 127.0.0.1:6379 (.ci/run starts one)")
    env["WORKBENCH_QUEUE"] = REDIS_URL
    yield env
    from workbench.settings import Settings

    settings = Settings.from_env(env)
    for queue in ("cpu", "gpu"):
        build_huey(settings, queue).storage.flush_all()


def test_redis_worker_runs_jobs_and_cancels_queued(redis_env, start_process):
    import sys

    from workbench.settings import Settings

    settings = Settings.from_env(redis_env)
    huey = build_huey(settings, "gpu")
    assert type(huey).__name__ == "PriorityRedisHuey"
    first = control.submit(settings, "selftest", {"steps": 200, "step_seconds": 0.05})
    second = control.submit(settings, "selftest", {"steps": 3, "step_seconds": 0})
    assert control.pending_counts(settings)["gpu"] == 2
    start_process([sys.executable, "-m", "workbench.cli", "worker"], redis_env, "redis-worker")
    wait_for(lambda: run_status(settings, first.id).get("status") == "running", 60, what="first job to start")
    assert control.cancel(settings, second.id) == "cancelled"
    control.cancel(settings, first.id)
    wait_for(lambda: run_status(settings, first.id).get("status") == "cancelled", 30, what="cancel")
    third = control.submit(settings, "selftest", {"steps": 3, "step_seconds": 0})
    wait_for(lambda: run_status(settings, third.id).get("status") == "succeeded", 30, what="third job")
    assert run_status(settings, second.id)["status"] == "cancelled" and not second.metrics()
    assert len(third.metrics()) == 3


def test_a_bad_queue_url_is_refused_without_its_password(env):
    from workbench.settings import Settings

    env["WORKBENCH_QUEUE"] = "amqp://alice:s3cret-pw@broker:5672/jobs"
    with pytest.raises(ValueError) as refused:
        build_huey(Settings.from_env(env), "cpu")
    assert "s3cret-pw" not in str(refused.value) and "amqp://alice:***@broker:5672/jobs" in str(refused.value)

