"""Monitor tab: every run with its live log and metric curves, cancel / resume, queue, workers
and GPU state. Refreshed by a timer; everything comes from the run folders on disk."""
from __future__ import annotations

import gradio as gr

from jobs import control
from jobs.reaper import reap
from storage import Unreadable
from workbench import audit
from workbench.kinds import KINDS
from workbench.monitor import (RUN_COLUMNS, curve_names, first_curves, gpu_holders, gpu_state, live_workers,
                               metrics_figure, progress_text, result_markdown, result_sentence, runs_table,
                               system_markdown, wait_reason)
from workbench.feedback.stats import stats_markdown, team_stats
from workbench.models.precision import recorded_all
from workbench.safe_text import plain_markdown
from workbench.selftest import Config as SelftestConfig
from workbench.ui.common import UiContext


def _watch(kind: str | None):
    return KINDS[kind].watch() if kind in KINDS else None


def _detail(ctx: UiContext, run_id: str | None, metrics: list[dict], runs: list[dict],
            workers: list[dict], gpus: list[dict]) -> tuple[str, str, str]:
    """The run's headline (with the plain result sentence, or what a queued run waits for), its
    log, and every figure of its result."""
    if not run_id:
        return "Select a run.", "", ""
    try:
        run = control.store(ctx.settings).get(run_id)
    except KeyError:
        return f"Run `{run_id}` no longer exists.", "", ""
    status = run.status()
    if isinstance(status, Unreadable):
        return f"**{run_id}**: unreadable ({status.reason})", run.read_log(), ""
    parts = [f"**{run_id}** — {status.get('kind')} — **{status.get('status')}**",
             f"attempt {status.get('attempt', 1)}"]
    if status.get("progress"):
        parts.append(progress_text(status["progress"]))
    if status.get("message"):
        parts.append(status["message"])
    text = " · ".join(parts)
    if status.get("status") == "queued":
        text += "\n\n" + wait_reason(dict(status, id=run_id), runs, workers, gpus)
    if status.get("error"):
        text += f"\n\n**Error:** {plain_markdown(status['error'])}" + (" — resumable" if status.get("resumable") else "")
    figures = ""
    if isinstance(status.get("result"), dict) and status["result"]:
        sentence = result_sentence(_watch(status.get("kind")), status["result"], metrics)
        if sentence:
            text += f"\n\n**Result:** {sentence}"
        figures = result_markdown(status["result"])
    return text, run.read_log(), figures


