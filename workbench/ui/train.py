"""Train tab. Its data section: upload SFT rows into data/train.jsonl or data/test.jsonl
(validated line by line, optional split), preview them, or build rows from chosen answers."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from workbench.datasets.sft import add_chosen_answers, import_rows, stats
from workbench.errors import WorkbenchError
from workbench.ui.common import UiContext


def create_train_tab(ctx: UiContext) -> gr.Tab:
    settings = ctx.settings
    ws = settings.workspace

    def preview(which):
        path = ws.train_file if which == "train" else ws.test_file
        if not path.exists():
            return f"`{path.name}` does not exist yet.", []
        try:
            info = stats(path)
        except ValueError as exc:
            return f"**{path.name} is not valid:** {exc}", []
        sample = [[json.dumps(r, ensure_ascii=False)[:400]] for r in info["sample"]]
        return f"**{info['rows']} rows** in `{path.name}` ({', '.join(info['formats'])})", sample

    def upload(file, into, replace, split, request: gr.Request):
        ctx.require(request, "launch")
        if not file:
            raise gr.Error("Choose a JSONL file.")
        try:
            result = import_rows(Path(file), ws.train_file, ws.test_file, into, bool(replace), float(split))
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return (f"{result['train_rows']} rows into train.jsonl, {result['test_rows']} into test.jsonl.",
                *preview(into))

    def from_feedback(into, request: gr.Request):
        ctx.require(request, "launch")
        try:
            result = add_chosen_answers(ws.feedback_file, ws.train_file, ws.test_file, into)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return (f"{result['train_rows']} rows into train.jsonl, {result['test_rows']} into test.jsonl.",
                *preview(into))

    with gr.Tab("Train", id="train") as tab:
        gr.Markdown("LoRA / QLoRA fine-tuning, reward model, PPO and DPO run as queued jobs "
                    "(launchers arrive with the training methods). Prepare their data here.")
        with gr.Accordion("Data: data/train.jsonl and data/test.jsonl", open=True):
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
            message = gr.Markdown(elem_id="sft-message")
            summary = gr.Markdown()
            sample = gr.Dataframe(headers=["sample rows"], interactive=False, wrap=True)
        import_btn.click(upload, [file, into, replace, split], [message, summary, sample], api_name="import_sft")
        feedback_btn.click(from_feedback, [into], [message, summary, sample], api_name="sft_from_feedback")
        into.change(preview, [into], [summary, sample], api_name=False)
        tab.select(preview, [into], [summary, sample], api_name=False)
    return tab
