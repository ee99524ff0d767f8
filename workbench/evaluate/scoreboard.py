"""The scoreboard: a row per model of the workspace (base, adapters, merged and reward models) with
its lineage from the manifests and the newest score of each metric across every evaluation run
(with its n, its 95 % interval, that run and its date), the best value of each column marked; the answers of two models to
the same prompts; a metric along the lineage; CSV export."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from storage import RunStore, Unreadable, list_models, read_json
from workbench.chat.prompt import split_prompt
from workbench.evaluate.metrics import FEW, METRICS, score_text
from workbench.evaluate.report import model_facts
from workbench.models.loading import BASE
from workbench.safe_text import csv_cell
from workbench.settings import Settings

FACTS = ("role", "method", "parent", "lineage", "dataset", "dataset_sha256", "trained_by")


@dataclass
class Scoreboard:
    rows: list[dict[str, Any]]
    metrics: list[str]  # the metric columns that have at least one value
    best: dict[str, str] = field(default_factory=dict)  # metric -> model with the best value
    reports: list[dict[str, Any]] = field(default_factory=list)  # newest first


def evaluation_reports(settings: Settings) -> list[dict[str, Any]]:
    """Every evaluation run's report.json (partial ones too), newest first."""
    found = []
    for run in RunStore(settings.workspace.runs).all():
        status = run.status()
        if isinstance(status, Unreadable) or status.get("kind") != "evaluate":
            continue
        report = read_json(run.folder / "report.json")
        if isinstance(report, dict) and isinstance(report.get("models"), dict):
            report["status"] = status.get("status")
            report["has_html"] = (run.folder / "report.html").is_file()
            found.append(report)
    return sorted(found, key=lambda r: (str(r.get("updated") or ""), r.get("run_id", "")), reverse=True)


def workspace_models(settings: Settings) -> list[str]:
    names = [BASE]
    for entry in list_models(settings.workspace.models):
        if entry["name"] != BASE and isinstance(entry.get("manifest"), dict):
            names.append(entry["name"])
    return names


def build(settings: Settings) -> Scoreboard:
    from workbench.evaluate.units import model_role

    reports = evaluation_reports(settings)
    present = workspace_models(settings)
    names = present + [m for r in reports for m in r["models"] if m not in present]
    names = list(dict.fromkeys(names))
    rows = []
    for name in names:
        facts = model_facts(settings, name)
        row: dict[str, Any] = {"model": name, "role": model_role(settings, name) if name in present else "deleted",
                               **{k: facts.get(k) for k in FACTS if k != "role"}}
        row["lineage"] = " ← ".join(facts["lineage"])
        for report in reports:  # newest first: the first value found is the newest
            found = report["models"].get(name)
            if not found:
                continue
            if not found.get("error") and "evaluated_run" not in row:
                # answers of its own, scored or the reference the others' win-rates are measured against
                row.update(evaluated_run=report["run_id"], evaluated_date=report.get("updated"),
                           reference_of=found.get("reference_of") or [])
            for key, value in (found.get("metrics") or {}).items():
                if key in METRICS and value is not None and key not in row:
                    row[key] = value
                    row[f"{key}_run"] = report["run_id"]
                    row[f"{key}_date"] = report.get("updated")
                    row[f"{key}_n"] = (found.get("n") or {}).get(key)
                    row[f"{key}_interval"] = (found.get("intervals") or {}).get(key)
            if found.get("error") and "error" not in row:
                row["error"] = found["error"]
        rows.append(row)
    columns = [k for k in METRICS if any(k in r for r in rows)]
    best = {}
    for key in columns:
        scored = [r for r in rows if isinstance(r.get(key), (int, float))]
        if len(scored) > 1 and key != "human_votes":  # a lone value is not "the best"
            pick = max if METRICS[key][1] else min
            best[key] = pick(scored, key=lambda r: r[key])["model"]
    return Scoreboard(rows, columns, best, reports)


def table(board: Scoreboard) -> tuple[list[str], list[list[Any]]]:
    """Headers and cells for display: what each model is, then its scores (values rounded, the
    best of each column starred) and its newest evaluation."""
    headers, cells = models_table(board)
    score_headers, scores = scores_table(board)
    return headers + score_headers[1:], [facts + row[1:] for facts, row in zip(cells, scores)]


def scores_table(board: Scoreboard) -> tuple[list[str], list[list[Any]]]:
    """A row per model: its scores (the best of each column starred) and its newest evaluation."""
    headers = ["model"] + [METRICS[k][0] for k in board.metrics] + ["evaluated"]
    cells = []
    for row in board.rows:
        values = []
        for key in board.metrics:
            text = score_text(row.get(key), row.get(f"{key}_interval"), row.get(f"{key}_n"))
            values.append(f"★ {text}" if board.best.get(key) == row["model"] and text else text)
        cells.append([row["model"], *values, evaluated_text(row)])
    return headers, cells


