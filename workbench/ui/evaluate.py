"""Evaluate tab. It opens on the scoreboard (a row per model, a column per metric, the newest
score with its run, the best of each column starred; CSV export) and the models' lineage and
data. Below: two models'
answers side by side, a metric along the lineage, each evaluation's report, the launch form
(generated from the evaluation's Config) and the RAG question set built from corpus chunks."""
from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr

from jobs import control
from workbench.configs import describe
from workbench.errors import WorkbenchError
from workbench.evaluate import scoreboard as sb
from workbench.evaluate import sets as sets_of
from workbench.chat.prompt import split_prompt
from workbench.evaluate.plan import Config, reward_models
from workbench.evaluate.report import report_figure
from workbench.evaluate.metrics import FEW, METRICS, score_text
from workbench.safe_text import counted, plain_markdown
from workbench.train.data import data_file
from workbench.train.overview import data_files
from workbench.ui.common import UiContext
from workbench.ui.forms import LaunchingTab, field_widget, form_values

KIND = "evaluate"
SPECS = describe(Config)


def _exported(path: Path, name: str) -> str:
    """A copy in Gradio's upload folder, the one place it serves files from besides its cache."""
    from gradio.utils import get_upload_folder

    target = Path(get_upload_folder()) / "exports" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return str(target)


def _samples_table(report: dict) -> gr.Dataframe:
    """The report's answers, a column per model, each prompt shown by its question."""
    samples = report.get("samples") or []
    models = list(dict.fromkeys(m for s in samples for m in s["answers"]))
    rows = [[s["set"], split_prompt(s["prompt"])[0].strip(), *(s["answers"].get(m, "") for m in models),
             s.get("reference", "")] for s in samples]
    share = f"{60 // max(len(models), 1)}%"
    return gr.Dataframe(value=rows, headers=["set", "question", *models, "reference"],
                        column_widths=["8%", "22%", *[share] * len(models), "10%"])


