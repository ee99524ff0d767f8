"""Run parse_file in a child process with a time limit and a memory limit.

A hostile or broken file can make a parser spin or allocate without end; the child takes the
blow instead of the web or worker process. The child is ``python -m workbench.corpus.sandbox
PATH`` (a fresh interpreter that imports only parse.py) and answers with one JSON document on
stdout: a list of blocks, or ``{"error": ..., "kind": ...}``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from workbench.corpus.parse import Block, ParseError, parse_file

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_MEMORY_HINTS = ("MemoryError", "Cannot allocate memory", "out of memory", "bad_alloc")


def parse_isolated(
    path: Path, *, timeout_s: float = 60.0, memory_mb: int = 2048, max_bytes: int | None = None
) -> list[Block]:
    """parse_file in a child process; ParseError on a parse failure, timeout or memory exhaustion."""
    command = [sys.executable, "-m", "workbench.corpus.sandbox", str(Path(path).resolve()),
               "--memory-mb", str(memory_mb)]
    if max_bytes is not None:
        command += ["--max-bytes", str(max_bytes)]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            env=_child_env(), start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ParseError(f"parsing took longer than {timeout_s:g} s") from None
        finally:
            if proc.poll() is None:  # interrupted in the parent: never leave the child behind
                _kill_group(proc)
        stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - 4000))
        err_tail = stderr.read().decode("utf-8", "replace")
    return _decode_reply(out, proc.returncode, err_tail, memory_mb)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child must import this very package even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _decode_reply(out: bytes, returncode: int, err_tail: str, memory_mb: int) -> list[Block]:
    out_of_memory = ParseError(f"parsing needed more than {memory_mb} MB of memory")
    try:
        reply = json.loads(out) if out else None
    except ValueError:
        reply = None
    if isinstance(reply, list):
        return [Block(**b) for b in reply]
    if isinstance(reply, dict):
        if reply.get("kind") == "memory":
            raise out_of_memory
        if reply.get("kind") == "parse":
            raise ParseError(reply["error"])
        raise ParseError(f"unexpected error while parsing: {reply.get('error')}")
    # No reply at all: the child died. SIGKILL that we did not send is the kernel's OOM killer.
    if returncode == -signal.SIGKILL or any(hint in err_tail for hint in _MEMORY_HINTS):
        raise out_of_memory
    if returncode < 0:
        raise ParseError(f"the parser crashed ({signal.Signals(-returncode).name})")
    last_line = err_tail.strip().splitlines()[-1:] or [f"exit code {returncode}"]
    raise ParseError(f"the parser failed: {last_line[0][:200]}")


def _limit_memory(memory_mb: int) -> None:
    import resource

    limit = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _child_reply(path: Path, max_bytes: int | None) -> object:
    try:
        return [asdict(b) for b in parse_file(path, max_bytes)]
    except ParseError as e:
        return {"error": str(e), "kind": "parse"}
    except MemoryError:
        return {"error": "out of memory", "kind": "memory"}
    except Exception as e:  # noqa: BLE001 - reported to the parent as a short ParseError
        message = " ".join(str(e).split())[:200]
        return {"error": f"{type(e).__name__}: {message}".rstrip(": "), "kind": "unexpected"}


def main(argv: list[str] | None = None) -> int:
    """Child entry point: parse one file and print the JSON reply."""
    parser = argparse.ArgumentParser(description="Parse one file; print JSON blocks.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--max-bytes", type=int, default=None)
    args = parser.parse_args(argv)
    # Set here rather than in a preexec_fn: preexec_fn is unsafe in the threaded web process.
    _limit_memory(args.memory_mb)
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # one warning per broken object adds up
    reply_to = sys.stdout.buffer
    sys.stdout = sys.stderr  # a library's print() must not corrupt the JSON reply
    data = json.dumps(_child_reply(args.path, args.max_bytes), ensure_ascii=False)
    reply_to.write(data.encode("utf-8"))
    reply_to.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
