"""An evaluation's report from its unit results: ``report.json`` (a row of metrics per model with
intervals, retrieval scores, human ratings, sample answers side by side) and a self-contained
``report.html`` (plotly charts with the library inlined, tables, the answers)."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from storage import read_json, read_manifest, write_json_atomic
from storage.atomic import atomic_file
from storage.runs import now_iso
from workbench.chat.system_prompt import launched_with
from workbench.evaluate import metrics
from workbench.evaluate.plan import JUDGE, PROMPTS, RETRIEVAL, VOTES, Unit, model_unit
from workbench.models.loading import BASE, lineage
from workbench.settings import Settings


def _result(results: Path, unit: Unit) -> dict[str, Any] | None:
    data = read_json(unit.path(results))
    return data if isinstance(data, dict) else None


def model_facts(settings: Settings, name: str) -> dict[str, Any]:
    """Lineage from the manifest: parent, method, training data and its sha256, the training run."""
    manifest = read_manifest(settings.workspace.model_dir(name)) if name != BASE else None
    manifest = manifest if isinstance(manifest, dict) else {}
    dataset = manifest.get("dataset") or {}
    return {"lineage": lineage(settings.workspace, name), "method": manifest.get("method") or ("base" if name == BASE else None),
            "parent": manifest.get("parent"), "dataset": dataset.get("file") if isinstance(dataset, dict) else None,
            "dataset_sha256": dataset.get("sha256") if isinstance(dataset, dict) else None,
            "trained_by": manifest.get("run_id")}


def build_report(folder: Path, config, plan, settings: Settings) -> dict[str, Any]:
    results = folder / "results"
    rows: dict[str, dict[str, Any]] = {}
    for name in plan.models:
        row = {"role": plan.roles[name], **model_facts(settings, name), "metrics": {}, "intervals": {}, "n": {},
               "error": None}
        for name_set in plan.sets:
            found = _result(results, model_unit(name, name_set))
            if found:
                row["metrics"].update(found.get("metrics") or {})
                row["intervals"].update(found.get("intervals") or {})
                row["n"].update(found.get("n") or {})
        error = read_json(results / f"{name}.error.json")
        if isinstance(error, dict):
            row["error"] = error.get("error")
        rows[name] = row
    judged = _result(results, Unit(JUDGE, "preferences"))
    if judged:
        scores = judged.get("scores") or {}
        for name, refs in plan.references.items():
            if name not in scores or name not in rows:
                continue
            rows[name]["metrics"]["judge_reward"] = metrics.mean(scores[name])
            rows[name]["n"]["judge_reward"] = len(scores[name])
            spread = metrics.mean_interval(scores[name])
            if spread:
                rows[name]["intervals"]["judge_reward"] = list(spread)
            for ref in refs:
                if ref in scores and len(scores[ref]) == len(scores[name]):
                    key = "win_rate_vs_base" if ref == BASE else "win_rate_vs_parent"
                    found = metrics.win_rate(scores[name], scores[ref])
                    keys = [key] + (["win_rate_vs_parent"] if ref == BASE and rows[name].get("parent") == BASE else [])
                    for key in keys:
                        rows[name]["metrics"][key] = found["rate"]
                        rows[name]["intervals"][key] = [found["low"], found["high"]]
                        rows[name]["n"][key] = found["n"]
                    if ref in rows:
                        rows[ref].setdefault("reference_of", []).append(name)
    votes = _result(results, Unit(VOTES, "votes"))
    for name, rating in ((votes or {}).get("ratings") or {}).items():
        row = rows.setdefault(name, {"role": "voted", **model_facts(settings, name), "metrics": {}, "intervals": {},
                                     "n": {}, "error": None})
        row["metrics"].update(human_rating=rating["rating"], human_votes=rating["votes"])
        row["intervals"]["human_rating"] = [rating["low"], rating["high"]]
        row["n"].update(human_rating=rating["votes"], human_votes=rating["votes"])
    todo = plan.units()
    failed = {m for m, row in rows.items() if row.get("error")}
    done = sum(u.model in failed or u.path(results).exists() for u in todo)
    return {"run_id": folder.name, "updated": now_iso(), "partial": done < len(todo),
            "units": {"done": done, "total": len(todo)}, "config": _plain(config), "sets": plan.sets,
            "judge": plan.judge, "references": plan.references, "models": rows,
            "retrieval": (_result(results, Unit(RETRIEVAL, "rag")) or {}).get("retrieval"),
            "retrieval_questions": (_result(results, Unit(RETRIEVAL, "rag")) or {}).get("questions"),
            "samples": _samples(results, plan, config.samples),
            "environment": {**environment(settings, config.seed),
                            "system_prompt": launched_with(folder)._asdict()}}


LIBRARIES = ("torch", "transformers", "peft", "trl", "sentence-transformers", "faiss-cpu", "bitsandbytes")


def environment(settings: Settings, seed: int) -> dict[str, Any]:
    """What the numbers were computed with: the device and its recorded precision (models load
    their full weights in that dtype for evaluation), the seed and the libraries' versions."""
    from importlib import metadata

    from workbench.models.precision import recorded

    decision = recorded(settings.workspace)
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"device": decision.device_name if decision else None, "dtype": decision.dtype if decision else None,
            "weights": "full", "precision_decided": decision.decided if decision else None,
            "seed": seed, "versions": versions}


