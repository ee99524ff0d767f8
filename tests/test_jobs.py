"""The queue end to end with a real worker subprocess: transitions, logs, metrics, failure,
cancel (queued and running), resume from a checkpoint, kill -9 of the worker, CPU beside GPU."""
from __future__ import annotations

import os
import signal
import sys

from jobs import control
from storage import RunStore
from tests.conftest import HEARTBEAT_S, cli_json, run_status, wait_for


def _watch(settings, run_id, until=("succeeded", "failed", "cancelled"), timeout=90):
    seen = []

    def done():
        status = run_status(settings, run_id).get("status")
        if status and (not seen or seen[-1] != status):
            seen.append(status)
        return status in until

    wait_for(done, timeout, interval=0.02, what=f"{run_id} to reach {until}")
    return seen


def test_job_runs_end_to_end_in_a_worker(settings, worker):
    run = control.submit(settings, "selftest", {"steps": 12, "step_seconds": 0.05, "checkpoint_every": 5})
    seen = _watch(settings, run.id)
    assert seen[0] == "queued" and "running" in seen and seen[-1] == "succeeded"
    status = run_status(settings, run.id)
    assert status["pid"] != os.getpid() and status["progress"] == {"done": 12, "total": 12}
    assert status["result"]["device"] in ("cpu", "cuda")
    log = run.read_log()
    assert "attempt 1 of selftest started" in log and "step 10/12" in log and "succeeded" in log
    metrics = run.metrics()
    assert [m["step"] for m in metrics] == list(range(1, 13))
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert run.latest_checkpoint().name == "step-00000010"
    shown = cli_json(settings.child_env(), "jobs", "show", run.id)
    assert {"id", "kind", "status", "progress", "error"} <= set(shown)
    assert shown["status"] == "succeeded" and shown["last_metrics"]["step"] == 12


def test_failure_is_recorded_with_its_error(settings, worker):
    run = control.submit(settings, "selftest", {"steps": 10, "step_seconds": 0, "fail_at_step": 3})
    assert _watch(settings, run.id)[-1] == "failed"
    status = run_status(settings, run.id)
    assert status["error"] == "RuntimeError: failure requested at step 3"
    assert "Traceback" in run.read_log()
    # the worker survives a failed job and takes the next one
    nxt = control.submit(settings, "selftest", {"steps": 2, "step_seconds": 0})
    assert _watch(settings, nxt.id)[-1] == "succeeded"


def test_cancel_queued_and_running_then_resume_from_checkpoint(settings, worker):
    long = control.submit(settings, "selftest", {"steps": 400, "step_seconds": 0.05, "checkpoint_every": 5})
    waiting = control.submit(settings, "selftest", {"steps": 5, "step_seconds": 0})
    wait_for(lambda: (run_status(settings, long.id).get("progress") or {}).get("done", 0) >= 7,
             60, what="first job past its first checkpoint")
    # the GPU queue runs one job at a time: the second one is still queued, and says behind what
    assert run_status(settings, waiting.id)["status"] == "queued"
    from workbench.monitor import gpu_state, live_workers, queue_label, wait_reason

    runs, gpus = RunStore(settings.workspace.runs).list(), gpu_state()
    summary = next(r for r in runs if r["id"] == waiting.id)
    assert wait_reason(summary, runs, live_workers(settings.workspace, settings.stale_after), gpus) == \
        f"Waiting: {queue_label('gpu', gpus)} is busy with `{long.id}` (selftest)."
    assert control.cancel(settings, waiting.id) == "cancelled"
    assert control.cancel(settings, long.id) == "cancel requested"
    assert _watch(settings, long.id)[-1] == "cancelled"
    stopped_at = run_status(settings, long.id)["progress"]["done"]
    assert stopped_at < 400 and run_status(settings, long.id)["resumable"]
    # a run queued after the cancelled one has run: the queue went past it, and it never started
    after = control.submit(settings, "selftest", {"steps": 1, "step_seconds": 0})
    assert _watch(settings, after.id)[-1] == "succeeded"
    assert run_status(settings, waiting.id)["status"] == "cancelled"
    assert "started" not in run_status(settings, waiting.id) or not run_status(settings, waiting.id).get("started")
    assert not waiting.metrics()

    checkpoint = long.latest_checkpoint()
    control.resume(settings, long.id)
    status = run_status(settings, long.id)
    assert status["attempt"] == 2 and status["resume_from"] == str(checkpoint)
    wait_for(lambda: len(long.metrics()) > stopped_at + 2, 60, what="resumed run to make steps")
    control.cancel(settings, long.id)
    assert _watch(settings, long.id)[-1] == "cancelled"
    log = long.read_log()
    start_step = int(checkpoint.name.split("-")[1])
    assert f"resumed from {checkpoint.name} (step {start_step})" in log
    steps = [m["step"] for m in long.metrics()]
    second_attempt = steps[steps.index(start_step + 1, 1):] if steps.count(start_step + 1) > 1 else []
    assert second_attempt and second_attempt[0] == start_step + 1


