"""A team's first day, through the UI only, on the real app with its embedded worker and two
signed-in people: the admin indexes documents, writes the team's system prompt, chats with the
documents (an answer cut at its limit says so; Stop ends a long one) and sends the turn to Annotate,
creates A/B pairs; the annotator votes on them with the keyboard in a browser of their own; the
admin merges the votes, trains a reward model then DPO, evaluates the DPO model against the base
and reads its training curves in Monitor (DPO's four first, one more on demand) under a plain
result sentence. Along the way: an empty upload is refused by name, the
answer streams in, the trainer's guidelines show above the annotator's pairs, the pair on the
trainer's screen is kept from the annotator, the annotator's page starts on Annotate and keeps
its tab across a reload, the Train form's defaults come from the method's Config, a taken output
name is refused, the scoreboard gives every score its interval and n and counts the base as
evaluated, and the Evaluate tab compares the two models, draws a metric along the lineage
and opens the report, whose charts draw themselves. Each tab is photographed into $WORKBENCH_SCREENSHOTS
(the README's pictures: ``WORKBENCH_SCREENSHOTS=docs/screenshots``), else a temporary folder."""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest

from tests.conftest import drawn, fill_field, start_app_with_users, wait_for

PEOPLE = {"alice": "admin", "ann": "annotator"}
DOCUMENTS = {
    "orchard.md": "# The Kestrel orchard\n\nThe Kestrel orchard grows Bramley apples. They ripen in late "
                  "September and are picked by hand.\n\n## Pruning\n\nThe trees are pruned every February.\n",
    "harbour.txt": "Port Maren's harbour has a lighthouse painted red and white.\n\n"
                   "The ferry to the islands leaves every morning at seven.\n",
}
QUESTION = "When do the apples of the Kestrel orchard ripen?"
# ten prompts: the fewest from which training holds five out to measure and keeps five to learn
PROMPTS = ["Name a colour.", "Name a fruit.", "Name a river.", "Name a tree.", "Name a bird.",
           "Name a city.", "Name a metal.", "Name a planet.", "Name a flower.", "Name a sport."]
SYSTEM_PROMPT = "Tu es l'assistant du verger Kestrel : réponds en une phrase, d'après les documents."
GUIDELINES = "Préférez la réponse **fidèle au contexte**, même courte ; « égalité » si les deux se valent."
KEYS = ["1", "2"] * 5  # A, B, ...: every vote decisive, so every pair is kept by the merge
SECONDS = 1000  # expect() takes milliseconds


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_status(ws: Path, run_id: str) -> dict:
    return json.loads((ws / "runs" / run_id / "status.json").read_text())


def app_process(ws: Path) -> int:
    """The pid of the app serving workspace ``ws``."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"app.py" in (proc / "cmdline").read_bytes() \
                    and f"WORKBENCH_HOME={ws}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no app serves {ws}")


def threads_of(pid: int, name: str) -> list[str]:
    """The threads of process ``pid`` named ``name`` in the operating system."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                found.append(task.name)
        except OSError:
            continue
    return found


def shoot(page, name: str, height: int | None = None) -> None:
    """The whole page, or its top ``height`` pixels."""
    folder = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or Path(tempfile.gettempdir()) / "workbench-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": height} if height else None
    page.screenshot(path=str(folder / name), full_page=True, clip=clip)


def sign_in(browser, url: str, name: str):
    """A browser context of its own for ``name``, signed in through Gradio's login page."""
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(f"{name}-pw")
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_role("tab", name="Corpus")).to_be_visible(timeout=60 * SECONDS)
    return page


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    drawn(page)


def open_section(page, title: str, exact: bool = False) -> None:
    """Open the accordion titled ``title`` and wait until its fields are drawn."""
    page.get_by_text(title, exact=exact).filter(visible=True).click()
    drawn(page)


def set_slider(page, label: str, value: float) -> None:
    """Type into the number box of the visible slider labelled ``label``."""
    box = page.get_by_label(f"number input for {label}", exact=True).filter(visible=True)
    box.fill(str(value))
    box.press("Tab")


