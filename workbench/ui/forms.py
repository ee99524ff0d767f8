"""Form widgets generated from a Config dataclass (``workbench.configs.describe``): a field's
default, help and choices give its widget, so the form, the CLI flags and the validation agree."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from workbench.configs import FieldSpec


def field_widget(spec: FieldSpec, elem_id: str):
    label = spec.name.replace("_", " ")
    common = {"label": label, "info": spec.help, "elem_id": elem_id}
    if spec.type == "bool":
        return gr.Checkbox(value=spec.default, **common)
    if spec.type == "list":
        if spec.choices:
            return gr.CheckboxGroup(list(spec.choices), value=spec.default, **common)
        return gr.Textbox(value=", ".join(spec.default), placeholder="comma-separated", **common)
    if spec.choices:
        return gr.Dropdown(list(spec.choices), value=spec.default, **common)
    if spec.type in ("int", "float"):
        return gr.Number(value=spec.default, precision=0 if spec.type == "int" else None, **common)
    return gr.Textbox(value=spec.default, **common)


def form_values(specs: list[FieldSpec], raw: tuple) -> dict[str, Any]:
    """The filled-in values by field name; an emptied number falls back to the default."""
    out = {}
    for spec, value in zip(specs, raw):
        if value is None or (spec.type in ("int", "float") and value == ""):
            continue
        out[spec.name] = value
    return out


@dataclass
class LaunchingTab:
    """A tab whose Launch button queues a job and opens it in Monitor."""

    tab: gr.Tab
    launch_btn: gr.Button
    launch_inputs: list
    launch: Callable
    message: gr.Markdown
    api_name: str

    def connect(self, tabs: gr.Tabs, monitor_run: gr.Dropdown) -> None:
        """Launch opens the new run in the Monitor tab (wired once both tabs exist)."""
        self.launch_btn.click(self.launch, self.launch_inputs, [self.message, monitor_run, tabs],
                              api_name=self.api_name)
