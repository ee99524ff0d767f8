"""A tab whose features are not available yet: says what it is for."""
from __future__ import annotations

import gradio as gr


def create_placeholder_tab(name: str, purpose: str) -> gr.Tab:
    with gr.Tab(name, id=name.lower()) as tab:
        gr.Markdown(f"### {name}\n{purpose}\n\n*Not available in this version yet.*")
    return tab