def follow_launched_run(page, kind: str, ws: Path, timeout_s: int = 240) -> str:
    """After a Launch button: the run opened in Monitor, followed until it succeeds; its id."""
    from playwright.sync_api import expect

    select = page.locator("#run-select input")
    expect(select).to_have_value(re.compile(kind), timeout=60 * SECONDS)
    run_id = select.input_value()
    expect(page.locator("#run-detail")).to_contain_text(re.compile(rf"{run_id}.*(succeeded|failed|cancelled)"),
                                                        timeout=timeout_s * SECONDS)
    status = run_status(ws, run_id)
    log = (ws / "runs" / run_id / "log.txt").read_text()
    assert status["status"] == "succeeded", (status.get("error"), log[-2000:])
    return run_id


def fill_training_form(page, method: str, **values) -> None:
    """Pick ``method`` and set fields of its "Training" section (closed by default)."""
    from playwright.sync_api import expect

    page.locator("#train-method").get_by_label(method, exact=True).check()
    expect(page.locator(f"#train-{method}-output_name")).to_be_visible(timeout=30 * SECONDS)
    drawn(page)
    open_section(page, "Training", exact=True)
    for name, value in values.items():
        fill_field(page, f"#train-{method}-{name}", value)


def index_documents(page, tmp_path: Path, ws: Path) -> None:
    from playwright.sync_api import expect

    paths = []
    for name, text in DOCUMENTS.items():
        paths.append(tmp_path / name)
        paths[-1].write_text(text)
    (tmp_path / "empty.md").write_text("")
    open_tab(page, "Corpus")
    page.locator("#corpus-upload input[type=file]").set_input_files([str(p) for p in paths] + [str(tmp_path / "empty.md")])
    page.locator("#corpus-upload-btn").click()
    message = page.locator("#corpus-message")
    expect(message).to_contain_text("empty.md: refused: empty file", timeout=60 * SECONDS)
    for name in DOCUMENTS:
        expect(message).to_contain_text(f"{name}: added", timeout=60 * SECONDS)
    table = page.locator("#documents-table")
    for name in DOCUMENTS:
        expect(table).to_contain_text(name, timeout=30 * SECONDS)
    expect(table).not_to_contain_text(re.compile("pending|indexing"), timeout=180 * SECONDS)
    expect(table).to_contain_text("indexed")
    registry = json.loads((ws / "data" / "documents.json").read_text())["documents"]
    assert sorted((d["name"], d["status"]) for d in registry) == [("harbour.txt", "indexed"), ("orchard.md", "indexed")]
    assert all(d["chunks"] >= 1 for d in registry)
    shoot(page, "corpus.png")


def chat_and_send_to_annotate(page, ws: Path) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Chat")
    # the team's system prompt, in French, told to the model before every question from now on
    open_section(page, "System prompt (this workspace)")
    expect(page.locator("#chat-system-message")).to_contain_text("No system prompt yet", timeout=30 * SECONDS)
    fill_field(page, "#chat-system-text", SYSTEM_PROMPT)
    page.locator("#chat-system-save").click()
    expect(page.locator("#chat-system-message")).to_contain_text("System prompt saved", timeout=30 * SECONDS)
    # sampled: the tiny random model's greedy answer is a run of newlines, which the loop guard cuts to nothing
    set_slider(page, "temperature (0 = greedy)", 1)
    set_slider(page, "max new tokens", 48)
    page.locator("#chat-input textarea").fill(QUESTION)
    page.locator("#chat-send").click()
    answer = page.locator("#chatbot .message.bot").last
    expect(answer).not_to_be_empty(timeout=180 * SECONDS)
    first = answer.inner_text()
    sources = page.locator("#chat-sources")
    expect(sources).to_contain_text("orchard.md", timeout=120 * SECONDS)
    expect(sources).to_contain_text("tokens/s", timeout=180 * SECONDS)  # the turn is done
    assert answer.inner_text().strip() and len(answer.inner_text()) >= len(first)
    page.locator("#chat-annotate").click()
    expect(page.locator("#chat-status")).to_contain_text("Sent turn", timeout=30 * SECONDS)
    turns = read_jsonl(ws / "data" / "chat_turns.jsonl")
    assert [t["user"] for t in turns] == ["alice"]
    # the prompt kept for annotation carries the retrieved context
    assert turns[0]["prompt"].startswith(QUESTION) and "ripen in late September" in turns[0]["prompt"]
    assert turns[0]["answer"].strip() and "orchard.md" in {s["source"] for s in turns[0]["sources"]}
    # the tiny model's sampled noise runs to the limit: the page says the answer was cut there
    assert turns[0]["new_tokens"] == 48 and turns[0]["cut"] is True, turns[0]
    assert turns[0]["system_version"] == 1  # answered under the team's system prompt
    expect(answer).to_contain_text("stopped at the 48 tokens limit: raise max new tokens for more")
    shoot(page, "chat.png")
    # Stop ends a long answer: the page keeps what was written, the app stops generating
    set_slider(page, "max new tokens", 1024)
    page.locator("#chat-input textarea").fill("Tell me everything about the harbour.")
    page.locator("#chat-send").click()
    expect(page.locator("#chatbot .message.bot").nth(1)).not_to_be_empty(timeout=180 * SECONDS)
    expect(sources).not_to_contain_text("retrieving and loading", timeout=180 * SECONDS)  # it streams
    page.locator("#chat-stop").click()
    expect(page.locator("#chat-status")).to_contain_text("Stopped: the answer above is as far as the model got",
                                                         timeout=30 * SECONDS)
    app = app_process(ws)
    wait_for(lambda: not threads_of(app, "generate"), 60, what="the app's generating thread to end")
    expect(sources).not_to_contain_text("tokens/s")  # the turn never finished


