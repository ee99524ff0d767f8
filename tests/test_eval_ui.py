"""The Evaluate tab in a real browser, on a tiny model and an SFT adapter of it: launch
an evaluation from the form, follow it in Monitor, then read the scoreboard, the two models side by
side, a metric along the lineage, and the report, whose charts render in the browser."""
from __future__ import annotations

import re

from tests.conftest import fill_field, sft_rows, start_app, write_jsonl


def test_evaluate_tab_from_launch_to_report(env, tiny_base, wb, start_process, page, settings, monkeypatch):
    from playwright.sync_api import expect

    env["WORKBENCH_BASE_MODEL"] = str(tiny_base)
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", str(tiny_base))
    ws = settings.workspace
    rows = sft_rows(16)
    write_jsonl(ws.train_file, rows[:12])
    write_jsonl(ws.test_file, rows[12:])
    code, _, err = wb("train", "sft", "--max-steps", "1", "--batch-size", "2", "--json")
    assert code == 0, err

    url = start_app(env, start_process)
    page.goto(url)
    page.get_by_role("tab", name="Evaluate").click()
    board = page.locator("#eval-scoreboard")
    expect(board).to_contain_text("llama-lora-adapted", timeout=30_000)
    expect(board).to_contain_text("never")  # not evaluated yet
    page.locator("#eval-models").get_by_label("llama-lora-adapted").check()
    page.locator("#eval-sets").get_by_label("test").check()
    fill_field(page, "#eval-max_prompts", 3)
    fill_field(page, "#eval-max_new_tokens", 12)
    page.locator("#eval-launch").click()
    expect(page.locator("#run-select input")).to_have_value(re.compile("evaluate"), timeout=60_000)
    expect(page.locator("#run-detail")).to_contain_text("succeeded", timeout=300_000)
    expect(page.locator("#run-log textarea")).to_have_value(re.compile("llama-lora-adapted on test: test_loss"))

    page.get_by_role("tab", name="Evaluate").click()
    expect(board).to_contain_text("ROUGE-L vs reference", timeout=30_000)
    expect(board).to_contain_text("★")
    expect(board).not_to_contain_text("never ")
    # two models side by side
    page.get_by_text("Two models side by side").click()
    for picker, name in (("#eval-first", "base"), ("#eval-second", "llama-lora-adapted")):
        page.locator(f"{picker} input").fill(name)
        page.locator(f"{picker} [role=option]", has_text=name).first.click()  # waits for the option
    expect(page.locator("#eval-first input")).to_have_value("base")
    expect(page.locator("#eval-second input")).to_have_value("llama-lora-adapted")
    page.locator("#eval-compare").click()
    expect(page.locator("#eval-answers")).to_contain_text("What is the code word 12?", timeout=30_000)
    # a metric along the lineage
    page.get_by_text("A metric along the lineage").click()
    page.locator("#eval-metric input").fill("held-out loss")
    page.locator("#eval-metric [role=option]", has_text="held-out loss").first.click()
    expect(page.locator("#eval-lineage-plot .js-plotly-plot")).to_be_visible(timeout=30_000)
    # the report: a summary here, the self-contained file with its charts
    page.get_by_text("Reports", exact=True).click()
    page.locator("#eval-report-open").click()
    expect(page.locator("#eval-report-summary")).to_contain_text("held-out perplexity", timeout=30_000)
    expect(page.locator("#eval-report-file")).to_contain_text("report-", timeout=30_000)
    report = next(ws.runs.glob("*evaluate*/report.html"))
    page.goto(report.as_uri())
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
    expect(page.locator("body")).to_contain_text("llama-lora-adapted")
    assert page.locator(".js-plotly-plot").count() >= 3  # loss, perplexity, ROUGE-L
