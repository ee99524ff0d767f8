"""Train tab. Launch: pick a method, a start model and a dataset (what the method needs, row
counts, a preview); the form is generated from the method's Config (its defaults, choices and
help); an estimate of memory and time on this device; Launch queues the job and opens it in
Monitor. Data: upload SFT rows into data/train.jsonl or data/test.jsonl, or build rows from the
chosen answers of the votes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from jobs import control
from workbench import audit
from workbench.configs import AUTO, FieldSpec, describe
from workbench.datasets.sft import add_chosen_answers, import_rows, stats
from workbench.errors import WorkbenchError
from workbench.kinds import TRAIN_METHODS, get_kind
from workbench.models.loading import model_choices
from workbench.safe_text import counted
from workbench.train.preflight import newest_sft
from workbench.train.estimate import estimate_text
from workbench.train.overview import data_files, dataset_summary, needs_text
from workbench.ui.common import UiContext
from workbench.ui.forms import LaunchingTab, field_widget, form_values

FIRST = ("model", "data", "output")  # groups shown open; the rest sit in accordions
TITLES = {"lora": "LoRA", "method": "Method settings"}


@dataclass
class MethodForm:
    method: str
    group: gr.Group
    specs: list[FieldSpec]
    widgets: list[gr.components.Component] = field(default_factory=list)

    def values(self, raw: tuple) -> dict[str, Any]:
        return form_values(self.specs, raw)


def start_choices(ws, default: str, models=None) -> list[tuple[str, str]]:
    """The start models to pick from; ``auto`` first where it is the method's default."""
    models = model_choices(ws) if models is None else models
    if default != AUTO:
        return models
    newest = newest_sft(ws)
    return [(f"auto: the newest SFT model ({newest or 'none yet: base'})", AUTO)] + models


def _widget(spec: FieldSpec, ctx: UiContext, method: str):
    ws = ctx.settings.workspace
    label, elem = spec.name.replace("_", " "), f"train-{method}-{spec.name}"
    common = {"label": label, "info": spec.help, "elem_id": elem}
    if spec.name == "model":
        return gr.Dropdown(start_choices(ws, spec.default), value=spec.default, allow_custom_value=True, **common)
    if spec.name in ("dataset", "eval_dataset"):
        return gr.Dropdown(data_files(ws), value=spec.default, allow_custom_value=True, **common)
    return field_widget(spec, elem)