def models_table(board: Scoreboard) -> tuple[list[str], list[list[Any]]]:
    """A row per model: its role, lineage, method and the data it was trained on."""
    return (["model", "role", "lineage", "method", "dataset"],
            [[row["model"], row["role"], row["lineage"], row.get("method") or "", _dataset(row)] for row in board.rows])


def evaluated_text(row: dict[str, Any]) -> str:
    """The newest evaluation the model took part in, and whose reference it was there."""
    if not row.get("evaluated_run"):
        return "never"
    text = f"{row['evaluated_run']} ({(row.get('evaluated_date') or '')[:16]})"
    if row.get("reference_of"):
        text += f", reference of {', '.join(row['reference_of'])}"
    return text


def _dataset(row: dict[str, Any]) -> str:
    dataset = row.get("dataset") or ""
    if row.get("dataset_sha256"):
        dataset += f" ({row['dataset_sha256'][:12]})"
    return dataset


def to_json(board: Scoreboard) -> dict[str, Any]:
    """Every model with its facts, the evaluation it last took part in, and each metric as
    value, n (the items it rests on), 95 % interval (rates and means), run and date."""
    models = []
    for row in board.rows:
        scores = {key: {"value": row[key], "n": row.get(f"{key}_n"), "interval": row.get(f"{key}_interval"),
                        "few": isinstance(row.get(f"{key}_n"), int) and row[f"{key}_n"] < FEW,
                        "run": row.get(f"{key}_run"), "date": row.get(f"{key}_date")}
                  for key in board.metrics if key in row}
        models.append({"model": row["model"], "role": row["role"], **{k: row.get(k) for k in FACTS if k != "role"},
                       "evaluated": {"run": row.get("evaluated_run"), "date": row.get("evaluated_date"),
                                     "reference_of": row.get("reference_of") or []},
                       "error": row.get("error"), "metrics": scores})
    return {"models": models, "metrics": board.metrics, "best": board.best, "few": FEW}


def to_csv(board: Scoreboard) -> str:
    """Every fact and metric, with the run and date each metric comes from; a text cell that a
    spreadsheet would run as a formula (a model or dataset name is the user's) is escaped."""
    columns = ["model", *FACTS] + [c for k in board.metrics for c in (k, f"{k}_n", f"{k}_low", f"{k}_high", f"{k}_run",
                                                                    f"{k}_date")] + ["evaluated_run", "best_in"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in board.rows:
        cells = {**row, "best_in": " ".join(k for k, m in board.best.items() if m == row["model"])}
        for key in board.metrics:
            if row.get(f"{key}_interval"):
                cells[f"{key}_low"], cells[f"{key}_high"] = row[f"{key}_interval"]
        writer.writerow({k: csv_cell(v) for k, v in cells.items()})
    return out.getvalue()


def side_by_side(board: Scoreboard, first: str, second: str) -> list[dict[str, str]]:
    """Both models' answers to the same prompts, from the newest report that has answers of both."""
    for report in board.reports:
        rows = [s for s in report.get("samples") or [] if first in s["answers"] and second in s["answers"]]
        if rows:
            return [{"set": s["set"], "prompt": s["prompt"], "question": split_prompt(s["prompt"])[0].strip(),
                     "reference": s.get("reference", ""),
                     first: s["answers"][first], second: s["answers"][second], "run": report["run_id"]} for s in rows]
    return []


def lineage_figure(board: Scoreboard, metric: str):
    """The metric along each lineage chain (base → SFT → DPO …): one line per trained leaf model."""
    import plotly.graph_objects as go

    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    values = {r["model"]: r.get(metric) for r in board.rows}
    chains = {r["model"]: list(reversed(r["lineage"].split(" ← "))) for r in board.rows}
    parents = {c[i] for c in chains.values() for i in range(len(c) - 1)}
    fig = go.Figure()
    drawn: set[str] = set()
    for leaf, chain in sorted(chains.items(), key=lambda item: -len(item[1])):
        if leaf in parents:
            continue
        points = [(m, values.get(m)) for m in chain if values.get(m) is not None]
        if points and not {m for m, _ in points} <= drawn:  # a chain already drawn in full adds nothing
            drawn |= {m for m, _ in points}
            fig.add_trace(go.Scatter(x=[m for m, _ in points], y=[v for _, v in points], mode="lines+markers",
                                     name=leaf))
    label, higher = METRICS[metric]
    fig.update_layout(title=f"{label} along the lineage ({'higher' if higher else 'lower'} is better)",
                      xaxis_title="model (parent → child)", yaxis_title=label, height=360,
                      margin={"t": 50, "b": 40, "l": 60, "r": 20})
    return fig
