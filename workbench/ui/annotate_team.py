"""The trainer's panel under the Annotate tab: the guidelines annotators see, each pair set's
votes per pair, gold pairs, the team's agreement, and the merge with its rules. Every action is
a core function the CLI calls too (``workbench feedback stats|guidelines``, ``workbench pairs
set|gold``, ``workbench merge-feedback``)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from jobs import control
from workbench import audit
from workbench.errors import WorkbenchError
from workbench.feedback.arena import arena_pairs, read_arena, save_arena
from workbench.feedback.gold import make_gold
from workbench.feedback.guidelines import current_guidelines, guidelines_from_file, save_guidelines
from workbench.feedback.merge import MergeRules, merge_votes
from workbench.feedback.sets import MAX_VOTES_PER_PAIR, ORDERS, read_sets, save_set
from workbench.feedback.stats import stats_markdown, team_stats
from workbench.safe_text import counted
from workbench.models.loading import model_choices
from workbench.ui.common import UiContext


def merge_text(report: dict) -> str:
    dropped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report["dropped"].items() if v) or "none"
    removed = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report["removed"].items() if v) or "nothing"
    alpha = report["chance_corrected"]["alpha"]
    agreement = "n/a" if alpha is None else f"alpha {alpha:.2f} on {counted(report['chance_corrected']['pairs'], 'pair')}"
    under = report.get("under_gold_threshold")
    return (f"{counted(report['kept'], 'pair')} in `data/dataset_rlhf.jsonl` · dropped: {dropped} · removed by the rules: "
            f"{removed}" + (f" (under the gold threshold: {', '.join(under)})" if under else "")
            + f" · agreement {agreement}")


def create_team_panel(ctx: UiContext, tab: gr.Tab) -> gr.Accordion:
    workspace = ctx.settings.workspace

    def snapshot(request: gr.Request):
        if ctx.allowed(request, "data") is None:
            return (gr.skip(),) * 5
        arena_now = read_arena(workspace)
        try:
            figures = stats_markdown(team_stats(workspace))
        except WorkbenchError as exc:
            figures = f"**{exc}**"
        return (figures, gr.Dropdown(choices=list(read_sets(workspace))),
                gr.Dropdown(choices=model_choices(workspace)), arena_now.auto, arena_now.prompts)

    def load_guidelines(request: gr.Request):
        """(tab opened) The editor gets the current text while the panel is still closed: filling it
        when the panel opens would overwrite what a quick trainer has begun to type."""
        if ctx.allowed(request, "data") is None:
            return gr.skip()
        return current_guidelines(workspace).text

    def save_guide(text, upload, request: gr.Request):
        user = ctx.require(request, "data", uploads=upload)
        try:
            if upload:
                text = guidelines_from_file(Path(upload))
            saved = save_guidelines(workspace, text or "", user.username)
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from None
        audit.record(workspace, user.username, "guidelines", "guidelines", detail=f"version {saved.version}")
        # the version number is in the team figures: this line reads the same for every save
        return "Guidelines saved: annotators see them above their next pair.", saved.text, None

    def pick_set(name):
        chosen = read_sets(workspace).get(name)
        return (chosen.votes_per_pair, chosen.order) if chosen else (gr.skip(), gr.skip())

    def save_pair_set(name, votes, order, request: gr.Request):
        user = ctx.require(request, "data")
        try:
            saved = save_set(workspace, (name or "").strip(), int(votes) if votes is not None else None, order)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        audit.record(workspace, user.username, "pair set", saved.name, detail=f"{saved.votes_per_pair} votes a pair")
        return (f"Set **{saved.name}**: {saved.votes_per_pair} vote(s) a pair. Votes already cast stay as they are.",
                stats_markdown(team_stats(workspace)))

    def gold(name, count, request: gr.Request):
        user = ctx.require(request, "data")
        try:
            result = make_gold(workspace, int(count or 0), name or "default")
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from None
        audit.record(workspace, user.username, "gold pairs", name, detail=str(result))
        return f"{counted(result['added'], 'gold pair')} added to **{name}** (mixed in unannounced).", stats_markdown(team_stats(workspace))

    def score(name, request: gr.Request):
        user = ctx.require(request, "generate")
        try:
            run = control.submit(ctx.settings, "pairs.score", {"set_name": name or "default"}, user=user.username)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return f"Scoring the open pairs of **{name}** with the newest reward model: run **{run.id}** (Monitor)."

    def arena(model, auto, prompts, request: gr.Request):
        user = ctx.require(request, "generate")
        try:
            saved = read_arena(workspace)
            if (saved.auto, saved.prompts) != (bool(auto), int(prompts or saved.prompts)):
                saved = save_arena(workspace, auto=bool(auto), prompts=int(prompts or saved.prompts))
            if not model:
                return f"Arena {'on: every new model goes' if saved.auto else 'off: no model goes'} to the vote by itself."
            made = arena_pairs(ctx.settings, model)
            if not made["pair_ids"]:
                return f"{made['added']} arena pairs added; nothing to generate."
            run = control.submit(ctx.settings, "pairs.generate", {"pair_ids": made["pair_ids"]}, user=user.username)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return (f"{counted(made['added'], 'pair')} of **{model}** against **{made['against']}** in set *arena*; answers "
                f"generated by run **{run.id}**.")

    def merge(min_votes, min_agreement, exclude, gold_threshold, current_only, request: gr.Request):
        user = ctx.require(request, "data")
        rules = MergeRules(int(min_votes or 1), float(min_agreement or 0.0),
                           tuple(a.strip() for a in (exclude or "").split(",") if a.strip()),
                           None if gold_threshold in (None, "") else float(gold_threshold), bool(current_only))
        try:
            report = merge_votes(workspace, rules=rules)
        except (WorkbenchError, ValueError, FileNotFoundError) as exc:
            raise gr.Error(str(exc)) from None
        audit.record(workspace, user.username, "merge", workspace.rlhf_file.name, detail=f"{report['kept']} pairs")
        return merge_text(report)

    with gr.Accordion("Team: guidelines, sets, agreement, merge", open=False, elem_id="annotate-team") as panel:
        stats = gr.Markdown(elem_id="team-stats")
        refresh = gr.Button("Refresh", size="sm")
        with gr.Row():
            guide = gr.Textbox(label="Guidelines (Markdown, shown above every pair)", lines=6, elem_id="team-guidelines")
            guide_file = gr.File(label="or a Markdown file", file_types=[".md", ".txt"], type="filepath")
        guide_btn = gr.Button("Save guidelines (a new version)", elem_id="team-guidelines-save")
        guide_message = gr.Markdown(elem_id="team-guidelines-message")
        with gr.Row():
            set_pick = gr.Dropdown(["default"], value="default", label="pair set", allow_custom_value=True,
                                   elem_id="team-set")
            votes = gr.Number(value=1, precision=0, minimum=1, maximum=MAX_VOTES_PER_PAIR, label="votes per pair",
                              elem_id="team-votes")
            order = gr.Radio(list(ORDERS), value="created", label="order")
            set_btn = gr.Button("Save set", elem_id="team-set-save")
        with gr.Row():
            gold_count = gr.Number(value=5, precision=0, minimum=1, label="gold pairs to make")
            gold_btn = gr.Button("Make gold pairs (an answer against another question's answer)")
            score_btn = gr.Button("Score the set's open pairs (order: informative)")
        set_message = gr.Markdown(elem_id="team-set-message")
        with gr.Row():
            arena_model = gr.Dropdown(model_choices(workspace), value=None, label="put a model to the vote against "
                                      "its parent", allow_custom_value=True)
            arena_auto = gr.Checkbox(value=read_arena(workspace).auto, label="every new model, by itself")
            arena_prompts = gr.Number(value=read_arena(workspace).prompts, precision=0, minimum=1,
                                      label="held-out prompts")
            arena_btn = gr.Button("Arena", elem_id="team-arena")
        arena_message = gr.Markdown(elem_id="team-arena-message")
        with gr.Row():
            min_votes = gr.Number(value=1, precision=0, minimum=1, label="min votes a pair")
            min_agreement = gr.Slider(0, 1, value=0, step=0.05, label="min agreement (1 = unanimous)")
            exclude = gr.Textbox(label="leave out annotators (comma-separated)")
            gold_threshold = gr.Number(value=None, label="gold threshold (accuracy, from 3 gold votes)")
            current_only = gr.Checkbox(label="only votes under the current guidelines")
        merge_btn = gr.Button("Merge votes into data/dataset_rlhf.jsonl", elem_id="team-merge")
        merge_message = gr.Markdown(elem_id="team-merge-message")
    ctx.only_for("data", panel)
    refreshed = [stats, set_pick, arena_model, arena_auto, arena_prompts]
    refresh.click(snapshot, None, refreshed, api_name=False)
    panel.expand(snapshot, None, refreshed, api_name=False)
    tab.select(load_guidelines, None, [guide], api_name=False)
    guide_btn.click(save_guide, [guide, guide_file], [guide_message, guide, guide_file], api_name="save_guidelines")
    set_pick.change(pick_set, [set_pick], [votes, order], api_name=False)
    set_btn.click(save_pair_set, [set_pick, votes, order], [set_message, stats], api_name="save_pair_set")
    gold_btn.click(gold, [set_pick, gold_count], [set_message, stats], api_name="make_gold_pairs")
    score_btn.click(score, [set_pick], [set_message], api_name="score_pairs")
    arena_btn.click(arena, [arena_model, arena_auto, arena_prompts], [arena_message], api_name="arena")
    merge_btn.click(merge, [min_votes, min_agreement, exclude, gold_threshold, current_only], [merge_message],
                    api_name="merge_feedback")
    return panel
