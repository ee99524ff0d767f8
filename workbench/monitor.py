"""What the Monitor tab and ``workbench jobs`` show: the runs table, metric curves, live workers
and GPU state. Everything is read from the workspace folder; nothing lives in process memory."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from storage import Workspace, read_json
from workbench.safe_text import counted

RUN_COLUMNS = ["id", "kind", "status", "progress", "started", "duration", "error"]


def _duration(started: str | None, finished: str | None) -> str:
    if not started:
        return ""
    try:
        begin = datetime.fromisoformat(started).timestamp()
        end = datetime.fromisoformat(finished).timestamp() if finished else time.time()
    except ValueError:
        return ""
    seconds = int(max(0, end - begin))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def progress_text(progress: dict | None) -> str:
    if not progress or not progress.get("total"):
        return ""
    return f"{100 * progress['done'] / progress['total']:.0f}% ({progress['done']:g}/{progress['total']:g})"


def runs_table(runs: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per run summary (``RunStore.list()``), in ``RUN_COLUMNS`` order."""
    rows = []
    for run in runs:
        started = run.get("started")
        rows.append([run["id"], run["kind"], run["status"], progress_text(run.get("progress")),
                     (started or "").replace("T", " ").split("+")[0], _duration(started, run.get("finished")),
                     run.get("error") or ""])
    return rows


# What a run is watched for comes first; bookkeeping (timings, token counts, the snapshot taken
# before training) is not drawn.
FIRST = ("loss", "eval_loss", "reward", "eval_accuracy", "accuracy", "rewards/margins", "rewards/accuracies",
         "objective/kl", "kl", "objective/scores", "eval_margin", "learning_rate", "grad_norm")
NOT_DRAWN = ("_runtime", "_per_second", "_preparation_time", "num_tokens", "epoch", "total_flos")


def curve_names(metrics: list[dict[str, Any]]) -> list[str]:
    """The metrics drawn as curves, the ones people watch first."""
    names = {k for m in metrics for k, v in m.items() if k != "step" and isinstance(v, (int, float))
             and not isinstance(v, bool) and not k.startswith("before_") and not k.endswith(NOT_DRAWN)}
    return [n for n in FIRST if n in names] + sorted(names - set(FIRST))


def first_curves(watch, names: list[str]) -> list[str]:
    """The two to four curves a run of this kind is watched by (``Watch.curves``) among those it
    logged; the first three logged when its kind names none of them."""
    chosen = [n for n in (watch.curves if watch else ()) if n in names]
    return chosen or names[:3]


def _pair(before: float, after: float) -> tuple[str, str]:
    """Both figures with as many digits as it takes to tell them apart (up to 8)."""
    for digits in (4, 6, 8):
        first, second = f"{before:.{digits}g}", f"{after:.{digits}g}"
        if first != second:
            break
    return first, second


def _judged(before: float, after: float, higher_is_better: bool) -> str:
    change = after - before
    if abs(change) <= 1e-9 * max(1.0, abs(before)):
        return "unchanged"
    word = "better" if (change > 0) == higher_is_better else "worse"
    return f"slightly {word}" if abs(change) < 0.05 * max(abs(before), 1e-9) else word


def result_sentence(watch, result: dict[str, Any], metrics: list[dict[str, Any]]) -> str:
    """The run's outcome in one plain sentence: the held-out figure before → after with the
    number of items it rests on and whether it got better; for runs measured on no held-out
    data, the first and last points of their first curve."""
    from workbench.evaluate.metrics import FEW

    if watch and watch.headline and isinstance(result.get(f"eval_{watch.headline}"), (int, float)):
        after, before = result[f"eval_{watch.headline}"], result.get(f"before_{watch.headline}")
        n = result.get("held_out")
        on = f" on {n} held-out {watch.items}" if isinstance(n, int) else " on held-out data"
        if isinstance(before, (int, float)):
            shown = _pair(before, after)
            text = (f"{watch.label.capitalize()} went from {shown[0]} to {shown[1]}{on}: "
                    f"{_judged(before, after, watch.higher_is_better)}.")
        else:
            text = f"{watch.label.capitalize()} {after:.4g}{on} (not measured before training)."
        if isinstance(n, int) and n < FEW:
            text += f" {n} {watch.items} are too few to be sure of a small change."
        return text
    names = first_curves(watch, curve_names(metrics))
    for name in names:
        points = [m[name] for m in metrics if isinstance(m.get(name), (int, float)) and "step" in m]
        if len(points) >= 2:
            higher = not (name == "loss" or name.endswith("loss") or name == "kl")
            shown = _pair(points[0], points[-1])
            return (f"{name.capitalize()} went from {shown[0]} at the first logged step to {shown[1]} "
                    f"at the last: {_judged(points[0], points[-1], higher)} (no held-out figure for this kind of run).")
    return ""