def create_pairs(page, ws: Path) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Annotate")
    expect(page.locator("#annotate-prompt")).to_contain_text("Nothing left", timeout=60 * SECONDS)
    page.get_by_role("button", name=re.compile("Add prompts")).click()
    # one model only: the form says why two of its temperatures are a weak comparison
    expect(page.locator("#annotate-sides-note")).to_contain_text("weak comparison")
    page.locator("#annotate-typed textarea").fill("\n".join(PROMPTS))
    # Both sides draw the same random numbers (each side's batch is seeded alike) and the tiny
    # model's logits are nearly flat: only a low temperature makes A's sample differ from B's.
    set_slider(page, "temperature A", 0.1)
    set_slider(page, "max new tokens", 32)
    page.locator("#annotate-add").click()
    added = page.locator("#annotate-add-message")
    expect(added).to_contain_text(f"{len(PROMPTS)} pairs added", timeout=60 * SECONDS)
    expect(added).to_contain_text("generated in batches by run")
    run_id = re.search(r"by run (\S+)", added.inner_text()).group(1)
    # the trainer's panel: guidelines for the annotators, in French
    open_section(page, "Team: guidelines, sets, agreement, merge")
    fill_field(page, "#team-guidelines", GUIDELINES)
    page.locator("#team-guidelines-save").click()
    expect(page.locator("#team-guidelines-message")).to_contain_text("Guidelines saved", timeout=30 * SECONDS)
    # a pair shows by itself once the job has written both of its answers
    expect(page.locator("#annotate-status")).to_contain_text("Ready", timeout=180 * SECONDS)
    wait_for(lambda: run_status(ws, run_id)["status"] in ("succeeded", "failed"), 180, what="the pairs job")
    assert run_status(ws, run_id)["status"] == "succeeded", run_status(ws, run_id)


