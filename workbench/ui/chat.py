"""Chat tab: ask the base model or any trained model, with or without retrieval; the answer
streams in (Stop ends it) and its sources are listed under it; an answer cut at the token limit
says so. A finished turn can be sent to Annotate. Trainers write the workspace's system prompt
here (``workbench.chat.system_prompt``)."""
from __future__ import annotations

import time

import gradio as gr

from workbench.chat.model_cache import CACHE
from workbench.chat.session import ChatRequest, answer_stream, save_turn
from workbench.chat.system_prompt import SYSTEM_PROMPT_CHARS, current_system_prompt, save_system_prompt
from workbench.models.generation import REPETITION_PENALTY
from workbench.chat.sources import sources_markdown
from workbench import audit
from workbench.errors import WorkbenchError
from workbench.feedback.display import LIMIT_NOTE
from workbench.gpu_memory import devices
from workbench.index.modes import DEFAULT_MODE, MODES
from workbench.models.loading import BASE, model_choices
from workbench.safe_text import counted, safe_markdown
from workbench.ui.common import UiContext

UPDATE_EVERY_S = 0.1  # streamed text reaches the page at most this often (the first piece at once)


def create_chat_tab(ctx: UiContext) -> tuple:
    """The tab; returns what the page's load shows in it (``demo.load`` arguments)."""
    settings = ctx.settings
    workspace = settings.workspace
    rerank_default = bool(devices())  # left as it is, a turn reranks where it pays (index.rerank.pays)

    def models():
        return gr.Dropdown(choices=model_choices(workspace))

    def ask(question, history, model, rag, k, temperature, max_new_tokens, mode, penalty, rerank,
            request: gr.Request):
        ctx.require(request, "chat")
        history = list(history or [])
        if not question or not question.strip():
            raise gr.Error("Type a question.")
        chat_request = ChatRequest(question=question, model=model or BASE, rag=bool(rag), k=int(k),
                                   mode=mode, temperature=float(temperature),
                                   max_new_tokens=int(max_new_tokens),
                                   repetition_penalty=float(penalty) if penalty else None,
                                   rerank=None if bool(rerank) == rerank_default else bool(rerank))
        history += [{"role": "user", "content": safe_markdown(question)},
                    {"role": "assistant", "content": ""}]
        yield history, "", "_retrieving and loading the model…_", None
        shown = None  # when the page was last updated: None until the first piece
        try:
            for turn in answer_stream(settings, chat_request):
                history[-1] = {"role": "assistant", "content": safe_markdown(turn.answer)}
                if turn.done:
                    if turn.cut:  # marked on the page only: the saved answer stays the model's
                        history[-1]["content"] += f"\n\n*— {LIMIT_NOTE.format(turn.new_tokens)}: raise max new tokens for more*"
                    sources = sources_markdown([h.to_dict() for h in turn.sources], turn.note)
                    speed = (f"{counted(turn.new_tokens, 'token')}, {turn.to_dict()['tokens_per_s']} tokens/s, "
                             f"first token after {turn.ttft_s} s")
                    yield history, gr.skip(), f"{sources}\n\n<sub>{turn.model} ({turn.weights}) · {speed}</sub>", turn.to_dict()
                elif shown is None:
                    shown = time.monotonic()
                    yield history, gr.skip(), sources_markdown([h.to_dict() for h in turn.sources], turn.note), None
                elif time.monotonic() - shown >= UPDATE_EVERY_S:
                    # Each update re-renders the whole conversation in this process: one per
                    # token would keep it busy for every other user's request.
                    shown = time.monotonic()
                    yield history, gr.skip(), gr.skip(), gr.skip()
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None

    def send(turn, request: gr.Request):
        user = ctx.require(request, "chat")
        try:
            record = save_turn(workspace, turn or {}, user.username)
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from None
        return f"Sent turn `{record['id']}` to Annotate."

    def show_system(request: gr.Request):
        """(page load) The current system prompt and its version, for those who may change it.
        Not when the tab opens: a box that is the output of an event still pending takes back
        that event's value after a person types into it, and the save then stored an empty prompt."""
        if ctx.allowed(request, "system_prompt") is None:
            return gr.skip(), gr.skip()
        current = current_system_prompt(workspace)
        when = current.timestamp.replace("T", " ")[:16]
        if not current.version:
            line = "No system prompt yet: models get the question (and its context) alone."
        elif not current.text:
            line = f"Cleared by {current.author} on {when} (version {current.version})."
        else:
            line = f"Version {current.version}, saved by {current.author} on {when}."
        return current.text, line

    def save_system(text, request: gr.Request):
        user = ctx.require(request, "system_prompt")
        try:
            saved = save_system_prompt(workspace, text or "", user.username)
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from None
        audit.record(workspace, user.username, "system_prompt", "system prompt", detail=f"version {saved.version}")
        # the version is in the audit log and shown when the page loads: this line reads the same for every save
        return ("System prompt saved: new chat answers, pairs, evaluations and training runs use it." if saved.text
                else "System prompt cleared: models get the question (and its context) alone."), saved.text

    def unload(request: gr.Request):
        ctx.require(request, "unload")
        dropped = CACHE.unload()
        return f"Unloaded: {', '.join(dropped)}." if dropped else "No model was loaded."

    with gr.Tab("Chat", id="chat") as tab:
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Chat", elem_id="chatbot", height=420)
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask about your documents…", show_label=False,
                                          elem_id="chat-input", scale=5)
                    send_btn = gr.Button("Send", variant="primary", elem_id="chat-send", scale=1)
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="chat-stop", scale=1)
                sources = gr.Markdown(elem_id="chat-sources")
            with gr.Column(scale=1):
                model = gr.Dropdown(label="Model", choices=model_choices(workspace), value=BASE,
                                    elem_id="chat-model")
                rag = gr.Checkbox(label="Use retrieval (RAG)", value=True, elem_id="chat-rag")
                k = gr.Slider(1, 20, value=5, step=1, label="top-k chunks")
                mode = gr.Radio(list(MODES), value=DEFAULT_MODE, label="retrieval")
                rerank = gr.Checkbox(label="Rerank sources with the model", value=rerank_default,
                                     elem_id="chat-rerank",
                                     info="the model reads the top 10 chunks and reorders them: a better first "
                                          "source; on by default on a GPU (while it costs under 100 ms), seconds "
                                          "slower on a CPU")
                temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="temperature (0 = greedy)")
                max_new_tokens = gr.Slider(16, 1024, value=256, step=16, label="max new tokens")
                penalty = gr.Number(value=None, label="repetition penalty", elem_id="chat-penalty",
                                    info=f"0 or empty = the model's own, else {REPETITION_PENALTY}; a looping answer "
                                         "is stopped and cut back")
                annotate_btn = gr.Button("Send to Annotate", elem_id="chat-annotate")
                unload_btn = gr.Button("Unload models (free memory)")
                ctx.only_for("unload", unload_btn)
                clear_btn = gr.Button("Clear chat")
                status = gr.Markdown(elem_id="chat-status")
                with gr.Accordion("System prompt (this workspace)", open=False, elem_id="chat-system") as system_box:
                    system_text = gr.Textbox(label="Told to every model before each question", lines=4,
                                             max_length=SYSTEM_PROMPT_CHARS, elem_id="chat-system-text",
                                             info="in chat, in the answers of new pairs, in evaluations and in "
                                                  "training runs launched from now on; empty = none")
                    system_save = gr.Button("Save the system prompt", elem_id="chat-system-save")
                    system_message = gr.Markdown(elem_id="chat-system-message")
                ctx.only_for("system_prompt", system_box)
        last_turn = gr.State(None)

        inputs = [question, chatbot, model, rag, k, temperature, max_new_tokens, mode, penalty, rerank]
        outputs = [chatbot, question, sources, last_turn]
        asked = [send_btn.click(ask, inputs, outputs, api_name="ask"), question.submit(ask, inputs, outputs, api_name=False)]
        # Stop closes the answer's generator, whose generating thread then stops at the next token;
        # the page keeps what was written so far. The note goes where the answer's event writes
        # nothing: a piece already on its way would otherwise overwrite it.
        stop_btn.click(lambda: "Stopped: the answer above is as far as the model got.", None, status,
                       cancels=asked, api_name=False)
        annotate_btn.click(send, [last_turn], [status], api_name="send_to_annotate")
        unload_btn.click(unload, None, [status], api_name="unload_models")
        clear_btn.click(lambda: ([], "", None), None, [chatbot, sources, last_turn], api_name=False)
        system_save.click(save_system, [system_text], [system_message, system_text], api_name="save_system_prompt")
        tab.select(models, None, [model], api_name=False)
    return show_system, None, [system_text, system_message]
