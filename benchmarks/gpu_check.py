"""Proves the CUDA paths on a GPU machine, through a real worker and the queue, and prints figures.

- QLoRA (bitsandbytes 4-bit NF4) and LoRA in bf16 SFT on a model of ``--big`` size, DPO and a
  reward model on the small one: each run's outcome, precision, peak GPU memory against the
  workbench's estimate, and seconds per step.
- One job per GPU: all of them queued at once run one after another on the one GPU consumer (their
  running intervals must not overlap), and the Monitor names the run holding the GPU meanwhile.
- ``num_processes`` over the GPU count is refused before anything is queued.
- GPU memory: with a stand-in web process holding most of the GPU and answering unload requests,
  a job asks it to unload and then runs; with one that holds on and never answers, the job is
  refused with its estimate and the free memory.
- Batched A/B pair generation on the GPU (a ``pairs.generate`` job): tokens per second.

    python benchmarks/gpu_check.py [--model DIR | --like DIR] [--big 1.7b|none] [--keep]

``--like DIR`` builds models with DIR's tokenizer and random weights (the GPU machine needs no
weights); ``--model DIR`` uses DIR as the small model. Without a GPU it runs the same jobs on the
CPU with tiny models (a check of the script itself).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BIG = {"1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                    num_key_value_heads=32),
       "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3)}
PARTS = ("train-big", "train-small", "limits", "room", "pairs")
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def finished_at(status: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(status["finished"]).timestamp() if status.get("finished") else time.time()


def say(title: str, data) -> None:
    print(f"## {title}\n{json.dumps(data, indent=1, default=str)}", flush=True)


def build_model(like: Path, out: Path, shape: dict, dtype: str) -> Path:
    """A Llama of ``shape`` with ``like``'s tokenizer and random weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(like)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=True, **shape)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "manifest.json").write_text(json.dumps({"kind": "base", "method": "base", "name": out.name}))
    return out


