"""What the benchmarks share: timing (one call, several calls alternated so a busy machine weighs
on each alike, nearest-rank percentiles), a throw-away workspace on the default model
(provisioned offline) or on ``--model``, the ``workbench`` command called in this process
(quietly, where its progress lines would bury the figures), a free port, and the report written
as JSON. A benchmark script imports it as ``common`` (Python puts the script's folder first on
its path)."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, what ``fn()`` returned)."""
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def alternate(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Each call's seconds over ``rounds`` rounds, every round running each call once in turn: a
    busy moment of the machine weighs on all of them alike, so their ratios hold."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            seconds[name].append(timed(call)[0])
    return seconds


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1])."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q * len(ordered))) - 1))]


def summary_ms(seconds: list[float], digits: int = 1) -> dict[str, float]:
    """p50 (the median), p95 and the worst of timings in seconds, in milliseconds, and how many."""
    return {"p50_ms": round(1000 * statistics.median(seconds), digits),
            "p95_ms": round(1000 * percentile(seconds, 0.95), digits),
            "max_ms": round(1000 * max(seconds), digits), "n": len(seconds)}


def temporary_workspace(prefix: str, model: str | None):
    """(workspace folder, the CLI's ``main``), or (folder, None) when provisioning failed."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0", HF_HUB_OFFLINE="1")
    from workbench.cli import main as cli

    if model:
        os.environ["WORKBENCH_BASE_MODEL"] = model
    elif cli(["models", "pull", "--json"]) != 0:
        return home, None
    return home, cli


def quiet(cli, *args: str) -> None:
    """``workbench ARGS`` in this process with its output held back; exits with it on failure."""
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        code = cli(list(args))
    if code != 0:
        raise SystemExit(f"workbench {' '.join(args)} failed:\n{log.getvalue()[-3000:]}")


def emit(report: dict, path: Path | None) -> None:
    """The report to ``path`` (when given) and as the last line of stdout."""
    if path:
        path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson 95 % interval of a proportion."""
    if not n:
        return 0.0, 1.0
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def workbench(env: dict[str, str], *args: str) -> str:
    """``workbench ARGS`` in a child process with ``env``; its stdout, or exits with its output."""
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"workbench {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def commands_env(root: Path, model: str | None) -> dict[str, str]:
    """The environment of a benchmark's ``workbench`` commands: none of the caller's WORKBENCH_
    settings, offline, and the base model ``model``, else the default one provisioned once under
    ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(WORKBENCH_AUTO_PULL="0", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    if model:
        env["WORKBENCH_BASE_MODEL"] = model
    else:
        provision = root / "provision"
        workbench(dict(env, WORKBENCH_HOME=str(provision)), "models", "pull")
        env["WORKBENCH_BASE_MODEL"] = str(provision / "models" / "base")
    return env
