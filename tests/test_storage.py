"""Workspace storage: atomic status, unreadable records, locked JSONL appends, the reaper."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from storage import JsonlError, RunStore, Unreadable, Workspace, append_jsonl, read_json, read_jsonl
from storage.paths import safe_name
from jobs.reaper import reap
from storage.runs import FAILED, RUNNING, WORKER_LOST


def test_corrupted_status_is_unreadable_for_that_run_only(tmp_path):
    store = RunStore(tmp_path / "runs")
    good = store.create("selftest", {"steps": 3}, "gpu")
    bad = store.create("selftest", {"steps": 3}, "gpu")
    (bad.folder / "status.json").write_text('{"status": "runn')  # half-written
    listing = {r["id"]: r for r in store.list()}
    assert listing[bad.id]["status"] == "unreadable"
    assert "corrupted JSON" in listing[bad.id]["error"]
    assert listing[good.id]["status"] == "queued"
    assert isinstance(bad.status(), Unreadable)


def test_status_updates_are_atomic_and_transitions_guarded(tmp_path):
    run = RunStore(tmp_path / "runs").create("selftest", {}, "gpu")
    assert run.transition({"queued"}, RUNNING, pid=1)
    assert not run.transition({"queued"}, RUNNING)  # already running: refused
    run.update(progress={"done": 1, "total": 2})
    assert run.status()["progress"] == {"done": 1, "total": 2}
    assert not list(run.folder.glob(".status.json.*.tmp"))


def _append_many(path, worker_id, count):
    for i in range(count):
        append_jsonl(path, [{"worker": worker_id, "i": i, "pad": "x" * 2000}])


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "votes.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, w, 40)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = read_jsonl(path)
    assert len(rows) == 240
    assert {(r["worker"], r["i"]) for r in rows} == {(w, i) for w in range(6) for i in range(40)}


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\nnot json\n[1, 2]\n')
    with pytest.raises(JsonlError) as err:
        read_jsonl(path)
    assert err.value.line_no == 3 and "invalid JSON" in str(err.value)
    assert read_jsonl(path, strict=False) == [{"a": 1}, {"a": 2}]
    path.write_bytes(b'{"a": 1}\n\xff\xfe\n')
    with pytest.raises(JsonlError, match="line 2: not UTF-8"):
        read_jsonl(path)


def test_reaper_marks_runs_of_dead_workers_and_spares_live_ones(tmp_path):
    store = RunStore(tmp_path / "runs")
    dead = store.create("selftest", {}, "gpu")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead.transition({"queued"}, RUNNING, pid=child.pid, host=os.uname().nodename, started="2020-01-01T00:00:00+00:00")
    dead.beat()
    checkpoint = dead.checkpoint_dir(5)
    dead.mark_complete(checkpoint)
    dead.checkpoint_dir(9)  # incomplete: never chosen for resume
    alive = store.create("selftest", {}, "gpu")
    alive.transition({"queued"}, RUNNING, pid=os.getpid(), host=os.uname().nodename)
    alive.beat()
    assert reap(store, stale_after=60) == [dead.id]
    status = dead.status()
    assert status["status"] == FAILED and status["error"] == WORKER_LOST and status["resumable"]
    assert dead.latest_checkpoint() == checkpoint
    assert alive.status()["status"] == RUNNING


def test_stale_heartbeat_from_another_host_is_reaped(tmp_path):
    store = RunStore(tmp_path / "runs")
    run = store.create("selftest", {}, "gpu")
    run.transition({"queued"}, RUNNING, pid=123, host="another-host")
    (run.folder / "heartbeat.json").write_text(json.dumps({"time": 0, "pid": 123, "host": "another-host"}))
    assert reap(store, stale_after=10) == [run.id]


def test_workspace_names_cannot_escape(tmp_path):
    ws = Workspace(tmp_path)
    assert safe_name("../../etc/passwd") == "-..-etc-passwd"
    assert ws.model_dir("../x").parent == ws.models
    assert not ws.contains(tmp_path.parent / "other")
    with pytest.raises(ValueError):
        safe_name("..")
    with pytest.raises(KeyError):
        RunStore(tmp_path / "runs").get("../secrets")
    assert read_json(tmp_path / "missing.json", default={}) == {}


def test_atomic_files_keep_the_mode_of_the_file_they_replace(tmp_path):
    from storage.atomic import write_json_atomic

    fresh = tmp_path / "fresh.json"
    write_json_atomic(fresh, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    shared.chmod(0o640)
    write_json_atomic(shared, {"b": 2})
    assert shared.stat().st_mode & 0o777 == 0o640 and read_json(shared) == {"b": 2}
    secret = tmp_path / "users.json"
    write_json_atomic(secret, {"users": []}, file_mode=0o600)
    assert secret.stat().st_mode & 0o777 == 0o600