def test_a_killed_worker_is_reaped_and_its_run_resumes_from_a_checkpoint(settings, worker):
    run = control.submit(settings, "selftest", {"steps": 1000, "step_seconds": 0.05, "checkpoint_every": 5})
    wait_for(lambda: (run_status(settings, run.id).get("progress") or {}).get("done", 0) >= 6,
             60, what="job past its first checkpoint")
    pid = run_status(settings, run.id)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: run_status(settings, run.id).get("status") != "running", 4 * HEARTBEAT_S,
             interval=0.02, what="the reaper")
    status = run_status(settings, run.id)
    assert status["status"] == "failed" and status["error"] == "worker lost" and status["resumable"]
    # a fresh process (a restarted web process or the CLI) still lists every run
    listed = {r["id"]: r for r in cli_json(settings.child_env(), "jobs", "list")}
    assert listed[run.id]["status"] == "failed" and listed[run.id]["error"] == "worker lost"
    # the supervisor restarted the GPU consumer: resume finishes from the checkpoint
    control.resume(settings, run.id)
    wait_for(lambda: "resumed from step-" in run.read_log(), 60, what="resume from the checkpoint")
    control.cancel(settings, run.id)
    assert _watch(settings, run.id)[-1] == "cancelled"


def test_a_message_lost_with_a_consumer_that_died_before_starting_its_run_is_queued_again(settings, env,
                                                                                        start_process):
    """Huey's dequeue deletes a message: a consumer killed between it and the run's first write
    takes the run's only message with it, and the run stayed ``queued`` for good (the soak found
    one in 300). A worker puts such a run back on its queue, once, and it runs."""
    from jobs.queues import get_huey, task_ids_on
    from jobs.reaper import lost_messages

    run = control.submit(settings, "selftest", {"steps": 2, "step_seconds": 0.01})
    status = run_status(settings, run.id)
    huey, store = get_huey(settings, status["queue"]), RunStore(settings.workspace.runs)
    on_queue = lambda: task_ids_on(huey)  # noqa: E731
    assert status["task_id"] in on_queue() and lost_messages(store, status["queue"], on_queue, grace=0) == []
    taken = huey.dequeue()  # what a consumer does first; it dies here, before the run's first write
    assert taken.id == status["task_id"] and taken.id not in on_queue()
    assert [(r.id, t) for r, t in lost_messages(store, status["queue"], on_queue, grace=0)] == [(run.id, taken.id)]
    start_process([sys.executable, "-m", "workbench.cli", "worker"], env, "worker")
    assert _watch(settings, run.id)[-1] == "succeeded"
    assert run.read_log().count("queued again") == 1
    assert run_status(settings, run.id)["task_id"] != taken.id


def test_cpu_jobs_are_not_stuck_behind_a_gpu_job(settings, worker):
    base = settings.workspace.ensure().base_model
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"")
    gpu_job = control.submit(settings, "selftest", {"steps": 600, "step_seconds": 0.05})
    wait_for(lambda: run_status(settings, gpu_job.id).get("status") == "running", 60, what="GPU job to start")
    cpu_job = control.submit(settings, "models.pull", {})
    assert _watch(settings, cpu_job.id, timeout=30)[-1] == "succeeded"
    assert run_status(settings, cpu_job.id)["result"]["skipped"] is True
    assert run_status(settings, gpu_job.id)["status"] == "running"
    control.cancel(settings, gpu_job.id)
    _watch(settings, gpu_job.id)