def write_data(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    sft = [{"prompt": f"What is the code word {i}? " + "Explain briefly. " * 8,
            "completion": f"The code word is alpha{i}. " * 6} for i in range(64)]
    pairs = [{"prompt": f"What is the vault code of room {i}?\n\nContext:\nThe vault code of room {i} is {1000 + i}.",
              "chosen": f"According to the context, the vault code of room {i} is {1000 + i}.",
              "rejected": "I do not know anything about that."} for i in range(64)]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft))
    (data / "dataset_rlhf.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))


class Bench:
    def __init__(self, home: Path):
        self.home = home
        self.env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_AUTO_PULL": "0",
                    "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}

    def cli(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "workbench.cli", *args], env={**self.env, **(env or {})},
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            raise RuntimeError(f"workbench {' '.join(args)}: {proc.stderr[-1500:]}")
        return proc

    def queue(self, *args: str, env: dict | None = None) -> str:
        return json.loads(self.cli(*args, "--queue", "--json", env=env).stdout)["id"]

    def status(self, run_id: str) -> dict:
        return json.loads((self.home / "runs" / run_id / "status.json").read_text())

    def wait(self, ids: list[str], timeout: float = 900, during=None) -> dict[str, dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            states = {i: self.status(i) for i in ids}
            if during:
                during()
            if all(s["status"] in ("succeeded", "failed", "cancelled") for s in states.values()):
                return states
            time.sleep(0.5)
        raise TimeoutError(f"runs still going after {timeout} s: {ids}")

    def summary(self, run_id: str) -> dict:
        status = self.status(run_id)
        folder = self.home / "runs" / run_id
        metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()
                   if line.strip()] if (folder / "metrics.jsonl").exists() else []
        result = status.get("result") or {}
        steps = [m for m in metrics if "loss" in m and "step" in m]
        return {"kind": status["kind"], "status": status["status"], "error": status.get("error"),
                "gpus": status.get("gpus"), "gpu_memory": status.get("gpu_memory"),
                "seconds": round(finished_at(status) - status["started_at"], 1)
                if status.get("started_at") else None,
                "result": {k: v for k, v in result.items() if k not in ("history",)},
                "first_loss": steps[0]["loss"] if steps else None, "last_loss": steps[-1]["loss"] if steps else None}


STAND_IN = """
import sys, threading, time, torch
sys.path.insert(0, sys.argv[1])
from storage import Workspace
from workbench.gpu_memory import serve_unload_requests
leave_gib, answer = float(sys.argv[3]), sys.argv[4] == "answer"
free, _ = torch.cuda.mem_get_info()
held = [torch.empty(int(free - leave_gib * 2**30), dtype=torch.uint8, device="cuda")]
def unload():
    held.clear(); torch.cuda.empty_cache(); return ["chat: base (stand-in)"]
stop = threading.Event()
if answer:
    serve_unload_requests(Workspace(sys.argv[2]), unload, stop, poll_s=0.2)
print("holding", flush=True)
time.sleep(600)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="the small model's folder (default: built from --like)")
    parser.add_argument("--like", help="a model folder whose tokenizer the built models take")
    parser.add_argument("--big", default="1.7b", choices=[*BIG, "none"], help="size of the SFT model")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"what to run, of {', '.join(PARTS)}")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    import torch

    from workbench.gpu_memory import devices

    cuda = torch.cuda.is_available()
    home = Path(tempfile.mkdtemp(prefix="wb-gpu-check-"))
    bench = Bench(home)
    gpus = devices(visible="")
    info = {"torch": torch.__version__, "cuda": cuda, "bf16": cuda and torch.cuda.is_bf16_supported(),
            "gpus": [g.__dict__ for g in gpus]}
    try:
        import bitsandbytes
        import transformers
        import trl

        info.update(bitsandbytes=bitsandbytes.__version__, transformers=transformers.__version__, trl=trl.__version__)
    except ImportError as exc:
        info["missing"] = str(exc)
    say("machine", info)

    started = time.time()
    like = Path(args.like or args.model)
    small = Path(args.model) if args.model else build_model(like, home / "src-small", BIG["135m"] if cuda else TINY,
                                                             "bfloat16" if cuda else "float32")
    big = None if args.big == "none" else build_model(like, home / "models" / "big", BIG[args.big] if cuda else TINY,
                                                       "bfloat16" if cuda else "float32")
    write_data(home / "data")
    bench.env["WORKBENCH_BASE_MODEL"] = str(small)
    say("models built", {"seconds": round(time.time() - started, 1), "small": str(small), "big": str(big)})

    worker = subprocess.Popen([sys.executable, "-m", "workbench.cli", "worker"], env=bench.env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(line.rstrip()) for line in worker.stdout], daemon=True).start()
    try:
        time.sleep(3)
        steps = str(args.steps)
        jobs = {}
        if big is not None and "train-big" in parts:  # a full model under models/ is named like any other
            jobs["sft qlora 4bit (big)"] = bench.queue("train", "sft", "--model", "big", "--quantization", "4bit",
                                                       "--max-steps", steps, "--output-name", "sft-qlora")
            jobs["sft lora bf16 (big)"] = bench.queue("train", "sft", "--model", "big", "--max-steps", steps,
                                                      "--output-name", "sft-lora")
        if "train-small" in parts:
            jobs["dpo (small)"] = bench.queue("train", "dpo", "--max-steps", steps, "--output-name", "dpo")
            jobs["reward (small)"] = bench.queue("train", "reward", "--max-steps", steps, "--output-name", "rm")
        seen_holders: set[str] = set()

        def watch():
            from storage import RunStore
            from workbench.monitor import gpu_holders

            seen_holders.update(gpu_holders(RunStore(home / "runs").list()))

        bench.wait(list(jobs.values()), during=watch)
        summaries = {name: bench.summary(run_id) for name, run_id in jobs.items()}
        say("training jobs", summaries)
        spans = sorted((bench.status(i)["started_at"], finished_at(bench.status(i)), i) for i in jobs.values())
        overlaps = [(a[2], b[2]) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
        say("one job per GPU", {"runs": len(spans), "overlapping": overlaps, "monitor_said": sorted(seen_holders)})

        if "limits" in parts:
            refused = bench.cli("train", "sft", "--num-processes", str(max(2, len(gpus) + 1)), "--queue", "--json",
                                check=False)
            say("num_processes over the GPU count", {"exit": refused.returncode, "message": refused.stderr.strip()[-400:]})

        if cuda and "room" in parts:
            for mode in ("answer", "stubborn"):
                stand_in = subprocess.Popen([sys.executable, "-c", STAND_IN, str(ROOT), str(home), "1.0", mode],
                                            stdout=subprocess.PIPE, text=True)
                try:
                    stand_in.stdout.readline()
                    free = devices(visible="")[0].free_gib
                    run_id = bench.queue("train", "sft", "--max-steps", "3", "--output-name", f"room-{mode}")
                    bench.wait([run_id], timeout=300)
                    log = (home / "runs" / run_id / "log.txt").read_text() if (home / "runs" / run_id / "log.txt").exists() else ""
                    say(f"GPU memory, web process {mode}", {
                        "free_gib_while_held": round(free, 2), **bench.summary(run_id),
                        "log": [line for line in log.splitlines() if "GPU memory" in line or "unload" in line][:4]})
                finally:
                    stand_in.kill()
                    stand_in.wait()

        if "pairs" not in parts:
            return
        prompts = "\n".join(f"Write a short note about topic number {i} for a new colleague." for i in range(32))
        pairs = json.loads(bench.cli("pairs", "create", "--text", prompts, "--temperature-a", "0.7",
                                     "--temperature-b", "1.0", "--max-new-tokens", "64", "--batch-size", "32",
                                     "--queue", "--json").stdout)
        run_id = pairs["id"]
        bench.wait([run_id], timeout=300)
        say("pair generation", bench.summary(run_id))
    finally:
        worker.terminate()
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        say("worker output (tail)", lines[-8:])
        say("total seconds", round(time.time() - started, 1))
        if not args.keep:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
