"""Shared fixtures: an isolated workspace per test, real worker and app subprocesses."""
from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import preference_pairs, sft_rows, write_jsonl
from workbench.subprocesses import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT_S = 1.0

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Tests run in two processes (`.ci/run`), each with its subprocesses, each with torch's and
    # faiss's OpenMP pools: workers that spin between parallel regions take the core the other
    # process needs. In a two-process run with spinning pools the IVF store test took 75 s instead
    # of 4 s; sleeping pools (inherited by every subprocess a test starts) took it back to 9 s and
    # the run's CPU time from 1,371 s to 761 s.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(items):
    """The longest tests first (``@pytest.mark.slow(seconds)``, measured alone): a parallel run
    (``-n 2 --dist load --maxschedchunk 1``) hands each test to the first process free, so the
    long ones spread across the processes and the short ones fill in at the end."""
    def seconds(item) -> float:
        mark = item.get_closest_marker("slow")
        return float(mark.args[0]) if mark else 0.0

    items.sort(key=lambda item: -seconds(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With ``WORKBENCH_TEST_TIMELINE=FILE``: one line per test (process, start, end, test) appended
    to FILE, to see how a parallel run spends its processes' time."""
    path = os.environ.get("WORKBENCH_TEST_TIMELINE")
    start = time.time()
    try:
        return (yield)
    finally:
        if path:
            with open(path, "a") as out:
                out.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {start:.2f} {time.time():.2f} {item.nodeid}\n")


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workspace_env(folder: Path) -> dict[str, str]:
    """Environment for a workspace in ``folder``/ws, with a queue name nothing else shares."""
    e = dict(os.environ)
    for key in list(e):
        if key.startswith("WORKBENCH_"):
            del e[key]
    e.update(WORKBENCH_HOME=str(folder / "ws"), WORKBENCH_HEARTBEAT_S=str(HEARTBEAT_S),
             WORKBENCH_AUTO_PULL="0", WORKBENCH_QUEUE_NAME=f"test-{uuid.uuid4().hex[:8]}",
             GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    return e


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """Environment for a workspace of this test only."""
    return workspace_env(tmp_path)


@pytest.fixture
def settings(env, monkeypatch):
    from workbench.settings import Settings

    return Settings.from_env(env)


def cli(env: dict[str, str], *args: str, check: bool = True, input: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"workbench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_json(env, *args: str):
    return json.loads(cli(env, *args, "--json").stdout)


class Process:
    """A child process with its output in a file, stopped at teardown."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._handle = open(log, "wb")
        # its own session (stopped as a group at teardown), and gone with this test process even
        # when that is killed before its teardown runs
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._handle, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._handle.close()


@pytest.fixture
def start_process(tmp_path):
    started: list[Process] = []

    def start(args: list[str], env: dict[str, str], name: str = "proc") -> Process:
        p = Process(args, env, tmp_path / f"{name}-{len(started)}.log")
        started.append(p)
        return p

    yield start
    for p in reversed(started):
        p.stop()


@pytest.fixture
def worker(env, start_process):
    """A real worker supervisor (CPU consumer + GPU consumer) on this test's workspace."""
    return start_process([sys.executable, "-m", "workbench.cli", "worker"], env, "worker")


def made_once(tmp_path_factory, name: str, make) -> Path:
    """The folder ``name`` that ``make(folder)`` fills, made once for the whole run: the test
    processes of a parallel run share it (the first to ask makes it, under a lock)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def pulled_base(tmp_path_factory):
    """``workbench models pull`` once per test run: (its JSON output, the models/base folder).
    Tests that need a generating model point ``WORKBENCH_BASE_MODEL`` at the folder."""
    def pull(home: Path) -> None:
        e = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
        e.update(WORKBENCH_HOME=str(home), WORKBENCH_AUTO_PULL="0", HF_HUB_OFFLINE="1")
        (home / "pull.json").write_text(cli(e, "models", "pull", "--json", timeout=600).stdout)

    home = made_once(tmp_path_factory, "base-ws", pull)
    return json.loads((home / "pull.json").read_text()), home / "models" / "base"


@pytest.fixture
def wb(env, monkeypatch, capsys):
    """``workbench ...`` called in this process (the same code path as the command, without
    paying the imports again): returns (exit code, stdout, stderr)."""
    from workbench.cli import main

    for key in list(os.environ):
        if key.startswith("WORKBENCH_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("WORKBENCH_") or key == "HF_HUB_OFFLINE":
            monkeypatch.setenv(key, value)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def run_status(settings, run_id: str) -> dict:
    from storage import RunStore

    status = RunStore(settings.workspace.runs).get(run_id).status()
    return status if isinstance(status, dict) else {}


@pytest.fixture(scope="session")
def tiny_base(pulled_base, tmp_path_factory):
    """A tiny Llama (2 layers, 32 wide) with the default model's tokenizer and chat template:
    every training method runs on it in seconds. Point ``WORKBENCH_BASE_MODEL`` at it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    def make(folder: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(pulled_base[1])
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                             pad_token_id=tokenizer.pad_token_id, bos_token_id=1, eos_token_id=2,
                             tie_word_embeddings=True)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "manifest.json").write_text(json.dumps({"kind": "base", "method": "base", "name": "tiny"}))

    return made_once(tmp_path_factory, "tiny-base", make)


@pytest.fixture
def train_env(env, tiny_base, monkeypatch):
    """This test's workspace on the tiny base model, with SFT rows and preference pairs in data/."""
    env["WORKBENCH_BASE_MODEL"] = str(tiny_base)
    monkeypatch.setenv("WORKBENCH_BASE_MODEL", str(tiny_base))
    data = Path(env["WORKBENCH_HOME"]) / "data"
    write_jsonl(data / "train.jsonl", sft_rows())
    write_jsonl(data / "dataset_rlhf.jsonl", preference_pairs())
    return env


# the app in a real browser (Playwright + Debian's chromium) ------------------------------
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_app(env, start_process) -> str:
    """``python app.py`` on a free port; its URL once it answers."""
    port = free_port()
    env["WORKBENCH_PORT"] = str(port)
    app = start_process([sys.executable, "app.py"], env, "app")
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: _http_ok(url), 120, interval=0.25, what="the app to answer")
    except AssertionError:
        raise AssertionError(app.output()[-3000:]) from None
    return url


def start_app_with_users(env, start_process, tmp_path, people: dict[str, str], worker: bool = False) -> str:
    """``python app.py`` (``--no-worker`` unless ``worker``) with an auth file of ``people`` (name:
    role; each password is ``<name>-pw``); its URL once it answers 401 to a call without a login."""
    from workbench.auth import add_user

    env["WORKBENCH_AUTH_FILE"] = str(tmp_path / "users.json")
    for name, role in people.items():  # what `workbench users add` writes, without a process each
        add_user(tmp_path / "users.json", name, f"{name}-pw", role)
    port = free_port()
    env["WORKBENCH_PORT"] = str(port)
    app = start_process([sys.executable, "app.py", *([] if worker else ["--no-worker"])], env, "app")
    url = f"http://127.0.0.1:{port}/"

    def answers():
        try:
            urllib.request.urlopen(url + "config", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None
        return 200

    assert wait_for(answers, 120, interval=0.25, what=f"the app: {app.output()[-500:]}") == 401
    return url


@pytest.fixture
def app_url(env, start_process):
    return start_app(env, start_process)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


# documents for the corpus tests ---------------------------------------------------------


TEXT_OP = b"BT /F1 12 Tf 72 700 Td (x) Tj ET\n"


RAG_QUESTIONS = [
    {"question": "How do bees show where the flowers are?", "sources": ["bees.md"], "reference": "The waggle dance."},
    {"question": "What turns sunlight into electricity?", "sources": "solar.md"},
    {"question": "Why does a volcano erupt?", "sources": ["volcano.md"], "reference": "Rising magma."}]


def ingest(wb, *args):
    code, out, err = wb("ingest", *args, "--json")
    return code, json.loads(out), err


@pytest.fixture
def browser():
    """One chromium for the test: open a context per signed-in person."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def threads_named(name: str) -> set[int]:
    """The ids of this process's threads that carry ``name`` in the operating system: a thread
    named with ``name_os_thread`` and the threads it started (its OpenMP workers among them)."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                found.add(int(task.name))
        except OSError:  # the thread ended meanwhile
            pass
    return found


def with_openmp_pool(name: str, work) -> dict:
    """Run ``work(pool)`` on a new thread named ``name`` in the operating system that first starts
    an OpenMP pool (one elementwise op over 8M floats, split over every thread); ``pool`` holds the
    ids of that pool's workers. Returns its OpenMP thread count (``threads``), ``pool``, what
    ``work`` returned (``result``) and the workers of that pool still alive once it is done
    (``pool_left``, given a few seconds: an ended thread leaves /proc a moment after it is joined).
    Skips where there is no pool to see: one OpenMP thread, or no libgomp that gives one back."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from workbench.runtime import can_release, name_os_thread

    def run() -> dict:
        name_os_thread(name)
        seen = {"product": torch.ones(1 << 23).exp(), "threads": torch.get_num_threads()}
        seen["pool"] = pool = threads_named(name) - {threading.get_native_id()}
        seen["result"] = work(pool)
        deadline = time.monotonic() + 5
        while pool & threads_named(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["pool_left"] = pool & threads_named(name)
        return seen

    with ThreadPoolExecutor(max_workers=1) as thread:  # a new thread; its errors are raised here
        seen = thread.submit(run).result()
    if seen["threads"] < 2 or not can_release():
        pytest.skip("one OpenMP thread here, or no libgomp that gives a pool back")
    return seen


def drawn(page) -> None:
    """Wait for the frame in which Gradio draws what was just opened for the first time (a tab,
    an accordion, a method's section): an animation frame after the opening it sets the fields
    inside from the values it holds (``render_previously_invisible_children`` in its front end),
    over anything typed meanwhile. The page's own frames, not a clock: its callback was asked
    for before this one, so it has run when the second of these frames comes."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done())))")


def fill_field(page, selector: str, value) -> None:
    """Type ``value`` into the input or text area under ``selector`` and move the focus on: a Gradio field sends
    its value when it loses focus, and a click on Launch right after typing may come first."""
    from playwright.sync_api import expect

    box = page.locator(f"{selector} input, {selector} textarea")
    box.fill(str(value))
    box.press("Tab")
    expect(box).to_have_value(str(value))