def vote_with_the_keyboard(page, trainer, ws: Path) -> None:
    """The annotator votes with the keys on every pair but the one on the trainer's screen (leased
    to the trainer since it showed there); the trainer votes on that one."""
    from playwright.sync_api import expect

    # an annotator's page starts on Annotate, names who is signed in, and shows no tab or form of
    # what only others may do
    expect(page.get_by_role("tab", name="Annotate")).to_have_attribute("aria-selected", "true", timeout=30 * SECONDS)
    expect(page.locator("#whoami")).to_contain_text("Signed in as ann (annotator)")
    expect(page.get_by_role("link", name="Sign out")).to_be_visible()
    expect(page.get_by_role("tab", name="Train")).to_be_hidden()
    expect(page.locator("#annotate-status")).to_contain_text("Ready", timeout=60 * SECONDS)
    progress = page.locator("#annotate-progress")
    expect(progress).to_contain_text(f"0 voted · {len(PROMPTS)} left")
    expect(page.locator("#annotate-guidelines")).to_contain_text("fidèle au contexte")
    # an annotator is not shown what only others may do (the server refuses it anyway)
    expect(page.get_by_text("Team: guidelines, sets, agreement, merge")).to_be_hidden()
    expect(page.get_by_text("Add prompts")).to_be_hidden()
    for done, key in enumerate(KEYS[:-1], start=1):
        page.locator("#annotate-prompt").click()  # focus outside any text field
        page.keyboard.press(key)
        # the counter and the next pair arrive together: the next key votes on the next pair
        expect(progress).to_contain_text(f"{done} voted", timeout=60 * SECONDS)
        if done == 1:
            expect(page.locator("#vote-reveal")).to_contain_text("A was base")
            assert page.locator("#answer-a").inner_text().strip()
            shoot(page, "annotate.png")
    expect(page.locator("#annotate-prompt")).to_contain_text("Nothing left", timeout=30 * SECONDS)
    expect(progress).to_contain_text("working now: alice")
    trainer.locator("#annotate-prompt").click()
    trainer.keyboard.press(KEYS[-1])
    expect(trainer.locator("#vote-reveal")).to_contain_text("Last vote", timeout=30 * SECONDS)
    votes = read_jsonl(ws / "data" / "feedback.jsonl")
    assert [(v["annotator"], v["choice"]) for v in votes] == [("ann", "a"), ("ann", "b")] * 4 + [("ann", "a"), ("alice", "b")]
    assert sorted(v["prompt"] for v in votes) == sorted(PROMPTS)
    assert {v["guidelines_version"] for v in votes} == {1}
    # the open tab is in the address: a reload comes back to it
    open_tab(page, "Evaluate")
    expect(page).to_have_url(re.compile("#evaluate$"))
    expect(page.get_by_role("button", name="Launch")).to_be_hidden()
    page.reload()
    expect(page.get_by_role("tab", name="Evaluate")).to_have_attribute("aria-selected", "true", timeout=60 * SECONDS)


def merge_votes(page, ws: Path) -> None:
    from playwright.sync_api import expect

    page.locator("#annotate-team").get_by_role("button", name="Refresh").click()  # the panel is still open
    expect(page.locator("#team-stats")).to_contain_text(f"{len(PROMPTS)} / {len(PROMPTS)}", timeout=30 * SECONDS)
    page.get_by_role("button", name="Merge votes into data/dataset_rlhf.jsonl").click()
    expect(page.get_by_text(re.compile(rf"{len(PROMPTS)} pairs in .*dataset_rlhf\.jsonl.*dropped: none"))) \
        .to_be_visible(timeout=30 * SECONDS)
    rows = read_jsonl(ws / "data" / "dataset_rlhf.jsonl")
    assert sorted(r["prompt"] for r in rows) == sorted(PROMPTS)
    assert sorted(r["annotators"][0] for r in rows) == ["alice"] + ["ann"] * 9
    assert all(r["chosen"] != r["rejected"] for r in rows)


def train_reward_then_dpo(page, ws: Path) -> str:
    """Both runs launched from the Train tab, a few steps each; the DPO run's id."""
    from playwright.sync_api import expect

    open_tab(page, "Train")
    expect(page.locator("#train-needs")).to_contain_text("SFT rows")
    expect(page.locator("#train-sft-output_name textarea, #train-sft-output_name input").first) \
        .to_have_value("llama-lora-adapted")  # the Config's default
    fill_training_form(page, "reward", max_steps=2, batch_size=2)
    page.locator("#train-launch").click()
    follow_launched_run(page, "train-reward", ws)
    assert (ws / "models" / "reward_model" / "manifest.json").is_file()

    open_tab(page, "Train")
    fill_training_form(page, "dpo", max_steps=2, batch_size=2)
    page.locator("#train-estimate-btn").click()
    expect(page.locator("#train-dataset-info")).to_contain_text(f"{len(PROMPTS)} pairs", timeout=60 * SECONDS)
    expect(page.locator("#train-estimate")).to_contain_text("for 2 steps", timeout=60 * SECONDS)
    shoot(page, "train.png")
    page.locator("#train-launch").click()
    dpo = follow_launched_run(page, "train-dpo", ws)
    assert run_status(ws, dpo)["result"]["global_step"] == 2
    assert (ws / "models" / "llama-dpo" / "adapter_model.safetensors").is_file()
    expect(page.locator("#run-curves")).to_contain_text("loss", timeout=30 * SECONDS)
    open_tab(page, "Train")
    page.locator("#train-launch").click()  # the name is taken now: refused, nothing queued
    expect(page.get_by_text("a model named 'llama-dpo' exists").first).to_be_visible(timeout=30 * SECONDS)
    return dpo


