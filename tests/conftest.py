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
import zipfile
import zlib
from pathlib import Path

import pytest

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
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._handle,
                                     stderr=subprocess.STDOUT, start_new_session=True)

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


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows(n: int = 12) -> list[dict]:
    return [{"prompt": f"What is the code word {i}?", "completion": f"The code word is alpha{i}."} for i in range(n)]


def preference_pairs(n: int = 16, seed: int = 0) -> list[dict]:
    """Chosen answers quote the context; rejected ones ignore it (a task with a known right answer)."""
    import random

    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        fact = f"The vault code of room {i} is {rng.randint(1000, 9999)}."
        pairs.append({"prompt": f"What is the vault code of room {i}?\n\nContext:\n{fact}",
                      "chosen": f"According to the context, {fact}",
                      "rejected": "I do not know anything about that."})
    return pairs


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
def write(path, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def raw_pdf(path, content: bytes, pages: int = 1):
    """A hand-built PDF whose pages all draw one Flate-compressed content stream."""
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 4 0 R >> >> /Contents 3 0 R >>")
    objects += [page] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return write(path, bytes(out))


def deflate_repeated(unit: bytes, count: int) -> bytes:
    """zlib-compress ``unit * count`` chunk by chunk, never holding the whole thing."""
    z = zlib.compressobj(6)
    chunk, parts = unit * 10_000, []
    for _ in range(count // 10_000):
        parts.append(z.compress(chunk))
    parts.append(z.compress(unit * (count % 10_000)))
    parts.append(z.flush())
    return b"".join(parts)


TEXT_OP = b"BT /F1 12 Tf 72 700 Td (x) Tj ET\n"


def docx_bomb(path, megabytes: int):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w") as member:
            zeros = bytes(1 << 20)
            for _ in range(megabytes):
                member.write(zeros)
    return path


def make_corpus(folder):
    from docx import Document
    from fpdf import FPDF

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.md").write_text(
        "# Cats\n\nCats are small carnivorous mammals. They purr when content. A cat sleeps for most of "
        "the day, hunts at dusk and dawn, and grooms its fur with a rough tongue. Kittens are born blind "
        "and open their eyes after about ten days. Domestic cats live fifteen years on average.\n\n"
        "# Volcanoes\n\nMount Etna is an active volcano on the island of Sicily, Italy. It is the highest "
        "active volcano in Europe outside the Caucasus, and its eruptions send lava flows down its slopes "
        "towards the towns of Catania and Nicolosi. Stromboli, a smaller island volcano nearby, erupts "
        "every few minutes.\n")
    (folder / "facts.txt").write_text("Berlin is the capital of Germany.\n\nThe Rhine flows into the North Sea.\n")
    (folder / "guide.html").write_text(
        "<html><body><h1>Gardening</h1><p>Tomatoes need full sun and regular watering.</p>"
        "<script>var secret = 'do not index';</script></body></html>")
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Annual report. Revenue grew in every region this year.")
    pdf.add_page()
    pdf.multi_cell(0, 8, "The reactor coolant is heavy water, pumped through the primary loop.")
    pdf.output(str(folder / "report.pdf"))
    doc = Document()
    doc.add_heading("Safety", level=1)
    doc.add_paragraph("Always wear goggles in the chemistry laboratory.")
    doc.save(str(folder / "manual.docx"))
    (folder / "ignored.bin").write_bytes(b"\x00\x01")  # not a supported type: skipped in a folder
    return folder


def three_docs(folder):
    """Three one-topic documents: each question of ``RAG_QUESTIONS`` has one right source."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bees.md").write_text("# Bees\n\nHoney bees tell each other where flowers are with the waggle dance.\n")
    (folder / "solar.md").write_text("# Solar\n\nPhotovoltaic cells of silicon turn sunlight into electricity.\n")
    (folder / "volcano.md").write_text("# Volcanoes\n\nMagma rising through the crust makes a volcano erupt.\n")
    return folder


RAG_QUESTIONS = [
    {"question": "How do bees show where the flowers are?", "sources": ["bees.md"], "reference": "The waggle dance."},
    {"question": "What turns sunlight into electricity?", "sources": "solar.md"},
    {"question": "Why does a volcano erupt?", "sources": ["volcano.md"], "reference": "Rising magma."}]


def ingest(wb, *args):
    code, out, err = wb("ingest", *args, "--json")
    return code, json.loads(out), err


def sphinx_page(title: str, sections: dict[str, str], previous: str, following: str) -> str:
    """A page shaped like Sphinx's classic theme: related bars above and below, a sidebar with the
    page's contents, the neighbouring topics and a search box, headings with permalinks."""
    related = (f'<div class="related" role="navigation" aria-label="related navigation"><h3>Navigation</h3><ul>'
               f'<li class="right"><a href="genindex.html" title="General Index">index</a></li>'
               f'<li class="right"><a href="py-modindex.html">modules</a> |</li>'
               f'<li class="right"><a href="next.html" title="{following}">next</a> |</li>'
               f'<li class="right"><a href="prev.html" title="{previous}">previous</a> |</li>'
               f'<li class="nav-item nav-item-0"><a href="index.html">Project 2.1 documentation</a> &#187;</li>'
               f'<li class="nav-item nav-item-this"><a href="">{title}</a></li></ul></div>')
    body = "".join(f'<section id="s{i}"><h2>{name}<a class="headerlink" href="#s{i}" title="Permalink">¶</a></h2>'
                   f'<p>{text}</p></section>' for i, (name, text) in enumerate(sections.items()))
    toc = "".join(f'<li><a class="reference internal" href="#s{i}">{name}</a></li>' for i, name in enumerate(sections))
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} &#8212; Project 2.1 documentation</title>
<link rel="stylesheet" href="_static/pygments.css"><script src="_static/doctools.js"></script></head><body>
{related}
<div class="document"><div class="documentwrapper"><div class="bodywrapper"><div class="body" role="main">
<section id="top"><h1>{title}<a class="headerlink" href="#top" title="Permalink">¶</a></h1>{body}</section>
</div></div></div>
<div class="sphinxsidebar" role="navigation" aria-label="main navigation"><div class="sphinxsidebarwrapper">
<h3><a href="index.html">Table of Contents</a></h3><ul><li><a class="reference internal" href="#">{title}</a><ul>{toc}</ul></li></ul>
<h4>Previous topic</h4><p class="topless"><a href="prev.html" title="previous chapter">{previous}</a></p>
<h4>Next topic</h4><p class="topless"><a href="next.html" title="next chapter">{following}</a></p>
<div role="note" aria-label="source link"><h3>This Page</h3><ul class="this-page-menu"><li><a href="_sources/page.rst.txt" rel="nofollow">Show Source</a></li></ul></div>
<div id="searchbox" role="search"><h3 id="searchlabel">Quick search</h3><div class="searchformwrapper"><form class="search" action="search.html" method="get">
<input type="text" name="q" aria-labelledby="searchlabel"><input type="submit" value="Go"></form></div></div>
</div></div><div class="clearer"></div></div>
{related}
<div class="footer" role="contentinfo">&#169; Copyright 2001-2025, the Project Team. Created using <a href="https://www.sphinx-doc.org/">Sphinx</a> 7.2.6.</div>
</body></html>"""


def docbook_page(title: str, sections: dict[str, str], previous: str, following: str, chapter: str) -> str:
    """A page shaped like DocBook's chunked HTML: navigation tables above and below naming the
    neighbouring pages, a table of contents, a "Note" box with its own heading."""
    nav = lambda where: (f'<div class="nav{where}"><table width="100%" summary="Navigation {where}"><tr>'  # noqa: E731
                         f'<td width="40%" align="left"><a accesskey="p" href="prev.html">Prev</a> </td>'
                         f'<td width="20%" align="center"><a accesskey="u" href="up.html">Up</a></td>'
                         f'<td width="40%" align="right"> <a accesskey="n" href="next.html">Next</a></td></tr><tr>'
                         f'<td width="40%" align="left" valign="top">{previous} </td>'
                         f'<td width="20%" align="center"><a accesskey="h" href="index.html">Home</a></td>'
                         f'<td width="40%" align="right" valign="top"> {following}</td></tr></table><hr></div>')
    toc = "".join(f'<dt><span class="sect2"><a href="#s{i}">{name}</a></span></dt>' for i, name in enumerate(sections))
    body = "".join(f'<div class="sect2" id="s{i}"><div class="titlepage"><div><div><h3 class="title">{name}</h3></div></div></div>'
                   f'<p>{text}</p>' + ('<div class="note"><h3 class="title">Note</h3><p>Remember to check the log first.</p></div>'
                                       if i == 0 else '') + '</div>'
                   for i, (name, text) in enumerate(sections.items()))
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title>
<meta name="generator" content="DocBook XSL Stylesheets Vsnapshot"/></head><body id="docContent" class="container-fluid col-10">
<div class="navheader"><table width="100%" summary="Navigation header"><tr><th colspan="3" align="center">{title}</th></tr><tr>
<td width="10%" align="left"><a accesskey="p" href="prev.html">Prev</a> </td><td width="10%" align="left"><a accesskey="u" href="up.html">Up</a></td>
<th width="60%" align="center">{chapter}</th><td width="20%" align="right"> <a accesskey="n" href="next.html">Next</a></td></tr></table><hr/></div>
<div class="sect1"><div class="titlepage"><div><div><h2 class="title" style="clear: both">{title}</h2></div></div></div>
<div class="toc"><dl class="toc">{toc}</dl></div>{body}</div>
{nav("footer")}</body></html>"""



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


def fill_field(page, selector: str, value) -> None:
    """Type ``value`` into the input under ``selector`` and move the focus on: a Gradio field sends
    its value when it loses focus, and a click on Launch right after typing may come first."""
    from playwright.sync_api import expect

    box = page.locator(f"{selector} input")
    box.fill(str(value))
    box.press("Tab")
    expect(box).to_have_value(str(value))
