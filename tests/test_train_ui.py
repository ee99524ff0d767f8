"""The Train tab in a real browser: the form comes from the method's Config, the dataset is
previewed as the method reads it, an estimate is shown, and Launch queues the run and opens it in
Monitor, where it trains in the embedded worker and draws its loss curve."""
from __future__ import annotations

import re

from tests.conftest import fill_field, start_app


def test_launch_sft_from_the_train_tab(train_env, start_process, page, settings):
    from playwright.sync_api import expect

    url = start_app(train_env, start_process)
    page.goto(url)
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-needs")).to_contain_text("SFT rows")
    # defaults come from the Config: the seed's output name, the method's learning rate
    expect(page.locator("#train-sft-output_name textarea, #train-sft-output_name input").first).to_have_value("llama-lora-adapted")
    page.get_by_text("Training", exact=True).first.click()
    fill_field(page, "#train-sft-max_steps", 3)
    page.locator("#train-estimate-btn").click()
    expect(page.locator("#train-dataset-info")).to_contain_text("12 rows", timeout=60_000)
    expect(page.locator("#train-estimate")).to_contain_text(re.compile(r"GiB.*for 3 steps"), timeout=60_000)

    page.locator("#train-launch").click()
    expect(page.locator("#run-select input")).to_have_value(re.compile("train-sft"), timeout=60_000)
    expect(page.locator("#run-detail")).to_contain_text("succeeded", timeout=240_000)
    expect(page.locator("#run-curves")).to_contain_text("loss", timeout=30_000)
    assert (settings.workspace.models / "llama-lora-adapted" / "manifest.json").exists()

    page.get_by_role("tab", name="Train").click()
    page.locator("#train-launch").click()  # the name is taken now: refused, nothing queued
    expect(page.get_by_text("a model named 'llama-lora-adapted' exists").first).to_be_visible(timeout=30_000)