def evaluate_against_base(page, ws: Path) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Evaluate")
    board = page.locator("#eval-scoreboard")
    expect(board).to_contain_text("never", timeout=30 * SECONDS)  # llama-dpo is not evaluated yet
    page.locator("#eval-models").get_by_label("llama-dpo").check()
    page.locator("#eval-sets").get_by_label("preferences").check()
    fill_field(page, "#eval-max_prompts", 2)
    fill_field(page, "#eval-max_new_tokens", 12)
    page.locator("#eval-launch").click()
    run_id = follow_launched_run(page, "evaluate", ws)
    assert (ws / "runs" / run_id / "report.html").is_file()

    open_tab(page, "Evaluate")
    expect(board).to_contain_text("llama-dpo", timeout=30 * SECONDS)
    expect(board).to_contain_text("win-rate vs base", timeout=30 * SECONDS)
    # each score with its interval and the two prompts it rests on, flagged as too few; the base,
    # the reference of the win-rate, counts as evaluated in that run
    expect(board).to_contain_text(re.compile(r"\d \[[\d.]+, [\d.]+\] · n=2 ⚠"))
    expect(board).to_contain_text("reference of llama-dpo")
    # the scores fit the page at 1,400 px (they wrap); lineage and data have a table of their own
    assert page.locator("#eval-scoreboard table").first.evaluate("t => t.scrollWidth") <= 1400
    expect(page.locator("#eval-models-table")).to_contain_text("llama-dpo ← base")
    # the two models' answers side by side
    open_section(page, "Two models side by side")
    for picker, name in (("#eval-first", "base"), ("#eval-second", "llama-dpo")):
        page.locator(f"{picker} input").fill(name)
        page.locator(f"{picker} [role=option]", has_text=name).first.click()  # waits for the option
    page.locator("#eval-compare").click()
    expect(page.locator("#eval-answers")).to_contain_text("Name a", timeout=30 * SECONDS)
    # both answers readable at 1,400 px: the table is no wider than the page
    width = page.locator("#eval-answers table").first.evaluate("t => t.scrollWidth")
    assert width <= 1400, width
    # a metric along the lineage
    open_section(page, "A metric along the lineage")
    page.locator("#eval-metric input").fill("win-rate vs base")
    page.locator("#eval-metric [role=option]", has_text="win-rate vs base").first.click()
    expect(page.locator("#eval-lineage-plot .js-plotly-plot")).to_be_visible(timeout=30 * SECONDS)
    open_section(page, "Reports", exact=True)
    expect(page.locator("#eval-report-run input")).to_have_value(f"{run_id} — succeeded", timeout=30 * SECONDS)
    page.locator("#eval-report-open").click()
    summary = page.locator("#eval-report-summary")
    expect(summary).to_contain_text(f"{run_id} (succeeded", timeout=30 * SECONDS)
    expect(summary).to_contain_text(re.compile(r"llama-dpo.*win-rate vs base"))
    expect(page.locator("#eval-report-file")).to_contain_text("report-", timeout=30 * SECONDS)
    # the report read in the app: its charts and its answers side by side
    expect(page.locator("#eval-report-plot .js-plotly-plot")).to_be_visible(timeout=30 * SECONDS)
    expect(page.locator("#eval-report-samples")).to_contain_text("Name a", timeout=30 * SECONDS)
    expect(page.locator("#eval-report-samples")).to_contain_text("llama-dpo")
    shoot(page, "evaluate.png")
    # the report file draws its charts in the browser by itself
    report = page.context.new_page()
    report.goto((ws / "runs" / run_id / "report.html").as_uri())
    expect(report.locator(".js-plotly-plot").first).to_be_visible(timeout=30 * SECONDS)
    expect(report.locator("body")).to_contain_text("llama-dpo")
    report.close()