def result_markdown(result: dict[str, Any]) -> str:
    """A run's result on a few lines: figures rounded, ``before → after`` where the run measured
    the value before training too, paths and timings left to the log."""
    def show(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    parts = []
    for key, value in result.items():
        if key.startswith("before_") or key.endswith(NOT_DRAWN) or isinstance(value, (dict, list)) \
                or (isinstance(value, str) and "/" in value):
            continue
        before = result.get(f"before_{key.removeprefix('eval_')}")
        parts.append(f"{key} **{show(before)} → {show(value)}**" if before is not None else f"{key} **{show(value)}**")
    return "**Result:** " + " · ".join(parts) if parts else ""


def metrics_figure(metrics: list[dict[str, Any]], title: str = "", names: list[str] | None = None):
    """One line per metric against the step, each metric on its own panel (shared x axis):
    ``names`` (in that order), else every metric."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    logged = curve_names(metrics)
    names = [n for n in names if n in logged] if names is not None else logged
    if not names:
        fig = go.Figure()
        fig.update_layout(title=title or "no metrics yet", height=240, template="plotly_white")
        return fig
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names,
                        vertical_spacing=min(0.08, 0.3 / len(names)))
    for row, name in enumerate(names, start=1):
        points = [(m["step"], m[name]) for m in metrics if name in m and "step" in m]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=name,
                                 mode="lines+markers" if len(points) < 50 else "lines"), row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(names), col=1)
    fig.update_layout(title=title, height=max(260, 200 * len(names)), showlegend=False,
                      template="plotly_white", margin=dict(l=50, r=20, t=60, b=40))
    return fig


def live_workers(workspace: Workspace, stale_after: float) -> list[dict[str, Any]]:
    """Workers whose heartbeat file is fresh."""
    out = []
    if not workspace.workers.is_dir():
        return out
    for path in sorted(workspace.workers.glob("*.json")):
        data = read_json(path)
        if isinstance(data, dict) and time.time() - float(data.get("time", 0)) <= stale_after:
            out.append(data)
    return out


def gpu_state() -> list[dict[str, Any]]:
    """Per-GPU memory and utilisation via NVML; empty where no GPU or driver exists."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                         "memory_used_gib": round(mem.used / 2**30, 1),
                         "memory_total_gib": round(mem.total / 2**30, 1), "utilization": util.gpu})
        return gpus
    finally:
        pynvml.nvmlShutdown()


def gpu_holders(runs: list[dict[str, Any]]) -> list[str]:
    """Which running job holds which GPU, from the reservations in the runs' status."""
    return [f"GPU {', '.join(map(str, r['gpus']))}" + (f" on {r['host']}" if r.get("host") else "")
            + f": `{r['id']}` ({r['kind']})" for r in runs if r.get("status") == "running" and r.get("gpus")]


NO_GPU = "no GPU here: its jobs run on the CPU, one at a time"


def queue_label(queue: str | None, gpus: list[dict]) -> str:
    """A queue as a sentence names it: the model jobs' queue is called ``gpu`` and, on a machine
    without one, says where its jobs run instead."""
    if queue == "gpu" and not gpus:
        return f"the gpu queue ({NO_GPU})"
    return f"the {queue or '?'} queue"


def wait_reason(run: dict[str, Any], runs: list[dict[str, Any]], workers: list[dict], gpus: list[dict]) -> str:
    """What a queued run waits for: a worker to be started, the jobs ahead of it on its queue, or
    only to be picked up."""
    queue = run.get("queue")
    label = queue_label(queue, gpus)
    if not workers:
        return "Waiting: no worker is running. Queued jobs start once `workbench worker` runs (the app " \
               "starts one unless it was told `--no-worker`)."
    if not any(w.get("queue") == queue for w in workers):
        return (f"Waiting: no worker serves {label}. Start one with `workbench worker` (all queues) or "
                f"`workbench worker --queue {queue}`.")
    busy = [r for r in runs if r.get("queue") == queue and r.get("status") == "running"]
    ahead = [r for r in runs if r.get("queue") == queue and r.get("status") == "queued" and r["id"] != run.get("id")
             and (r.get("enqueued_at") or 0) < (run.get("enqueued_at") or 0)]
    if not busy and not ahead:
        return f"Waiting for a worker of {label} to pick it up."
    parts = []
    if busy:
        parts.append(f"{label} is busy with " + ", ".join(f"`{r['id']}` ({r['kind']})" for r in busy[:3])
                     + (f" and {len(busy) - 3} more" if len(busy) > 3 else ""))
    if ahead:
        parts.append(f"{counted(len(ahead), 'queued run')} ahead of it")
    return "Waiting: " + "; ".join(parts) + "."


def system_markdown(workers: list[dict], gpus: list[dict], pending: dict[str, Any],
                    holders: list[str] | None = None, precisions: list | None = None) -> str:
    lines = ["**Queue** — pending: " + ", ".join(f"{q} {n}" for q, n in pending.items())]
    if workers:
        lines.append("**Workers** — " + "; ".join(
            f"{w['queue']} (pid {w['pid']} on {w['host']}"
            + (f", GPU {w['device']}" if w.get("device") not in (None, "") else "") + ")" for w in workers))
    else:
        lines.append("**Workers** — none alive: queued jobs wait until `workbench worker` runs")
    if gpus:
        lines.append("**GPUs** — " + "; ".join(
            f"{g['index']}: {g['name']} {g['memory_used_gib']}/{g['memory_total_gib']} GiB, {g['utilization']}%"
            for g in gpus))
    else:
        lines.append("**GPUs** — none detected: the gpu queue's jobs run on the CPU, one at a time")
    if holders:
        lines.append("**Held by** — " + "; ".join(holders))
    if precisions:
        lines.append("**Inference precision** (decided once per device, `precision.json`) — " + "; ".join(
            f"{p.device_name}: {p.dtype}" + (", int8 weights for chat" if p.int8_decode else "")
            + f" (since {p.decided[:10]})" for p in precisions))
    return "\n\n".join(lines)