def _plain(config) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(config)


def _samples(results: Path, plan, count: int) -> list[dict[str, Any]]:
    """The first ``count`` prompts of each answer set with every model's answer beside the reference."""
    out = []
    for name_set in ("test", "preferences", "rag"):
        if name_set not in plan.sets:
            continue
        answers = {m: (_result(results, model_unit(m, name_set)) or {}).get("answers") for m in plan.generators()}
        answers = {m: a for m, a in answers.items() if a}
        if not answers:
            continue
        prompts, references = _prompts(results, name_set)
        for i in range(min(count, len(prompts))):
            out.append({"set": name_set, "prompt": prompts[i], "reference": references[i] if i < len(references) else "",
                        "answers": {m: a[i] for m, a in answers.items() if i < len(a)}})
    return out


def _prompts(results: Path, name_set: str) -> tuple[list[str], list[str]]:
    stored = _result(results, Unit(PROMPTS, name_set)) or {}
    return stored.get("prompts") or [], stored.get("references") or []


def write_report(folder: Path, config, plan, settings: Settings, html: bool = False) -> dict[str, Any]:
    report = build_report(folder, config, plan, settings)
    write_json_atomic(folder / "report.json", report)
    if html:
        with atomic_file(folder / "report.html", "w") as out:
            out.write(render_html(report))
    return report


# HTML ---------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def metric_figures(report: dict[str, Any]) -> list:
    """One bar chart per metric across the models (95 % intervals as error bars), and the
    retrieval scores of dense and hybrid search."""
    import plotly.graph_objects as go

    figures = []
    models = report["models"]
    for key, (label, higher) in metrics.METRICS.items():
        names = [m for m, row in models.items() if row["metrics"].get(key) is not None]
        if not names or key == "human_votes":
            continue
        values = [models[m]["metrics"][key] for m in names]
        bars = go.Bar(x=names, y=values, name=label)
        intervals = [models[m]["intervals"].get(key) for m in names]
        if all(intervals):
            bars.error_y = {"type": "data", "symmetric": False,
                            "array": [hi - v for (lo, hi), v in zip(intervals, values)],
                            "arrayminus": [v - lo for (lo, hi), v in zip(intervals, values)]}
        fig = go.Figure(bars)
        fig.update_layout(title=f"{label} ({'higher' if higher else 'lower'} is better)", height=320,
                          margin={"t": 50, "b": 40, "l": 50, "r": 20})
        figures.append(fig)
    retrieval = report.get("retrieval") or {}
    if retrieval:
        fig = go.Figure([go.Bar(x=list(scores), y=list(scores.values()), name=mode) for mode, scores in retrieval.items()])
        fig.update_layout(title="retrieval on the RAG questions", barmode="group", height=320,
                          margin={"t": 50, "b": 40, "l": 50, "r": 20})
        figures.append(fig)
    return figures