def create_evaluate_tab(ctx: UiContext) -> LaunchingTab:
    settings = ctx.settings
    ws = settings.workspace

    def board_view():
        board = sb.build(settings)
        headers, cells = sb.scores_table(board)
        model_headers, model_cells = sb.models_table(board)
        # every column in the page's width (at 1,400 px the scores wrap instead of scrolling sideways)
        share = f"{74 / max(len(headers) - 2, 1):.2f}%"
        names = [r["model"] for r in board.rows]
        runs = [(f"{r['run_id']} — {r['status']}{' (partial)' if r.get('partial') else ''}", r["run_id"])
                for r in board.reports]
        metric_names = [(METRICS[k][0], k) for k in board.metrics] or [(v[0], k) for k, v in METRICS.items()]
        return (gr.Dataframe(value=cells, headers=headers, column_widths=["12%", *[share] * (len(headers) - 2), "14%"]),
                gr.Dataframe(value=model_cells, headers=model_headers), gr.Dropdown(choices=names), gr.Dropdown(choices=names),
                gr.Dropdown(choices=metric_names), gr.Dropdown(choices=runs, value=runs[0][1] if runs else None))

    def export_csv(request: gr.Request):
        ctx.require(request, "view")
        board = sb.build(settings)
        target = ws.cache / "scoreboard.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(sb.to_csv(board), encoding="utf-8")
        return _exported(target, "scoreboard.csv")

    def compare(first, second):
        if not first or not second or first == second:
            raise gr.Error("Pick two different models.")
        rows = sb.side_by_side(sb.build(settings), first, second)
        if not rows:
            return f"No evaluation has answers of both **{first}** and **{second}**: evaluate them together.", []
        return (f"From run **{rows[0]['run']}**. Prompts show their question; the retrieved context is in the report.",
                [[r["set"], r["question"], r[first], r[second], r["reference"]] for r in rows])

    def plot(metric):
        if not metric:
            return None
        return sb.lineage_figure(sb.build(settings), metric)

    def open_report(run_id, request: gr.Request):
        ctx.require(request, "view")
        if not run_id:
            raise gr.Error("Pick an evaluation run.")
        report = next((r for r in sb.evaluation_reports(settings) if r["run_id"] == run_id), None)
        if report is None:
            raise gr.Error(f"No report for run {run_id}.")
        html_file = ws.runs / run_id / "report.html"
        lines = [f"**{run_id}** ({report['status']}, {report['units']['done']}/{report['units']['total']} units)."]
        lines += [f"- **{m}**: " + (row.get("error") or ", ".join(
            f"{METRICS[k][0]} {score_text(v, row['intervals'].get(k), (row.get('n') or {}).get(k))}"
            for k, v in row["metrics"].items() if k in METRICS and isinstance(v, (int, float)))
            or "no score of its own on these sets (the win-rates compare the others with it)")
            for m, row in report["models"].items()]
        questions = f" on {counted(report['retrieval_questions'], 'question')}" if report.get("retrieval_questions") else ""
        for mode, scores in (report.get("retrieval") or {}).items():
            lines.append(f"- retrieval ({mode}){questions}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        path = _exported(html_file, f"report-{run_id}.html") if html_file.is_file() else None
        return "\n".join(lines), report_figure(report), _samples_table(report), path

    def launch(request: gr.Request, *raw):
        user = ctx.require(request, "launch")
        try:
            run = control.submit(settings, KIND, form_values(SPECS, raw), user=user.username)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        status = run.status()
        notes = "".join(f"\n\n⚠ {w}" for w in status.get("warnings") or [])
        return f"Queued **{run.id}**: it is open in Monitor.{notes}", run.id, gr.Tabs(selected="monitor")

    def find_chunks(query, request: gr.Request):
        from workbench.index.search import retriever_for

        ctx.require(request, "chat")
        if not (query or "").strip():
            raise gr.Error("Type words to find chunks.")
        hits = retriever_for(ws, settings.embedding_model).search(query, k=8, mode="hybrid")
        if not hits:
            return gr.Dropdown(choices=[], value=None), "The corpus index is empty: add documents in Corpus.", {}
        choices = [(f"{h.where()}: {h.text[:90]}", f"{h.chunk_id}|{h.source}") for h in hits]
        return (gr.Dropdown(choices=choices, value=choices[0][1]), hits[0].text,
                {f"{h.chunk_id}|{h.source}": h.text for h in hits})

    def add_question(picked, question, reference, file_name, request: gr.Request):
        ctx.require(request, "data")
        if not picked:
            raise gr.Error("Pick the chunk that answers the question.")
        chunk_id, source = picked.split("|", 1) if "|" in picked else ("", picked)
        try:
            sets_of.append_question(ws, file_name or sets_of.RAG_SET, question, [source], reference, chunk_id)
        except (WorkbenchError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return "", "", *question_table(file_name, request)

    def question_table(file_name, request: gr.Request):
        if ctx.allowed(request, "view") is None:
            return "", []
        name = file_name or sets_of.RAG_SET
        try:
            path = data_file(ws, name)
        except WorkbenchError:  # the same answer for a name outside data/ as for a missing one
            return f"No question set named {plain_markdown(name)} under data/ yet: add questions below.", []
        try:
            rows = sets_of.rag_questions(path)
        except sets_of.EmptySet as exc:
            return str(exc), []
        except (WorkbenchError, ValueError) as exc:
            return plain_markdown(str(exc)), []
        return (f"**{counted(len(rows), 'question')}** in {plain_markdown(name)}.",
                [[r["question"], ", ".join(r["sources"]), r["reference"]] for r in rows])

    with gr.Tab("Evaluate", id="evaluate") as tab:
        gr.Markdown("Every model with its newest scores: each with its 95 % interval [low, high] and the number "
                    f"of items it rests on (n); ⚠ marks fewer than {FEW}, too few to tell models apart. ★ marks the "
                    "best of each column. Launch an evaluation below: it runs as a job and its report lands here.")
        board = gr.Dataframe(interactive=False, wrap=True, elem_id="eval-scoreboard")
        with gr.Accordion("The models: role, lineage, training data", open=True):
            models_board = gr.Dataframe(interactive=False, wrap=True, elem_id="eval-models-table",
                                        column_widths=["16%", "8%", "36%", "8%", "32%"])
        with gr.Row():
            refresh_btn = gr.Button("Refresh", elem_id="eval-refresh")
            csv_btn = gr.Button("Export CSV", elem_id="eval-export")
            csv_file = gr.File(label="scoreboard.csv", interactive=False, elem_id="eval-csv")
        with gr.Accordion("Two models side by side", open=False):
            with gr.Row():
                first = gr.Dropdown(label="model A", elem_id="eval-first")
                second = gr.Dropdown(label="model B", elem_id="eval-second")
                compare_btn = gr.Button("Compare", elem_id="eval-compare")
            compare_note = gr.Markdown()
            # the answers get the room: at 1,400 px both sit side by side without scrolling
            answers = gr.Dataframe(headers=["set", "question", "model A", "model B", "reference"], interactive=False,
                                   wrap=True, elem_id="eval-answers", column_widths=["8%", "20%", "27%", "27%", "18%"],
                                   max_chars=600)
        with gr.Accordion("A metric along the lineage", open=False):
            metric = gr.Dropdown(label="metric", elem_id="eval-metric")
            lineage_plot = gr.Plot(elem_id="eval-lineage-plot")
        with gr.Accordion("Reports", open=False):
            with gr.Row():
                report_run = gr.Dropdown(label="evaluation run", elem_id="eval-report-run")
                report_btn = gr.Button("Open", elem_id="eval-report-open")
            report_summary = gr.Markdown(elem_id="eval-report-summary")
            report_plot = gr.Plot(label="charts (95 % intervals as error bars)", elem_id="eval-report-plot")
            report_samples = gr.Dataframe(label="answers side by side", interactive=False, wrap=True, max_chars=600,
                                          elem_id="eval-report-samples")
            report_file = gr.File(label="download report.html (self-contained: charts, tables, answers)",
                                  interactive=False, elem_id="eval-report-file")
        with gr.Accordion("A new evaluation", open=True) as launch_box:
            widgets = []
            with gr.Row(equal_height=False):
                for spec in SPECS:
                    elem = f"eval-{spec.name}"
                    if spec.name == "models":
                        widgets.append(gr.CheckboxGroup(sb.workspace_models(settings), value=spec.default,
                                                        label="models", info=spec.help, elem_id=elem))
                    elif spec.name == "judge":
                        widgets.append(gr.Dropdown([""] + reward_models(settings), value="", label="judge",
                                                   info=spec.help, allow_custom_value=True, elem_id=elem))
                    elif spec.name == "rag_set":
                        widgets.append(gr.Dropdown(data_files(ws), value=spec.default, allow_custom_value=True,
                                                   label="rag set", info=spec.help, elem_id=elem))
                    else:
                        widgets.append(field_widget(spec, elem))
            launch_btn = gr.Button("Launch evaluation", variant="primary", elem_id="eval-launch")
            ctx.only_for("launch", launch_box)
            launch_message = gr.Markdown(elem_id="eval-launch-message")
        with gr.Accordion("RAG question set: questions written from corpus chunks", open=False) as questions_box:
            with gr.Row():
                query = gr.Textbox(label="find chunks", placeholder="words from the passage", elem_id="eval-q-query")
                find_btn = gr.Button("Find", elem_id="eval-q-find")
            chunk = gr.Dropdown(label="chunk that answers the question", elem_id="eval-q-chunk")
            found = gr.State({})
            chunk_text = gr.Textbox(label="chunk text", interactive=False, lines=4)
            question = gr.Textbox(label="question", elem_id="eval-q-question")
            reference = gr.Textbox(label="reference answer (optional)", elem_id="eval-q-reference")
            set_file = gr.Textbox(value=sets_of.RAG_SET, label="question set under data/", elem_id="eval-q-file")
            add_btn = gr.Button("Add the question", variant="primary", elem_id="eval-q-add")
            ctx.only_for("data", questions_box)
            set_note = gr.Markdown(elem_id="eval-q-note")
            set_rows = gr.Dataframe(headers=["question", "sources", "reference"], interactive=False, wrap=True)

    view_outputs = [board, models_board, first, second, metric, report_run]
    refresh_btn.click(board_view, None, view_outputs, api_name="eval_scoreboard")
    csv_btn.click(export_csv, None, csv_file, api_name="eval_export_csv")
    compare_btn.click(compare, [first, second], [compare_note, answers], api_name="eval_compare")
    metric.change(plot, metric, lineage_plot, api_name=False)
    report_btn.click(open_report, report_run, [report_summary, report_plot, report_samples, report_file],
                     api_name="eval_report")
    find_btn.click(find_chunks, query, [chunk, chunk_text, found], api_name="eval_find_chunks")
    chunk.input(lambda picked, texts: (texts or {}).get(picked, ""), [chunk, found], chunk_text, api_name=False)
    add_btn.click(add_question, [chunk, question, reference, set_file], [question, reference, set_note, set_rows],
                  api_name="eval_add_question")

    def refresh_pickers():
        return (gr.CheckboxGroup(choices=sb.workspace_models(settings)),
                gr.Dropdown(choices=[""] + reward_models(settings)), gr.Dropdown(choices=data_files(ws)))

    tab.select(board_view, None, view_outputs, api_name=False)
    by_name = {spec.name: w for spec, w in zip(SPECS, widgets)}
    tab.select(refresh_pickers, None, [by_name["models"], by_name["judge"], by_name["rag_set"]], api_name=False)
    tab.select(question_table, set_file, [set_note, set_rows], api_name=False)
    return LaunchingTab(tab, launch_btn, widgets, launch, launch_message, "eval_launch")
