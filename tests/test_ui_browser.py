"""The app in a real browser (Playwright + Debian's chromium): the Monitor tab shows runs with
their live log and curves, launching a job from the page runs it in the embedded worker, a queued
run says what it waits for, no two controls on a tab share a name; the annotation screen reads
question first."""
from __future__ import annotations

import re

import pytest

from tests.conftest import cli, wait_for


@pytest.mark.slow(24)
def test_monitor_shows_runs_with_log_and_curves_and_annotate_reads_question_first(env, app_url, page, settings):
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
    # a queued run says what it waits for, in words that fit this machine
    slow = cli(env, "selftest", "--steps", "2000", "--step-seconds", "0.05", "--queue").stdout.strip()
    queued = cli(env, "selftest", "--steps", "2", "--step-seconds", "0", "--queue").stdout.strip()
    page.locator("#run-select input").fill(queued)
    page.locator("#run-select [role=option]", has_text=queued).first.click()
    expect(page.locator("#run-detail")).to_contain_text(
        re.compile(rf"{queued}.*queued.*Waiting: the gpu queue (\(no GPU here: its jobs run on the CPU, one at a "
                   rf"time\) )?is busy with {slow} \(selftest\)", re.S), timeout=60_000)
    for run_id in (queued, slow):
        cli(env, "jobs", "cancel", run_id)
    names_are_unique(page)
    annotation_screen(app_url, page, settings)


# The accessible name of each visible control of the app's own: its aria-label, else its label's
# text or its own. Left out: an option of a radio or checkbox group (named within its group), and
# Gradio's icon buttons on a component (a table's "Fullscreen", a slider's reset), named within it,
# and what is hidden from assistive technology (the copy of the tab bar Gradio measures).
NAMES = """() => [...document.querySelectorAll('button, [role=tab], input, textarea, select')]
    .filter(e => e.checkVisibility({visibilityProperty: true, opacityProperty: true})
                 && !['hidden', 'radio', 'checkbox'].includes(e.type) && !e.classList.contains('icon-button')
                 && !e.classList.contains('reset-button') && !e.closest('[aria-hidden=true]'))
    .map(e => (e.getAttribute('aria-label') || (e.labels && e.labels[0] && e.labels[0].innerText)
               || e.innerText || e.value || '').replace(/\\s+/g, ' ').trim())
    .filter(name => name)"""


def names_are_unique(page):
    """On every tab, no two visible controls share an accessible name (a screen reader, or a
    person told "press Launch", could not tell them apart)."""
    from collections import Counter

    from playwright.sync_api import expect

    twins = {}
    for tab in ("Corpus", "Chat", "Annotate", "Train", "Evaluate", "Monitor"):
        page.get_by_role("tab", name=tab).click()
        expect(page.get_by_role("tab", name=tab)).to_have_attribute("aria-selected", "true")
        counts = Counter(page.evaluate(NAMES))
        twins[tab] = sorted(name for name, n in counts.items() if n > 1)
    assert twins == {tab: [] for tab in twins}, twins


def annotation_screen(app_url, page, settings):
    """The question reads first, the retrieved context waits folded with each chunk's document, the
    answers render as Markdown with a mark where one stopped at its token limit; after a skip the
    page says what was skipped and brings it back on demand."""
    from playwright.sync_api import expect

    from storage.atomic import write_json_atomic
    from workbench.chat.prompt import build_prompt
    from workbench.feedback.display import LIMIT_NOTE
    from workbench.feedback.pairs import Side, make_pair, pair_store

    ws = settings.workspace.ensure()
    write_json_atomic(ws.documents_file, {"version": 1, "documents": [
        {"id": "d1", "name": "verger.md"}, {"id": "d2", "name": "cidre.html"}]})
    question = "Quand les pommes du verger Kestrel mûrissent-elles ?"
    prompt = build_prompt(question, ["Les pommes mûrissent fin septembre.", "Le cidre est pressé en octobre."])
    first = make_pair(prompt, "typed", Side("base", 0.0, answer="Elles mûrissent **fin septembre**."),
                      Side("base", 0.8, answer="En octobre, " + "peut-être " * 40, note=LIMIT_NOTE.format(64)),
                      chunk_ids=["d1:0", "d2:3"])
    second = make_pair("Nommez un fruit.", "typed", Side("base", 0.0, answer="Une pomme."),
                       Side("base", 0.8, answer="Une poire."))
    pair_store(ws).add([first, second])

    page.goto(app_url)
    page.get_by_role("tab", name="Annotate").click()
    expect(page.locator("#annotate-prompt")).to_have_text(question, timeout=60_000)
    expect(page.locator("#annotate-context")).to_be_hidden()  # folded until asked for
    page.get_by_text("Retrieved context: 2 chunks").click()
    expect(page.locator("#annotate-context")).to_contain_text("1 · verger.md")
    expect(page.locator("#annotate-context")).to_contain_text("2 · cidre.html")
    answers = page.locator("#answer-a, #answer-b")
    expect(answers.locator("strong", has_text="fin septembre")).to_have_count(1)  # Markdown, not raw stars
    expect(answers.filter(has_text="stopped at the 64 tokens limit")).to_have_count(1)

    page.locator("#vote-skip").click()
    expect(page.locator("#annotate-prompt")).to_have_text("Nommez un fruit.", timeout=30_000)
    page.locator("#vote-skip").click()
    expect(page.locator("#annotate-prompt")).to_contain_text("you skipped 2 pairs", timeout=30_000)
    expect(page.locator("#annotate-progress")).to_contain_text("0 left for you")
    expect(page.locator("#annotate-progress")).to_contain_text("2 skipped")
    page.locator("#vote-unskip").click()
    expect(page.locator("#annotate-prompt")).to_have_text(question, timeout=30_000)
    expect(page.locator("#vote-unskip")).to_be_hidden()