def monitor_training_run(page, ws: Path, run_id: str) -> None:
    from playwright.sync_api import expect

    open_tab(page, "Monitor")
    page.locator("#run-select input").fill(run_id)
    page.locator("#run-select [role=option]", has_text=run_id).first.click()  # waits for the option
    expect(page.locator("#run-detail")).to_contain_text(re.compile(rf"{run_id}.*train\.dpo.*succeeded"),
                                                        timeout=30 * SECONDS)
    # the plain result: the held-out margin before -> after, on how many pairs, better or worse
    expect(page.locator("#run-detail")).to_contain_text(re.compile(
        r"Result: Held-out log-prob margin \(chosen over rejected\) went from -?[\d.]+ to -?[\d.]+ on 5 held-out "
        r"pairs: (slightly )?(better|worse|unchanged)\. 5 pairs are too few"), timeout=30 * SECONDS)
    expect(page.locator("#run-curves .js-plotly-plot")).to_be_visible(timeout=30 * SECONDS)
    # DPO's four curves first, the rest on demand
    picker = page.locator("#run-curve-names")
    for name in ("loss", "rewards/margins", "rewards/chosen", "rewards/rejected"):
        expect(picker.get_by_label(name, exact=True)).to_be_checked(timeout=30 * SECONDS)
    panels = page.locator("#run-curves text.annotation-text")  # one titled panel per metric
    expect(panels).to_have_count(4, timeout=30 * SECONDS)
    picker.get_by_label("grad_norm", exact=True).check()
    expect(panels).to_have_count(5, timeout=30 * SECONDS)
    expect(panels.filter(has_text=re.compile(r"^grad_norm$"))).to_have_count(1)
    expect(page.locator("#run-log textarea")).to_have_value(re.compile(r"step 2/2: loss [\d.]+.*succeeded", re.S),
                                                           timeout=30 * SECONDS)
    assert [m["step"] for m in read_jsonl(ws / "runs" / run_id / "metrics.jsonl") if "loss" in m] == [1, 2]
    expect(page.locator("#runs-table")).not_to_contain_text(re.compile("failed|running|queued"))
    shoot(page, "monitor.png")


@pytest.mark.slow(204)
def test_first_day_from_documents_to_an_evaluated_dpo_model(env, tiny_base, start_process, browser, tmp_path):
    env["WORKBENCH_BASE_MODEL"] = str(tiny_base)  # trains and generates in seconds; its answers are noise
    url = start_app_with_users(env, start_process, tmp_path, PEOPLE, worker=True)
    ws = Path(env["WORKBENCH_HOME"])

    admin = sign_in(browser, url, "alice")
    index_documents(admin, tmp_path, ws)
    chat_and_send_to_annotate(admin, ws)
    create_pairs(admin, ws)

    annotator = sign_in(browser, url, "ann")
    vote_with_the_keyboard(annotator, admin, ws)

    merge_votes(admin, ws)
    dpo = train_reward_then_dpo(admin, ws)
    evaluate_against_base(admin, ws)
    monitor_training_run(admin, ws, dpo)

    # the day as the workspace keeps it: every job it ran succeeded, in order, and the people
    # are named in the audit log (sign-ins from the page included)
    runs = sorted(p.name for p in (ws / "runs").iterdir() if (p / "status.json").exists())
    statuses = [run_status(ws, r) for r in runs]
    assert [s["kind"] for s in statuses] == ["corpus.ingest", "pairs.generate", "train.reward", "train.dpo", "evaluate"]
    assert all(s["status"] == "succeeded" for s in statuses), statuses
    audit = read_jsonl(ws / "audit.jsonl")
    assert {e["user"] for e in audit if e["action"] == "login" and e["outcome"] == "done"} == set(PEOPLE)
    assert {e["user"] for e in audit if e["action"] == "launch"} == {"alice"}
