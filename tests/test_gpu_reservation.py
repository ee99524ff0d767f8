"""GPU reservation on a fake list of GPUs: a job of N GPUs holds N, one job per GPU, no deadlock,
a waiting job is not overtaken, a killed holder frees its GPUs, and the runner records which run
holds which GPU for the Monitor."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import wait_for
from jobs import gpus as reservation


def hold(folder, own, count, every=(0, 1, 2, 3), **kwargs):
    """Reserve in a thread; returns (thread, events, log) with events held / release."""
    held, release, waited, out = threading.Event(), threading.Event(), [], {}

    def body():
        with reservation.reserve(folder, list(own), list(every), count, waiting=waited.append,
                                 poll_s=0.02, **kwargs) as gpus:
            out["gpus"] = gpus
            out["at"] = time.monotonic()
            held.set()
            release.wait(10)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, held, release, waited, out


def test_choose_takes_own_then_free_then_busy():
    busy = {1}
    assert reservation.choose([2], [0, 1, 2, 3], 1, lambda i: i not in busy) == [2]
    assert reservation.choose([2], [0, 1, 2, 3], 3, lambda i: i not in busy) == [0, 2, 3]
    assert reservation.choose([0], [0, 1], 2, lambda i: i not in busy) == [0, 1]
    assert reservation.choose([], [0, 1, 2], 2, lambda i: i not in busy) == [0, 2]
    with pytest.raises(reservation.NotEnoughGpus, match="needs 4 GPUs and this machine has 2"):
        reservation.choose([0], [0, 1], 4, lambda i: True)


def test_a_job_of_two_gpus_holds_both_and_others_wait(tmp_path):
    two, two_held, two_release, _, two_out = hold(tmp_path, [0], 2)
    assert two_held.wait(5) and two_out["gpus"] == [0, 1]
    one, one_held, one_release, one_waited, one_out = hold(tmp_path, [1], 1)  # GPU 1's own worker
    other, other_held, other_release, _, other_out = hold(tmp_path, [2], 1)
    assert other_held.wait(5) and other_out["gpus"] == [2]  # a free GPU is not held up
    wait_for(lambda: one_waited, what="the one-GPU job to wait for GPU 1")
    assert not one_held.is_set() and one_waited == [[1]]
    two_release.set()
    assert one_held.wait(5) and one_out["gpus"] == [1]
    for release in (one_release, other_release):
        release.set()
    for thread in (two, one, other):
        thread.join(5)


def test_overlapping_multi_gpu_jobs_do_not_deadlock(tmp_path):
    jobs = [hold(tmp_path, [own], 3) for own in (3, 0, 2, 1)]
    done = []
    deadline = time.monotonic() + 20
    while len(done) < len(jobs) and time.monotonic() < deadline:
        for thread, held, release, _, out in jobs:
            if held.is_set() and not release.is_set():
                assert len(out["gpus"]) == 3
                done.append(out["gpus"])
                release.set()
        time.sleep(0.01)
    assert len(done) == 4, f"only {len(done)} of 4 jobs got their GPUs"


def test_a_waiting_job_is_not_overtaken_by_the_next_job_of_a_busy_gpu(tmp_path):
    first, first_held, first_release, _, _ = hold(tmp_path, [1], 1)
    assert first_held.wait(5)
    big, big_held, big_release, big_waited, big_out = hold(tmp_path, [0], 2, every=(0, 1))
    wait_for(lambda: big_waited, what="the two-GPU job to wait for GPU 1")
    first_release.set()  # GPU 1's worker finishes and takes its next job at once
    first.join(5)
    nxt, nxt_held, nxt_release, _, nxt_out = hold(tmp_path, [1], 1, every=(0, 1))
    assert big_held.wait(5)
    assert not nxt_held.is_set(), "the next job took GPU 1 before the job waiting for it"
    big_release.set()
    assert nxt_held.wait(5) and nxt_out["at"] > big_out["at"]  # it got GPU 1 only after the waiting job
    nxt_release.set()


def test_cancel_while_waiting_holds_nothing(tmp_path):
    first, first_held, first_release, _, _ = hold(tmp_path, [0], 1, every=(0, 1))
    assert first_held.wait(5)
    with pytest.raises(InterruptedError):
        with reservation.reserve(tmp_path, [1], [0, 1], 2, cancelled=lambda: True, poll_s=0.01):
            pass
    locks = reservation.GpuLocks(tmp_path)
    assert locks.is_free(1) and not locks.is_free(0)
    first_release.set()
    first.join(5)
    assert locks.is_free(0)


def test_a_killed_holder_frees_its_gpus(tmp_path):
    code = ("import sys, time; from jobs import gpus\n"
            "with gpus.reserve(__import__('pathlib').Path(sys.argv[1]), [0], [0, 1], 2) as held:\n"
            "    print(held, flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "[0, 1]"
        assert not reservation.GpuLocks(tmp_path).is_free(1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        with reservation.reserve(tmp_path, [1], [0, 1], 2, poll_s=0.01) as held:
            assert held == [0, 1]
    finally:
        proc.kill()


def test_the_runner_reserves_the_jobs_gpus_and_the_monitor_shows_them(settings, monkeypatch):
    from jobs import control
    from jobs.runner import execute
    from workbench.monitor import gpu_holders

    monkeypatch.setattr(reservation, "host_gpus", lambda: [0, 1])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    run = control.create(settings, "selftest", {"steps": 20, "step_seconds": 0.05, "checkpoint_every": 0})
    thread = threading.Thread(target=execute, args=(settings, run.id), daemon=True)
    thread.start()
    store = control.store(settings)
    holders = wait_for(lambda: gpu_holders(store.list()), what="the running selftest to hold its GPU")
    assert holders[0].startswith("GPU 1 on ") and run.id in holders[0]
    # GPU 1 is taken: a second job of this worker waits, queued, and says why
    second = control.create(settings, "selftest", {"steps": 1, "step_seconds": 0, "checkpoint_every": 0})
    waiter = threading.Thread(target=execute, args=(settings, second.id), daemon=True)
    waiter.start()
    wait_for(lambda: (second.status().get("message") or "").startswith("waiting for GPU 1"),
             what="the second job to say it waits for GPU 1")
    assert second.status()["status"] == "queued"
    thread.join(30)
    waiter.join(30)
    assert run.status()["status"] == "succeeded" and run.status()["gpus"] == [1]
    assert second.status()["status"] == "succeeded" and second.status()["started_at"] > run.status()["started_at"]


def test_more_processes_than_gpus_fails_the_run_before_it_starts(settings, monkeypatch):
    from jobs import control
    from jobs.runner import execute

    monkeypatch.setattr(reservation, "host_gpus", lambda: [0, 1])
    run = control.store(settings).create("train.sft", {"num_processes": 3}, "gpu", None)
    status = execute(settings, run.id)
    assert status["status"] == "failed"
    assert status["error"] == "this job needs 3 GPUs and this machine has 2"


def test_a_worker_killed_while_its_job_waits_for_a_gpu_fails_the_run(settings, env):
    """The waiting job is still ``queued`` and its queue message went with the worker: the
    reaper fails it (resumable from Monitor) instead of leaving it queued forever."""
    from jobs import control
    from jobs.reaper import reap
    from storage.runs import WORKER_LOST

    run = control.create(settings, "selftest", {"steps": 1, "step_seconds": 0, "checkpoint_every": 0})
    blocker = reservation.GpuLocks(settings.workspace.workers / "gpus")
    assert blocker.try_lock(0)  # another job holds the only GPU
    code = ("import sys\nfrom jobs import gpus\ngpus.host_gpus = lambda: [0]\n"
            "from jobs.runner import execute\nfrom workbench.settings import Settings\n"
            "execute(Settings.from_env(), sys.argv[1])\n")
    worker = subprocess.Popen([sys.executable, "-c", code, run.id], env={**env, "CUDA_VISIBLE_DEVICES": "0"})
    try:
        wait_for(lambda: run.status().get("waiting_pid") == worker.pid, what="the job to wait for GPU 0")
        assert reap(control.store(settings), settings.stale_after) == []  # alive: left waiting
        worker.send_signal(signal.SIGKILL)
        worker.wait(5)
        assert reap(control.store(settings), settings.stale_after) == [run.id]
        assert run.status()["status"] == "failed" and run.status()["error"] == WORKER_LOST
    finally:
        worker.kill()
        blocker.unlock_all()
