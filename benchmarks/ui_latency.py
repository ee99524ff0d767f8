"""Does long work starve the UI? The latency of a light UI request (the Monitor tab's refresh, the
HTTP request its timer makes: a POST to ``/gradio_api/run/refresh``, which skips Gradio's queue)
with the app idle, while a Chat answer streams in the web process, and while a Chat answer
streams and an SFT run trains in the worker. The same call through ``gradio_client`` is printed
beside it: the client adds its own ~0.1 s (it is not what a page waits for).

One app (``app.py`` with its embedded worker) on the default model; the chat client asks for
long answers one after another; the SFT run is a LoRA fit of the same model on 64 short rows.
Prints p50 / p95 / worst of each phase (goal: p95 under 300 ms while both run).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ui_latency.py [--model PATH] [--samples 80] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from common import free_port, summary_ms  # noqa: E402


def summary(seconds: list[float]) -> dict[str, float]:
    return summary_ms(seconds, digits=0)


def page_refresh(url: str) -> None:
    """What the Monitor tab's timer sends (an endpoint outside the queue: one POST)."""
    body = json.dumps({"data": [None, None], "event_data": None, "session_hash": "ui-latency"}).encode()
    request = urllib.request.Request(url + "gradio_api/run/refresh", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def sample(url: str, client, count: int, interval: float = 0.25) -> tuple[list[float], list[float]]:
    page, through_client = [], []
    for i in range(count):
        started = time.perf_counter()
        page_refresh(url)
        page.append(time.perf_counter() - started)
        if i % 4 == 0:
            started = time.perf_counter()
            client.predict(selected=None, api_name="/refresh")
            through_client.append(time.perf_counter() - started)
        time.sleep(interval)
    return page, through_client


def phase(url: str, client, count: int) -> dict:
    page, through_client = sample(url, client, count)
    return {**summary(page), "gradio_client": summary(through_client)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a model folder (default: the default model, provisioned offline)")
    parser.add_argument("--samples", type=int, default=80)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from common import emit, quiet, temporary_workspace

    home, cli = temporary_workspace("wb-ui-latency-", args.model)
    if cli is None:
        raise SystemExit("could not provision the default model")
    rows = home / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"What is item {i}?", "completion": f"Item {i} is a sample row "
                                        "used to keep the trainer busy."}) + "\n" for i in range(64)))
    quiet(cli, "data", "import", str(rows))
    port = free_port()
    env = dict(os.environ, WORKBENCH_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=open(home / "app.log", "ab"),
                           stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url + "config", timeout=2)
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        from gradio_client import Client

        monitor, chat = Client(url, verbose=False), Client(url, verbose=False)
        report = {}
        sample(url, monitor, 5)  # warm: the first refresh imports what the tab needs
        report["idle"] = phase(url, monitor, args.samples)

        stop, answers = threading.Event(), []

        def ask() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                chat.predict(question="Explain in detail how a database index speeds up a query.", rag=False,
                             max_new_tokens=256, penalty=0, api_name="/ask")
                answers.append(time.perf_counter() - started)

        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        time.sleep(5)  # the model is loaded and tokens stream
        report["chat_streaming"] = phase(url, monitor, args.samples)
        quiet(cli, "train", "sft", "--queue", "--max-steps", "400", "--batch-size", "4")
        time.sleep(20)  # the training child has started its steps
        report["chat_and_training"] = phase(url, monitor, args.samples)
        stop.set()
        asker.join(timeout=120)
        report["chat_answers"] = len(answers)
        for name in ("idle", "chat_streaming", "chat_and_training"):
            r = report[name]
            c = r["gradio_client"]
            print(f"monitor refresh, {name:18s} p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  worst {r['max_ms']} ms"
                  f"   (through gradio_client: p50 {c['p50_ms']} p95 {c['p95_ms']})", flush=True)
        emit(report, args.json)
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
