"""The Gradio app: one module per tab; ``build_ui`` puts them together. Tabs only wire widgets to
functions of the core and of ``jobs``; every permission is checked on the server."""
from __future__ import annotations

import gradio as gr

from workbench.auth import Users
from workbench.settings import Settings
from workbench.ui.annotate import KEYBOARD_JS, create_annotate_tab
from workbench.ui.chat import create_chat_tab
from workbench.ui.common import UiContext
from workbench.ui.corpus import create_corpus_tab
from workbench.ui.evaluate import create_evaluate_tab
from workbench.ui.monitor import create_monitor_tab
from workbench.ui.train import create_train_tab
from workbench.ui.upload_quota import StagedUploads

TITLE = "Workbench"
# The open tab goes into the page's address, so a reload (or a shared link) opens it again.
TAB_IN_ADDRESS_JS = """
<script>
document.addEventListener("click", (event) => {
  const tab = event.target.closest ? event.target.closest("[role=tab]") : null;
  if (tab) history.replaceState(null, "", "#" + tab.textContent.trim().toLowerCase());
});
</script>
"""
HEAD = KEYBOARD_JS + TAB_IN_ADDRESS_JS  # page-level scripts, passed to ``launch(head=...)``
# page-level styles, passed to ``launch(css=...)``: the question reads first on the annotation screen
CSS = ("#annotate-prompt, #annotate-prompt p { font-size: 1.35rem !important; font-weight: 600; line-height: 1.4; } "
       "#answer-a, #answer-b { min-height: 8em; }")


def build_ui(settings: Settings, users: Users | None = None, staged: StagedUploads | None = None) -> gr.Blocks:
    """The app; ``users`` and ``staged`` are shared with the middlewares in front of it."""
    ctx = UiContext.from_settings(settings, users, staged)
    # delete_cache: Gradio's copies of uploads older than a day go, hourly (originals are stored)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        with gr.Row():
            gr.Markdown(f"# {TITLE}\nDocuments → fine-tuning → preferences → alignment → evaluation.")
            whoami = gr.Markdown(elem_id="whoami")
        asked = gr.Textbox(visible=False)  # the tab named in the page's address (#annotate)
        with gr.Tabs() as tabs:
            corpus_refresh = create_corpus_tab(ctx)
            chat_load = create_chat_tab(ctx)
            create_annotate_tab(ctx)
            train = create_train_tab(ctx)
            evaluate = create_evaluate_tab(ctx)
            _, monitor_run = create_monitor_tab(ctx)
        train.connect(tabs, monitor_run)
        evaluate.connect(tabs, monitor_run)
        demo.load(*corpus_refresh)
        demo.load(*chat_load, api_name=False)

        def land(hash_tab: str, request: gr.Request):
            tab, line = ctx.landing(request, (hash_tab or "").strip().lower())
            # the page opens on Corpus: leave it be, so a tab clicked while this loads stays open
            return (gr.skip() if tab == "corpus" else gr.Tabs(selected=tab)), line

        demo.load(land, [asked], [tabs, whoami], js="() => [window.location.hash.slice(1)]", api_name=False)
        if ctx.users.enabled and (ctx.gated or ctx.timers):
            demo.load(ctx.page_state, None, [c for _, c in ctx.gated] + [t for _, t in ctx.timers], api_name=False)
    return demo