def test_a_queued_run_says_what_it_waits_for():
    from workbench.monitor import queue_label, system_markdown, wait_reason

    run = {"id": "r3", "queue": "gpu", "status": "queued", "enqueued_at": 3.0}
    assert wait_reason(run, [run], [], []).startswith("Waiting: no worker is running.")
    cpu = {"queue": "cpu", "pid": 7, "host": "box"}
    assert wait_reason(run, [run], [cpu], []).startswith(
        "Waiting: no worker serves the gpu queue (no GPU here: its jobs run on the CPU, one at a time).")
    runs = [{"id": "r1", "kind": "train.dpo", "queue": "gpu", "status": "running"},
            {"id": "r2", "kind": "evaluate", "queue": "gpu", "status": "queued", "enqueued_at": 2.0}, run,
            {"id": "r4", "kind": "evaluate", "queue": "gpu", "status": "queued", "enqueued_at": 4.0},
            {"id": "c1", "kind": "corpus.ingest", "queue": "cpu", "status": "running"}]
    workers, h200 = [cpu, {"queue": "gpu", "pid": 8, "host": "box", "device": "0"}], [{"index": 0}]
    assert wait_reason(run, runs, workers, h200) == "Waiting: the gpu queue is busy with `r1` (train.dpo); " \
                                                   "1 queued run ahead of it."
    assert wait_reason(runs[1], runs[1:], workers, []) == \
        "Waiting for a worker of the gpu queue (no GPU here: its jobs run on the CPU, one at a time) to pick it up."
    assert queue_label("cpu", []) == "the cpu queue" and queue_label("gpu", h200) == "the gpu queue"
    assert "none detected: the gpu queue's jobs run on the CPU" in system_markdown(workers, [], {"cpu": 0, "gpu": 2})


def test_bad_config_is_refused_before_anything_is_written(settings):
    import pytest

    from workbench.configs import ConfigError

    with pytest.raises(ConfigError, match="unknown option"):
        control.submit(settings, "selftest", {"stepz": 3})
    with pytest.raises(ConfigError, match="steps"):
        control.submit(settings, "selftest", {"steps": "many"})
    with pytest.raises(ValueError, match="unknown job kind"):
        control.submit(settings, "nope", {})
    assert RunStore(settings.workspace.runs).list() == []


def test_an_unreachable_queue_fails_the_run_instead_of_leaving_it_queued(settings):
    import dataclasses

    import pytest

    unreachable = dataclasses.replace(settings, queue="redis://127.0.0.1:1/0")
    with pytest.raises(Exception):
        control.submit(unreachable, "selftest", {"steps": 1})
    [summary] = RunStore(settings.workspace.runs).list()
    assert summary["status"] == "failed" and "could not enqueue" in summary["error"]


def test_resume_refused_while_running_keeps_the_pending_cancel(settings):
    import pytest

    run = control.create(settings, "selftest", {"steps": 1})
    run.transition({"queued"}, "running", pid=os.getpid())
    assert control.cancel(settings, run.id) == "cancel requested"
    with pytest.raises(ValueError, match="only failed or cancelled"):
        control.resume(settings, run.id)
    assert run.cancel_requested()


