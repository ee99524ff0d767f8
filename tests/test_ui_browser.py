"""The app in a real browser (Playwright + Debian's chromium): the Monitor tab shows runs with
their live log and curves, and launching a job from the page runs it in the embedded worker."""
from __future__ import annotations

import json
import re


from tests.conftest import cli, start_app, wait_for


def test_monitor_shows_runs_with_log_and_curves(env, app_url, page):
    from playwright.sync_api import expect

    done = cli(env, "selftest", "--steps", "8", "--step-seconds", "0", "--queue").stdout.strip()
    page.goto(app_url)
    page.get_by_role("tab", name="Monitor").click()
    table = page.locator("#runs-table")
    expect(table).to_contain_text(done, timeout=60_000)
    # launch a job from the page: it runs in the embedded worker and its log streams in
    page.locator("#selftest-btn").click()
    select = page.locator("#run-select input")
    launched = wait_for(lambda: (v := select.input_value()) not in ("", done) and v, 60, what="the new run")
    log = page.locator("#run-log textarea")
    expect(log).to_have_value(re.compile("selftest started"), timeout=60_000)
    expect(page.locator("#run-detail")).to_contain_text(re.compile(rf"{launched}.*succeeded"), timeout=180_000)
    expect(log).to_have_value(re.compile("step 30/30"), timeout=30_000)
    curves = page.locator("#run-curves .js-plotly-plot")
    expect(curves).to_be_visible(timeout=30_000)
    expect(page.locator("#run-curves")).to_contain_text("loss")
    # a page reload loses nothing: both runs are still listed
    page.reload()
    page.get_by_role("tab", name="Monitor").click()
    expect(table).to_contain_text(done, timeout=30_000)
    expect(table).to_contain_text(launched)


def test_upload_in_corpus_then_chat_streams_an_answer_with_its_source(env, pulled_base, start_process, page, tmp_path):
    from playwright.sync_api import expect

    env["WORKBENCH_BASE_MODEL"] = str(pulled_base[1])
    url = start_app(env, start_process)
    doc = tmp_path / "zephyr-facts.txt"
    doc.write_text("The Zephyr observatory stands on Mount Kalani.\n\n"
                   "Its main telescope has a mirror 4.2 metres wide.\n")
    empty = tmp_path / "empty.md"
    empty.write_text("")

    page.goto(url)
    page.get_by_role("tab", name="Corpus").click()
    page.locator("#corpus-upload input[type=file]").set_input_files([str(doc), str(empty)])
    page.locator("#corpus-upload-btn").click()
    message = page.locator("#corpus-message")
    expect(message).to_contain_text("empty.md: refused: empty file", timeout=60_000)
    expect(message).to_contain_text("zephyr-facts.txt: added")
    table = page.locator("#documents-table")
    expect(table).to_contain_text("zephyr-facts.txt", timeout=30_000)
    expect(table).to_contain_text("indexed", timeout=180_000)

    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-input textarea").fill("How wide is the mirror of the Zephyr telescope?")
    page.locator("#chat-send").click()
    answer = page.locator("#chatbot .message.bot").last
    expect(answer).not_to_be_empty(timeout=180_000)
    first = answer.inner_text()
    sources = page.locator("#chat-sources")
    expect(sources).to_contain_text("zephyr-facts.txt", timeout=60_000)
    expect(sources).to_contain_text("tokens/s", timeout=180_000)  # the turn is done
    final = answer.inner_text()
    assert final.strip() and len(final) >= len(first)
    page.locator("#chat-annotate").click()
    expect(page.locator("#chat-status")).to_contain_text("Sent turn", timeout=30_000)


def test_annotate_votes_with_the_keyboard_and_the_counter_moves(env, pulled_base, start_process, page, tmp_path):
    from playwright.sync_api import expect

    env["WORKBENCH_BASE_MODEL"] = str(pulled_base[1])
    url = start_app(env, start_process)  # with its embedded worker: the pairs' answers are a job

    page.goto(url)
    page.get_by_role("tab", name="Annotate").click()
    expect(page.locator("#annotate-prompt")).to_contain_text("Nothing left", timeout=60_000)
    page.get_by_role("button", name=re.compile("Add prompts")).click()
    page.locator("#annotate-typed textarea").fill("Name a colour.\nName a fruit.")
    page.locator("#annotate-add").click()
    expect(page.locator("#annotate-add-message")).to_contain_text("2 pairs added", timeout=60_000)
    expect(page.locator("#annotate-add-message")).to_contain_text("generated in batches by run")
    # shown by itself once the job has written both answers
    expect(page.locator("#annotate-prompt")).to_contain_text("Name a colour.", timeout=240_000)
    expect(page.locator("#annotate-status")).to_contain_text("Ready", timeout=240_000)
    assert page.locator("#answer-a textarea").input_value() and page.locator("#answer-b textarea").input_value()
    expect(page.locator("#annotate-progress")).to_contain_text("0 voted")

    page.locator("#annotate-prompt").click()  # focus outside any text field
    page.keyboard.press("1")
    expect(page.locator("#annotate-progress")).to_contain_text("1 voted", timeout=60_000)
    expect(page.locator("#vote-reveal")).to_contain_text("A was base")
    expect(page.locator("#annotate-prompt")).to_contain_text("Name a fruit.", timeout=60_000)
    votes = [json.loads(line) for line in (tmp_path / "ws" / "data" / "feedback.jsonl").read_text().splitlines()]
    assert [(v["choice"], v["annotator"], v["prompt"]) for v in votes] == [("a", "local", "Name a colour.")]
