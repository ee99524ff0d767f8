"""The job side of training: start the training child (one process by default; N ranks through
``torchrun`` for data parallelism), copy its output into the run log, and turn its outcome into
the job's.
A cancel or a crash of the child frees all of its memory; the child dies with the worker."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from storage import read_json
from workbench.errors import WorkbenchError
from workbench.reporting import Cancelled
from workbench.subprocesses import die_with_parent, killed_by_signal_9, machine_memory_bytes, tree_rss_bytes
from workbench.train.config import TrainConfig

RESULT = "result.json"
CANCEL_GRACE_S = 300.0  # a child that finishes no step this long after a cancel (stuck) is stopped
QUIET = {"TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
         "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "PYTHONUNBUFFERED": "1",
         "TRL_EXPERIMENTAL_SILENCE": "1"}


def command(run_folder, processes: int) -> list[str]:
    """One process: the child itself (under torchrun a world of one is still wrapped in DDP, which
    costs a gradient all-reduce a step and breaks TRL's PPO). Several: torchrun, one rank each."""
    child = ["-m", "workbench.train.child", str(run_folder)]
    if processes == 1:
        return [sys.executable, *child]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *child]


def child_env(processes: int, resume_from, gpus: list[int] | None = None) -> dict[str, str]:
    env = {**os.environ, **QUIET, "WORKBENCH_RESUME_FROM": str(resume_from or "")}
    if gpus:  # the GPUs the runner reserved for this job: one rank on each
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would pin every rank to one thread
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    return env


def run_in_child(config: TrainConfig, reporter) -> dict:
    run = reporter.run
    (run.folder / RESULT).unlink(missing_ok=True)
    _check_devices(config.num_processes, reporter.gpus)
    _make_room(config, reporter)
    args = command(run.folder, config.num_processes)
    reporter.log(f"starting {config.num_processes} training process(es)"
                 + (" with torchrun" if config.num_processes > 1 else ""))
    proc = subprocess.Popen(args, env=child_env(config.num_processes, reporter.resume_from, reporter.gpus),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            bufsize=1, preexec_fn=die_with_parent)
    tail: list[str] = []

    def copy_output():
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                del tail[:-40]
                reporter.log(line)

    reader = threading.Thread(target=copy_output, daemon=True)
    reader.start()
    run.update(child_pid=proc.pid)
    cancel_seen, last_progress, peak = None, None, 0
    while proc.poll() is None:
        time.sleep(0.2)
        peak = max(peak, tree_rss_bytes(proc.pid))
        progress = _progress(run)
        if progress != last_progress:
            last_progress = progress
            if progress and cancel_seen is not None:
                cancel_seen = time.monotonic()  # still finishing steps: it will stop at the next one
            if progress and getattr(reporter, "echo", False):
                reporter.progress(progress["done"], progress["total"])
        if cancel_seen is None and reporter.cancel_requested():
            cancel_seen = time.monotonic()
        if cancel_seen is not None and time.monotonic() - cancel_seen > CANCEL_GRACE_S:
            reporter.log(f"the training process did not stop within {CANCEL_GRACE_S:.0f} s of the cancel; stopping it")
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    reader.join(timeout=5)
    outcome = read_json(run.folder / RESULT)
    if isinstance(outcome, dict) and outcome.get("status") == "cancelled":
        raise Cancelled(outcome.get("message") or "cancelled by user")
    if proc.returncode != 0 or not isinstance(outcome, dict) or outcome.get("status") != "succeeded":
        if cancel_seen is not None:
            raise Cancelled("cancelled by user")
        if isinstance(outcome, dict) and outcome.get("error"):
            raise RuntimeError(outcome["error"])
        if killed_by_signal_9(proc.returncode, tail):
            raise WorkbenchError(killed_message(peak, machine_memory_bytes()))
        raise RuntimeError(f"training process exited with code {proc.returncode}: {_last_error(tail)}")
    return outcome.get("result") or {}


def killed_message(peak_bytes: int, total_bytes: int) -> str:
    """What a training child killed by SIGKILL is reported as: its last line is no cause (on CPU
    it is bitsandbytes' warning about a missing ``kernels`` package, printed at every start)."""
    gib = 2**30
    seen = f": peak {peak_bytes / gib:.1f} GB of {total_bytes / gib:.0f} GB" if peak_bytes and total_bytes else ""
    return f"killed by the system (out of memory?){seen}; lower batch_size or max_length"


def _make_room(config: TrainConfig, reporter) -> None:
    """On GPUs, refuse before starting a job whose memory estimate does not fit in what is free
    (after asking the web process to unload its models)."""
    import dataclasses

    from workbench.gpu_memory import devices, make_room
    from workbench.settings import Settings
    from workbench.train.estimate import estimate_for

    visible = ",".join(map(str, reporter.gpus)) if reporter.gpus else None
    if not devices(visible):
        return
    kind = (reporter.run.config() or {}).get("kind", "")
    need = estimate_for(Settings.from_env(), kind, dataclasses.asdict(config), cuda=True).get("memory_gib")
    if need:
        reporter.run.update(gpu_memory=make_room(reporter.workspace, need, reporter.log,
                                                 free=lambda: devices(visible)))


def _progress(run) -> dict | None:
    status = run.status()
    return status.get("progress") if isinstance(status, dict) else None


def _last_error(lines: list[str]) -> str:
    for line in reversed(lines):
        if ("Error" in line or "Exception" in line) and "ChildFailedError" not in line:
            return line.strip()[-500:]
    return lines[-1].strip()[-500:] if lines else "no output"


def _check_devices(processes: int, reserved: list[int]) -> None:
    """Several ranks on GPUs need as many GPUs reserved (the runner reserves ``num_processes``
    of them on a machine with GPUs; without GPUs the ranks run on the CPU)."""
    if processes > 1 and reserved and len(reserved) < processes:
        raise RuntimeError(f"num_processes {processes} needs {processes} GPUs and this job holds "
                           f"{len(reserved)} (GPU {', '.join(map(str, reserved))})")