def test_monitor_draws_the_watched_curves_first_and_no_bookkeeping():
    from workbench.monitor import curve_names, metrics_figure

    # what TRL's DPO trainer logs through the workbench callback, step by step
    metrics = [{"step": 0, "before_loss": 0.69, "before_runtime": 1.0, "before_logp_margin": -3.0},
               {"step": 1, "loss": 0.69, "grad_norm": 1.2, "learning_rate": 5e-5, "rewards/margins": 0.0,
                "rewards/chosen": 0.0, "logps/chosen": -40.0, "epoch": 0.5, "steps_per_s": 0.4},
               {"step": 2, "loss": 0.61, "eval_loss": 0.64, "eval_runtime": 0.5, "eval_samples_per_second": 6.0,
                "eval_num_tokens": 900.0, "rewards/margins": 0.2, "rewards/chosen": 0.1, "epoch": 1.0}]
    names = curve_names(metrics)
    assert names[:5] == ["loss", "eval_loss", "rewards/margins", "learning_rate", "grad_norm"]
    assert set(names[5:]) == {"logps/chosen", "rewards/chosen", "steps_per_s"}
    titles = [a.text for a in metrics_figure(metrics, "run").layout.annotations]
    assert titles == names
    # a DPO run shows its kind's curves first, the others on demand
    from workbench.kinds import KINDS
    from workbench.monitor import first_curves, result_sentence

    dpo = KINDS["train.dpo"].watch()
    assert first_curves(dpo, names) == ["loss", "rewards/margins", "rewards/chosen"]
    assert [a.text for a in metrics_figure(metrics, "run", names=["loss", "grad_norm"]).layout.annotations] \
        == ["loss", "grad_norm"]
    # and says in a sentence what came of it, before -> after, on how many items
    assert result_sentence(dpo, {"before_logp_margin": 85.77, "eval_logp_margin": 85.59, "held_out": 40}, metrics) \
        == "Held-out log-prob margin (chosen over rejected) went from 85.77 to 85.59 on 40 held-out pairs: slightly worse."
    assert result_sentence(KINDS["train.reward"].watch(), {"before_accuracy": 0.5, "eval_accuracy": 0.8,
                                                          "held_out": 5}, []) \
        == "Held-out accuracy went from 0.5 to 0.8 on 5 held-out pairs: better. 5 pairs are too few to be sure of a small change."
    assert result_sentence(KINDS["train.ppo"].watch(), {}, [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.4}]) \
        == "Reward went from 0.1 at the first logged step to 0.4 at the last: better (no held-out figure for this kind of run)."


def test_a_burst_of_stop_signals_stops_the_worker_and_its_consumers(settings, worker):
    """Signals that arrive while the supervisor waits (a process group's SIGTERM, then the
    parent-death one) must stop it: it reaps its consumers and exits, leaving no orphan."""
    wait_for(lambda: "workbench worker: queues" in worker.output(), 60, what="the supervisor's start line")
    consumers = [(int(c), _started(int(c))) for task in os.listdir(f"/proc/{worker.proc.pid}/task")
                 for c in open(f"/proc/{worker.proc.pid}/task/{task}/children").read().split()]
    assert len(consumers) == 2
    for _ in range(200):
        os.kill(worker.proc.pid, signal.SIGTERM)
    assert worker.proc.wait(timeout=60) == 0
    # a process is its pid and its start time: the other test process's threads may take a freed pid
    assert not [pid for pid, started in consumers if _started(pid) == started]


def _started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), None when there is no such process."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def test_a_supervisor_whose_parent_dies_goes_and_its_consumers_with_it(env, tmp_path):
    """A terminal closed or an app killed with -9: the worker supervisor it started must not stay
    behind with parent 1, nor its consumers."""
    import subprocess

    started = tmp_path / "supervisor.pid"
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               "child = subprocess.Popen([sys.executable, '-m', 'workbench.cli', 'worker'])\n"
                               f"open({str(started)!r}, 'w').write(str(child.pid))\n"
                               "time.sleep(3600)\n"], env=env)
    try:
        supervisor = int(wait_for(lambda: started.exists() and started.read_text(), 60, what="the supervisor"))
        own = (supervisor, _started(supervisor))
        consumers = wait_for(lambda: len(_children(supervisor)) == 2 and _children(supervisor), 60, what="its consumers")
    finally:
        parent.kill()
        parent.wait()
    assert own[1] is not None and len(consumers) == 2 and all(began is not None for _, began in consumers)
    wait_for(lambda: _started(own[0]) != own[1], 60, what="the supervisor to exit")
    assert _started(own[0]) != own[1], "the supervisor outlived its parent"
    wait_for(lambda: not [pid for pid, began in consumers if _started(pid) == began], 60, what="its consumers to exit")
    assert [pid for pid, began in consumers if _started(pid) == began] == [], "a consumer outlived its supervisor"


def _children(pid: int) -> list[tuple[int, int | None]]:
    """Process ``pid``'s children, each as its pid and start time."""
    try:
        return [(int(c), _started(int(c))) for task in os.listdir(f"/proc/{pid}/task")
                for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
    except OSError:
        return []