def create_monitor_tab(ctx: UiContext) -> tuple[gr.Tab, gr.Dropdown]:
    """The tab and its run picker (other tabs open a run they launched by setting it)."""
    settings = ctx.settings

    def refresh(selected: str | None, plotted: tuple | None, chosen: list[str] | None = None, picked: bool = False):
        """``plotted``: (run, metric rows, curves, whether the user picked them) of the drawn
        figure; ``chosen``: the curves the user just ticked (ticks redraw what was drawn)."""
        if chosen is None and plotted and plotted[0] == selected:
            chosen, picked = list(plotted[2]), plotted[3]
        store = control.store(settings)
        reap(store, settings.stale_after)
        runs = store.list()
        rows = runs_table(runs)
        ids = [r[0] for r in rows]
        # Only fill in a selection when there is none: a tick that started before the user
        # picked a run must not put the old one back.
        picker = gr.Dropdown(choices=ids)
        if selected not in ids:
            selected = ids[0] if ids else None
            picker = gr.Dropdown(choices=ids, value=selected)
        metrics = store.get(selected).metrics() if selected else []
        workers, gpus = live_workers(settings.workspace, settings.stale_after), gpu_state()
        detail, log, figures = _detail(ctx, selected, metrics, runs, workers, gpus)
        figure, marker, picker_names = gr.skip(), plotted, gr.skip()
        if selected:
            names = curve_names(metrics)
            same_run = bool(plotted) and plotted[0] == selected
            picked = bool(chosen) and picked
            if not picked:  # the kind's curves, as they appear in the log
                kind = next((r["kind"] for r in runs if r["id"] == selected), None)
                chosen = first_curves(_watch(kind), names)
                if not same_run or tuple(chosen) != plotted[2] or plotted[1] != len(metrics):
                    picker_names = gr.CheckboxGroup(choices=names, value=chosen)
            elif plotted[1] != len(metrics):
                picker_names = gr.CheckboxGroup(choices=names)
            marker = (selected, len(metrics), tuple(chosen), picked)
            if marker != plotted:
                figure = metrics_figure(metrics, title=selected, names=list(chosen))
        system = system_markdown(workers, gpus,
                                 control.pending_counts(settings), gpu_holders(runs), recorded_all(settings.workspace))
        return (gr.Dataframe(value=rows), picker, detail, log,
                figure, marker, system, picker_names, figures)

    def pick_row(evt: gr.SelectData):
        row = evt.row_value if evt.row_value else None
        return row[0] if row else gr.skip()

    def cancel(run_id: str | None, request: gr.Request):
        user = ctx.require(request, "cancel")
        if not run_id:
            raise gr.Error("Select a run first.")
        try:
            outcome = control.cancel(settings, run_id, user.username)
        except (KeyError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"{run_id}: {outcome}")

    def resume(run_id: str | None, request: gr.Request):
        user = ctx.require(request, "launch")
        if not run_id:
            raise gr.Error("Select a run first.")
        try:
            control.resume(settings, run_id, user.username)
        except (KeyError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"{run_id}: resumed")

    def delete(run_id: str | None, request: gr.Request):
        user = ctx.require(request, "delete")
        if not run_id:
            raise gr.Error("Select a run first.")
        try:
            control.delete(settings, run_id, user.username)
        except (KeyError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"{run_id}: deleted")

    def launch_selftest(steps: float, request: gr.Request) -> str:
        user = ctx.require(request, "launch")
        try:
            run = control.submit(settings, "selftest", {"steps": int(steps)}, user=user.username)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return run.id

    def show_annotation(request: gr.Request):
        if ctx.allowed(request, "data") is None:
            return gr.skip()
        return stats_markdown(team_stats(settings.workspace))

    def show_audit(request: gr.Request):
        ctx.require(request, "audit")
        return audit.rows(audit.recent(settings.workspace))

    with gr.Tab("Monitor", id="monitor") as tab:
        with gr.Row():
            with gr.Column(scale=3):
                table = gr.Dataframe(headers=RUN_COLUMNS, label="Runs", interactive=False,
                                     elem_id="runs-table", wrap=True)
            with gr.Column(scale=1):
                system = gr.Markdown(elem_id="system-state")
                steps = gr.Number(value=SelftestConfig().steps, precision=0, label="Self-test steps", minimum=1)
                selftest_btn = gr.Button("Run self-test", elem_id="selftest-btn")
                ctx.only_for("launch", selftest_btn)
        with gr.Row():
            selected = gr.Dropdown(label="Run", choices=[], elem_id="run-select", scale=3,
                                   allow_custom_value=True)
            cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn", scale=1)
            resume_btn = gr.Button("Resume", elem_id="resume-btn", scale=1)
            delete_btn = gr.Button("Delete", elem_id="delete-btn", scale=1)
            ctx.only_for("cancel", cancel_btn)
            ctx.only_for("launch", resume_btn)
            ctx.only_for("delete", delete_btn)
        detail = gr.Markdown(elem_id="run-detail")
        with gr.Row():
            log = gr.Textbox(label="Log", lines=18, max_lines=18, autoscroll=True,
                             elem_id="run-log", interactive=False)
            with gr.Column():
                curves = gr.CheckboxGroup(label="Curves (the run's kind chooses the first; tick more)",
                                          choices=[], elem_id="run-curve-names")
                plot = gr.Plot(label="Curves", elem_id="run-curves")
        with gr.Accordion("Every figure of the result", open=False):
            figures = gr.Markdown(elem_id="run-figures")
        plotted = gr.State(None)
        timer = gr.Timer(2.0)
        with gr.Accordion("Annotation: sets, agreement, annotators (trainers)", open=False,
                          elem_id="monitor-annotation") as annotation:
            annotation_stats = gr.Markdown(elem_id="monitor-annotation-stats")
            annotation_btn = gr.Button("Refresh", size="sm")
        ctx.only_for("data", annotation)
        with gr.Accordion("Audit log (admins)", open=False) as audit_box:
            audit_btn = gr.Button("Show the newest entries", elem_id="audit-btn")
            ctx.only_for("audit", audit_box)
            audit_table = gr.Dataframe(headers=audit.COLUMNS, interactive=False, wrap=True, elem_id="audit-table")

        outputs = [table, selected, detail, log, plot, plotted, system, curves, figures]
        for event in (tab.select, timer.tick, selected.change):
            event(refresh, [selected, plotted], outputs, show_progress="hidden", queue=False)

        def pick_curves(run, drawn, names):
            return refresh(run, drawn, list(names or []), picked=True)

        curves.input(pick_curves, [selected, plotted, curves], outputs, show_progress="hidden", queue=False,
                     api_name=False)
        table.select(pick_row, None, selected)
        cancel_btn.click(cancel, selected, None, api_name="cancel_run")
        resume_btn.click(resume, selected, None, api_name="resume_run")
        delete_btn.click(delete, selected, None, api_name="delete_run")
        selftest_btn.click(launch_selftest, steps, selected, api_name="launch_selftest")
        audit_btn.click(show_audit, None, audit_table, api_name="audit_log")
        annotation.expand(show_annotation, None, annotation_stats, api_name=False)
        annotation_btn.click(show_annotation, None, annotation_stats, api_name=False)
    return tab, selected
