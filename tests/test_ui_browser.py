"""The app in a real browser (Playwright + Debian's chromium): the Monitor tab shows runs with
their live log and curves, and launching a job from the page runs it in the embedded worker."""
from __future__ import annotations

import re

from tests.conftest import cli, wait_for


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


