"""Annotate tab: blind pairwise votes. Two answers to one prompt, sides shuffled and models hidden
until the vote is in; keys 1 / 2 / 3 / 4 vote A / B / tie / both bad, S skips, U undoes."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench.errors import WorkbenchError
from workbench.feedback.annotation import (cast_vote, create_pairs, next_pair, pair_store,
                                           pairs_from_chat_turns, progress, progress_text,
                                           stream_answers, undo_last)
from workbench.feedback.merge import merge_feedback
from workbench.feedback.pairs import Side, prompts_from_jsonl, prompts_from_text
from workbench.models.loading import BASE, model_choices
from workbench.ui.common import UiContext

SOURCES = ["typed", "JSONL file", "data/test.jsonl", "chat turns"]

# Shortcuts work anywhere on the page except while typing in a text field.
KEYBOARD_JS = """
<script>
document.addEventListener("keydown", (event) => {
  const tag = (event.target.tagName || "").toLowerCase();
  if (tag === "textarea" || tag === "input" || event.ctrlKey || event.metaKey || event.altKey) return;
  const ids = {"1": "vote-a", "2": "vote-b", "3": "vote-tie", "4": "vote-both-bad", "s": "vote-skip", "u": "vote-undo"};
  const id = ids[event.key.toLowerCase()];
  const panel = document.getElementById("annotate-panel");
  if (!id || !panel || panel.offsetParent === null) return;
  const button = document.getElementById(id);
  if (button) { event.preventDefault(); button.click(); }
});
</script>
"""


def create_annotate_tab(ctx: UiContext) -> gr.Tab:
    settings = ctx.settings
    workspace = settings.workspace

    def show(pair_id, skipped, request: gr.Request):
        """Stream the next pair (or ``pair_id``) for this annotator; answers are reused if saved."""
        user = ctx.require(request, "annotate")
        pairs = pair_store(workspace).all()
        pair = pairs.get(pair_id) if pair_id else next_pair(workspace, user.username, set(skipped or []))
        counter = progress_text(progress(workspace, user.username))
        if pair is None:
            yield None, "_Nothing left to annotate: add prompts below._", "", "", "", counter, ""
            return
        try:
            for left, right in stream_answers(settings, pair):
                yield pair.pair_id, pair.prompt, left, right, "", counter, "_generating the answers…_"
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        yield pair.pair_id, pair.prompt, left, right, "", counter, "Ready: vote with 1 / 2 / 3 / 4, S to skip, U to undo."

    def vote(choice, pair_id, comment, edited, skipped, request: gr.Request):
        user = ctx.require(request, "annotate")
        pair = pair_store(workspace).all().get(pair_id or "")
        if pair is None:
            raise gr.Error("No pair on screen.")
        try:
            cast_vote(workspace, pair, user.username, choice, comment, edited)
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from None
        left, right = pair.shown()
        reveal = f"Last vote: **{choice.replace('_', ' ')}** — A was {left.label()}, B was {right.label()}."
        return reveal, "", "", skipped

    def skip(pair_id, skipped):
        return "Skipped.", list(set(skipped or []) | ({pair_id} if pair_id else set()))

    def undo(request: gr.Request):
        user = ctx.require(request, "annotate")
        pair_id = undo_last(workspace, user.username)
        return ("Undid your last vote." if pair_id else "Nothing to undo."), pair_id

    def add(source, typed, upload, model_a, temp_a, model_b, temp_b, max_new, rag, k, request: gr.Request):
        ctx.require(request, "annotate")
        a = Side(model_a or BASE, float(temp_a), int(max_new))
        b = Side(model_b or BASE, float(temp_b), int(max_new))
        try:
            if source == "chat turns":
                result = pairs_from_chat_turns(settings, b)
            else:
                if source == "typed":
                    prompts = prompts_from_text(typed)
                elif source == "JSONL file":
                    if not upload:
                        raise WorkbenchError("choose a JSONL file of prompts")
                    prompts = prompts_from_jsonl(Path(upload))
                else:
                    if not workspace.test_file.exists():
                        raise WorkbenchError("data/test.jsonl does not exist yet")
                    prompts = prompts_from_jsonl(workspace.test_file)
                result = create_pairs(settings, prompts, source, a, b, bool(rag), int(k))
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return f"{result['added']} pairs added ({result['already_there']} already there)."

    def merge(request: gr.Request):
        ctx.require(request, "annotate")
        try:
            report = merge_feedback(workspace.feedback_file, workspace.rlhf_file)
        except (WorkbenchError, ValueError, FileNotFoundError) as exc:
            raise gr.Error(str(exc)) from None
        dropped = ", ".join(f"{v} {k}" for k, v in report["dropped"].items() if v) or "none"
        return f"{report['kept']} pairs in `data/dataset_rlhf.jsonl` · dropped: {dropped} · agreement {report['agreement']}"

    with gr.Tab("Annotate", id="annotate") as tab:
        with gr.Column(elem_id="annotate-panel"):
            counter = gr.Markdown(elem_id="annotate-progress")
            prompt = gr.Markdown(elem_id="annotate-prompt")
            with gr.Row():
                left = gr.Textbox(label="Answer A", lines=10, interactive=False, elem_id="answer-a")
                right = gr.Textbox(label="Answer B", lines=10, interactive=False, elem_id="answer-b")
            with gr.Row():
                buttons = {c: gr.Button(label, elem_id=eid, variant=v) for c, label, eid, v in [
                    ("a", "A is better (1)", "vote-a", "primary"), ("b", "B is better (2)", "vote-b", "primary"),
                    ("tie", "Tie (3)", "vote-tie", "secondary"),
                    ("both_bad", "Both bad (4)", "vote-both-bad", "secondary")]}
                skip_btn = gr.Button("Skip (S)", elem_id="vote-skip")
                undo_btn = gr.Button("Undo (U)", elem_id="vote-undo")
            with gr.Row():
                comment = gr.Textbox(label="Comment (optional)", elem_id="vote-comment")
                edited = gr.Textbox(label="Write a better answer (optional: chosen against both)", lines=2)
            status = gr.Markdown(elem_id="annotate-status")
            reveal = gr.Markdown(elem_id="vote-reveal")
        with gr.Accordion("Add prompts", open=False):
            source = gr.Radio(SOURCES, value="typed", label="prompts from")
            typed = gr.Textbox(label="Prompts, one per line", lines=4, elem_id="annotate-typed")
            upload = gr.File(label="JSONL of prompts", file_types=[".jsonl"], type="filepath")
            with gr.Row():
                models = model_choices(workspace)
                model_a = gr.Dropdown(models, value=BASE, label="model A", allow_custom_value=True)
                temp_a = gr.Slider(0, 1.5, value=0.0, step=0.05, label="temperature A")
                model_b = gr.Dropdown(models, value=BASE, label="model B", allow_custom_value=True)
                temp_b = gr.Slider(0, 1.5, value=0.8, step=0.05, label="temperature B")
            with gr.Row():
                max_new = gr.Slider(16, 1024, value=128, step=16, label="max new tokens")
                rag = gr.Checkbox(label="add retrieved context to typed / file prompts", value=False)
                k = gr.Slider(1, 10, value=3, step=1, label="top-k")
            add_btn = gr.Button("Create pairs", elem_id="annotate-add")
            add_message = gr.Markdown(elem_id="annotate-add-message")
        merge_btn = gr.Button("Merge votes into data/dataset_rlhf.jsonl")
        merge_message = gr.Markdown()
        pair_id = gr.State(None)
        skipped = gr.State([])
        forced = gr.State(None)  # a pair to show again after undo

        shown = [pair_id, prompt, left, right, edited, counter, status]
        for choice, button in buttons.items():
            button.click(vote, [gr.State(choice), pair_id, comment, edited, skipped],
                         [reveal, comment, edited, skipped], api_name=f"vote_{choice}").then(
                show, [forced, skipped], shown, api_name=False)
        skip_btn.click(skip, [pair_id, skipped], [reveal, skipped], api_name=False).then(
            show, [forced, skipped], shown, api_name=False)
        undo_btn.click(undo, None, [reveal, forced], api_name="undo_vote").then(
            show, [forced, skipped], shown, api_name=False).then(lambda: None, None, forced, api_name=False)
        add_btn.click(add, [source, typed, upload, model_a, temp_a, model_b, temp_b, max_new, rag, k],
                      [add_message], api_name="create_pairs").then(show, [forced, skipped], shown, api_name=False)
        merge_btn.click(merge, None, [merge_message], api_name="merge_feedback")
        tab.select(show, [forced, skipped], shown, api_name=False)
        tab.select(lambda: (gr.Dropdown(choices=model_choices(workspace)),) * 2, None, [model_a, model_b],
                   api_name=False)
    return tab