def _method_form(method: str, ctx: UiContext, visible: bool) -> MethodForm:
    config_cls, _ = get_kind(TRAIN_METHODS[method]).load()
    specs = describe(config_cls)
    groups: dict[str, list[FieldSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.group or "training", []).append(spec)
    ordered = [g for g in FIRST if g in groups] + [g for g in groups if g not in FIRST]
    form_specs: list[FieldSpec] = []
    widgets = []
    with gr.Group(visible=visible) as group:
        for name in ordered:
            with gr.Accordion(TITLES.get(name, name.capitalize()), open=name in FIRST):
                with gr.Row(equal_height=False):
                    for spec in groups[name]:
                        widgets.append(_widget(spec, ctx, method))
                        form_specs.append(spec)
    return MethodForm(method, group, form_specs, widgets)


def create_train_tab(ctx: UiContext) -> LaunchingTab:
    settings = ctx.settings
    ws = settings.workspace
    methods = list(TRAIN_METHODS)

    def preview(which):
        path = ws.train_file if which == "train" else ws.test_file
        if not path.exists():
            return f"`{path.name}` does not exist yet.", []
        try:
            info = stats(path)
        except ValueError as exc:
            return f"**{path.name} is not valid:** {exc}", []
        sample = [[json.dumps(r, ensure_ascii=False)[:400]] for r in info["sample"]]
        return f"**{counted(info['rows'], 'row')}** in `{path.name}` ({', '.join(info['formats'])})", sample

    def upload(file, into, replace, split, request: gr.Request):
        user = ctx.require(request, "data", uploads=file)
        if not file:
            raise gr.Error("Choose a JSONL file.")
        try:
            result = import_rows(Path(file), ws.train_file, ws.test_file, into, bool(replace), float(split))
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        audit.record(ws, user.username, "import", Path(file).name,
                     detail=f"{result['train_rows']} train, {result['test_rows']} test rows")
        return (f"{counted(result['train_rows'], 'row')} into train.jsonl, {result['test_rows']} into test.jsonl.",
                *preview(into))

    def from_feedback(into, request: gr.Request):
        user = ctx.require(request, "data")
        try:
            result = add_chosen_answers(ws.feedback_file, ws.train_file, ws.test_file, into)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        audit.record(ws, user.username, "import", ws.feedback_file.name,
                     detail=f"{result['train_rows']} train, {result['test_rows']} test rows")
        return (f"{counted(result['train_rows'], 'row')} into train.jsonl, {result['test_rows']} into test.jsonl.",
                *preview(into))

    with gr.Tab("Train", id="train") as tab:
        ctx.only_for("launch", tab)
        with gr.Accordion("A new training run", open=True):
            method = gr.Radio(methods, value=methods[0], label="method", elem_id="train-method")
            needs = gr.Markdown(needs_text(methods[0]), elem_id="train-needs")
            forms = [_method_form(m, ctx, m == methods[0]) for m in methods]
            dataset_info = gr.Markdown(elem_id="train-dataset-info")
            estimate = gr.Markdown(elem_id="train-estimate")
            with gr.Row():
                estimate_btn = gr.Button("Check data and estimate", elem_id="train-estimate-btn")
                launch_btn = gr.Button("Launch training", variant="primary", elem_id="train-launch")
                ctx.only_for("launch", launch_btn)
            launch_message = gr.Markdown(elem_id="train-launch-message")
        with gr.Accordion("Data: data/train.jsonl and data/test.jsonl", open=False):
            gr.Markdown("Rows in chat `messages`, `prompt`/`completion` or Alpaca "
                        "`instruction`/`input`/`output` format. A bad line is reported with its number "
                        "and nothing is written.")
            with gr.Row():
                file = gr.File(label="JSONL file", file_types=[".jsonl"], type="filepath", elem_id="sft-upload")
                with gr.Column():
                    into = gr.Radio(["train", "test"], value="train", label="into")
                    replace = gr.Checkbox(label="replace the file (default: append)")
                    split = gr.Slider(0, 0.5, value=0.0, step=0.05, label="share sent to test.jsonl")
                    import_btn = gr.Button("Import", variant="primary", elem_id="sft-import")
                    feedback_btn = gr.Button("Add chosen answers from the votes")
                    ctx.only_for("data", import_btn, feedback_btn)
            message = gr.Markdown(elem_id="sft-message")
            summary = gr.Markdown()
            sample = gr.Dataframe(headers=["sample rows"], interactive=False, wrap=True)

    all_widgets = [w for f in forms for w in f.widgets]

    def form_values(chosen: str, raw: tuple) -> dict[str, Any]:
        offset = 0
        for form in forms:
            part = raw[offset:offset + len(form.widgets)]
            offset += len(form.widgets)
            if form.method == chosen:
                return form.values(part)
        raise gr.Error(f"unknown method {chosen!r}")

    def show_method(chosen):
        return (needs_text(chosen), *[gr.Group(visible=f.method == chosen) for f in forms])

    def check(request: gr.Request, chosen, *raw):
        ctx.require(request, "launch")
        values = form_values(chosen, raw)
        return (dataset_summary(chosen, ws, values.get("dataset", "")),
                estimate_text(settings, TRAIN_METHODS[chosen], values))

    def check_quietly(request: gr.Request, chosen, *raw):
        """(method switched) The data check and estimate for roles that may launch; nothing for the others."""
        if ctx.allowed(request, "launch") is None:
            return "", ""
        return check(request, chosen, *raw)

    def launch(request: gr.Request, chosen, *raw):
        user = ctx.require(request, "launch")
        values = form_values(chosen, raw)
        try:
            run = control.submit(settings, TRAIN_METHODS[chosen], values, user=user.username)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        status = run.status()
        notes = "".join(f"\n\n⚠ {w}" for w in status.get("warnings") or [])
        return f"Queued **{run.id}**: it is open in Monitor.{notes}", run.id, gr.Tabs(selected="monitor")

    method.change(show_method, method, [needs, *[f.group for f in forms]], api_name=False).then(
        check_quietly, [method, *all_widgets], [dataset_info, estimate], api_name=False)
    estimate_btn.click(check, [method, *all_widgets], [dataset_info, estimate], api_name="train_estimate")
    import_btn.click(upload, [file, into, replace, split], [message, summary, sample], api_name="import_sft")
    feedback_btn.click(from_feedback, [into], [message, summary, sample], api_name="sft_from_feedback")
    into.change(preview, [into], [summary, sample], api_name=False)

    # Only the pickers are this event's outputs: a field that is an output of a pending event takes
    # back its earlier value when the event ends, so a number typed into a section opened just
    # after the tab showed its old value again.
    pickers = [(spec, widget) for form in forms for spec, widget in zip(form.specs, form.widgets)
               if spec.name in ("model", "dataset", "eval_dataset")]

    def refresh_pickers():
        models, files = model_choices(ws), data_files(ws)
        return [gr.Dropdown(choices=start_choices(ws, spec.default, models)) if spec.name == "model"
                else gr.Dropdown(choices=files) for spec, _ in pickers]

    tab.select(refresh_pickers, None, [widget for _, widget in pickers], api_name=False)
    tab.select(preview, [into], [summary, sample], api_name=False)
    return LaunchingTab(tab, launch_btn, [method, *all_widgets], launch, launch_message, "train_launch")
