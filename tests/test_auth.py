"""Basic auth with roles: API routes refuse anonymous calls, and an annotator cannot launch jobs
even by calling the handler directly through gradio_client."""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import pytest

from storage import RunStore
from tests.conftest import cli, free_port, wait_for
from workbench.auth import Users, hash_password, verify_password


def test_password_hashes_verify_and_roles_gate_actions(tmp_path):
    stored = hash_password("s3cret")
    assert verify_password("s3cret", stored) and not verify_password("wrong", stored)
    assert Users(None).get(None).can("launch")  # no auth file: one local admin
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"username": "ann", "password_hash": stored, "role": "annotator"}]}))
    users = Users(path)
    assert users.verify("ann", "s3cret") and not users.verify("ann", "x") and not users.verify("bob", "s3cret")
    assert not users.get("ann").can("launch") and users.get("ann").can("annotate")
    path.write_text(json.dumps({"users": [{"username": "x", "password_hash": stored, "role": "root"}]}))
    with pytest.raises(ValueError, match="role"):
        Users(path)


def test_annotator_is_refused_when_calling_a_launch_handler(env, start_process, tmp_path):
    from gradio_client import Client

    auth_file = tmp_path / "users.json"
    env["WORKBENCH_AUTH_FILE"] = str(auth_file)
    cli(env, "users", "add", "alice", "--role", "admin", "--password-stdin", input="alice-pw\n")
    cli(env, "users", "add", "ann", "--role", "annotator", "--password-stdin", input="ann-pw\n")
    port = free_port()
    env["WORKBENCH_PORT"] = str(port)
    app = start_process([sys.executable, "app.py", "--no-worker"], env, "app")
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
    with pytest.raises(Exception, match="(?i)login|auth|401|credentials"):
        Client(url, auth=("ann", "wrong-pw"), verbose=False)

    annotator = Client(url, auth=("ann", "ann-pw"), verbose=False)
    with pytest.raises(Exception, match="Permission denied"):
        annotator.predict(5, api_name="/launch_selftest")
    with pytest.raises(Exception, match="Permission denied"):
        annotator.predict("any-run", api_name="/cancel_run")
    with pytest.raises(Exception, match="Permission denied"):  # the other form fields keep their defaults
        annotator.predict("sft", api_name="/train_launch")
    store = RunStore(tmp_path / "ws" / "runs")
    assert store.list() == []
    done = store.create("selftest", {"steps": 1}, "gpu")
    done.transition({"queued"}, "succeeded")
    with pytest.raises(Exception, match="Permission denied"):
        annotator.predict(done.id, api_name="/delete_run")
    assert done.folder.exists()

    from gradio_client import handle_file

    doc = tmp_path / "notes.txt"
    doc.write_text("Notes worth keeping.")
    with pytest.raises(Exception, match="Permission denied"):
        annotator.predict([handle_file(str(doc))], api_name="/upload_documents")
    assert not (tmp_path / "ws" / "data" / "documents.json").exists()
    # Gradio stored the upload before the handler ran; the refusal deleted it
    assert not [p for p in (tmp_path / "ws" / "cache" / "uploads").rglob("notes.txt")]

    admin = Client(url, auth=("alice", "alice-pw"), verbose=False)
    message = admin.predict([handle_file(str(doc))], api_name="/upload_documents")[0]
    assert "notes.txt: added" in message and "Indexing 1 document(s)" in message
    registry = json.loads((tmp_path / "ws" / "data" / "documents.json").read_text())["documents"]
    assert [d["name"] for d in registry] == ["notes.txt"]
    with pytest.raises(Exception, match="Permission denied"):
        annotator.predict(registry[0]["id"], api_name="/delete_document")
    assert (tmp_path / "ws" / "data" / "documents" / registry[0]["file"]).exists()
    assert not any(r["kind"] == "corpus.delete" for r in store.list())
    assert any(r["kind"] == "corpus.ingest" and r["user"] == "alice" for r in store.list())
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    # an annotator annotates (the model check runs, so the permission passed) but imports no data
    with pytest.raises(Exception, match="unknown model 'ghost'"):
        annotator.predict("typed", "Name a colour.", None, "ghost", 0.0, "ghost", 0.5, 16, None, False, 3,
                          api_name="/create_pairs")
    with pytest.raises(Exception, match="Permission denied"):
        annotator.predict(handle_file(str(rows)), "train", False, 0.0, api_name="/import_sft")
    assert not [p for p in (tmp_path / "ws" / "cache" / "uploads").rglob("rows.jsonl")]
    assert not (tmp_path / "ws" / "data" / "train.jsonl").exists()

    run_id = admin.predict(5, api_name="/launch_selftest")
    run = store.get(run_id)
    assert run.status()["status"] == "queued" and run.status()["user"] == "alice"
    assert run.config()["config"]["steps"] == 5
    admin.predict(done.id, api_name="/delete_run")
    assert not done.folder.exists()
    with pytest.raises(Exception, match="queued"):
        admin.predict(run_id, api_name="/delete_run")  # an active run must be cancelled first

    message = admin.predict(registry[0]["id"], api_name="/delete_document")[0]
    assert "Deleting **notes.txt**" in message
    deletes = [r for r in store.list() if r["kind"] == "corpus.delete"]
    assert [(r["user"], r["status"]) for r in deletes] == [("alice", "queued")]