def report_figure(report: dict[str, Any]):
    """Every chart of the report in one figure, a panel each, for the app to show in place."""
    from plotly.subplots import make_subplots

    figures = metric_figures(report)
    if not figures:
        return None
    fig = make_subplots(rows=len(figures), cols=1, subplot_titles=[f.layout.title.text for f in figures],
                        vertical_spacing=min(0.12, 0.4 / len(figures)))
    for row, part in enumerate(figures, start=1):
        for trace in part.data:
            fig.add_trace(trace, row=row, col=1)
    fig.update_layout(height=300 * len(figures), showlegend=False, template="plotly_white",
                      margin={"t": 60, "b": 40, "l": 60, "r": 20})
    return fig


def render_html(report: dict[str, Any]) -> str:
    parts = [f"<h1>Evaluation {html.escape(report['run_id'])}</h1>",
             f"<p>Sets: {html.escape(', '.join(report['sets']))}. Judge: {_fmt(report.get('judge') or '—')}. "
             f"Updated {_fmt(report['updated'])}{' (partial)' if report['partial'] else ''}.</p>"]
    env = report.get("environment") or {}
    if env:
        versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items())
        parts.append(f"<p>Computed on {_fmt(env.get('device') or 'no model loaded')}, {_fmt(env.get('dtype') or '—')}, "
                     f"{_fmt(env.get('weights'))} weights, seed {_fmt(env.get('seed'))}; {_fmt(versions)}.</p>")
        system = env.get("system_prompt") or {}
        if system.get("version"):
            parts.append(f"<p>Every model answered under the workspace's system prompt, version "
                         f"{_fmt(system['version'])}: <q>{_fmt(system.get('text', ''))}</q></p>")
    keys = [k for k in metrics.METRICS if any(row["metrics"].get(k) is not None for row in report["models"].values())]
    head = "".join(f"<th>{html.escape(metrics.METRICS[k][0])}</th>" for k in keys)
    body = []
    for name, row in report["models"].items():
        cells = []
        for k in keys:
            text = metrics.score_text(row["metrics"].get(k), row["intervals"].get(k), (row.get("n") or {}).get(k))
            cells.append(f"<td>{html.escape(text)}</td>")
        lineage_text = " ← ".join(row.get("lineage") or [name])
        error = f"<br><b class=err>{_fmt(row['error'])}</b>" if row.get("error") else ""
        body.append(f"<tr><td><b>{_fmt(name)}</b>{error}</td><td>{_fmt(row['role'])}</td>"
                    f"<td>{_fmt(lineage_text)}</td>{''.join(cells)}</tr>")
    parts.append(f"<h2>Scores</h2><p>Each score with its 95 % interval and the number of items it rests on "
                 f"(n); ⚠ marks fewer than {metrics.FEW}.</p>"
                 f"<table><tr><th>model</th><th>role</th><th>lineage</th>{head}</tr>{''.join(body)}</table>")
    retrieval = report.get("retrieval") or {}
    if retrieval:
        cols = sorted({k for scores in retrieval.values() for k in scores})
        rows = "".join(f"<tr><td>{_fmt(mode)}</td>{''.join(f'<td>{_fmt(s.get(c))}</td>' for c in cols)}</tr>"
                       for mode, s in retrieval.items())
        parts.append(f"<h2>Retrieval</h2><table><tr><th>search</th>{''.join(f'<th>{c}</th>' for c in cols)}</tr>{rows}</table>")
    figures = metric_figures(report)
    if figures:
        parts.append("<h2>Charts</h2>")
        for i, fig in enumerate(figures):
            parts.append(f"<div class=chart>{fig.to_html(full_html=False, include_plotlyjs=i == 0)}</div>")
    if report.get("samples"):
        parts.append("<h2>Answers side by side</h2>")
        for sample in report["samples"]:
            models = list(sample["answers"])
            cells = "".join(f"<td><b>{_fmt(m)}</b><pre>{_fmt(sample['answers'][m])}</pre></td>" for m in models)
            ref = f"<td><b>reference</b><pre>{_fmt(sample['reference'])}</pre></td>" if sample.get("reference") else ""
            parts.append(f"<div class=sample><p><i>{_fmt(sample['set'])}</i>: <pre>{_fmt(sample['prompt'])}</pre></p>"
                         f"<table><tr>{ref}{cells}</tr></table></div>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}pre{white-space:pre-wrap;max-width:40em}"
             ".err{color:#b00}.chart{max-width:900px}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Evaluation {html.escape(report['run_id'])}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
