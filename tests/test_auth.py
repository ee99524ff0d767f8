"""Basic auth with roles: API routes refuse anonymous calls, and an annotator cannot launch jobs
even by calling the handler directly through gradio_client."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from storage import RunStore
from tests.conftest import cli, start_app_with_users
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

    url = start_app_with_users(env, start_process, tmp_path, {"alice": "admin", "ann": "annotator"})
    with pytest.raises(Exception, match="(?i)login|auth|401|credentials"):
        Client(url, auth=("ann", "wrong-pw"), verbose=False)

    annotator = Client(url, auth=("ann", "ann-pw"), verbose=False)
    admin = Client(url, auth=("alice", "alice-pw"), verbose=False)
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
    # an annotator votes, but starts no generation and imports no data
    with pytest.raises(Exception, match="Permission denied"):
        annotator.predict("typed", "Name a colour.", None, "ghost", 0.0, "ghost", 0.5, 16, None, False, 3,
                          api_name="/create_pairs")
    with pytest.raises(Exception, match="unknown model 'ghost'"):  # the admin's call gets past the check
        admin.predict("typed", "Name a colour.", None, "ghost", 0.0, "ghost", 0.5, 16, None, False, 3,
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


# Every API endpoint the app lists, and the action its handler must check (workbench.auth.ACTIONS
# says which roles hold it). A new endpoint fails the walk below until it is added here.
ENDPOINTS = {
    "/upload_documents": "corpus", "/delete_document": "corpus", "/reindex": "corpus", "/snapshot": "view",
    "/search": "chat", "/ask": "chat", "/send_to_annotate": "chat", "/unload_models": "unload",
    "/save_system_prompt": "system_prompt",
    "/vote_a": "annotate", "/vote_b": "annotate", "/vote_tie": "annotate", "/vote_both_bad": "annotate",
    "/undo_vote": "annotate", "/next_pair": "annotate", "/create_pairs": "generate", "/merge_feedback": "data",
    "/vote": "annotate", "/save_guidelines": "data", "/save_pair_set": "data", "/make_gold_pairs": "data",
    "/score_pairs": "generate", "/arena": "generate",
    "/train_estimate": "launch", "/train_launch": "launch", "/import_sft": "data", "/sft_from_feedback": "data",
    "/eval_scoreboard": "view", "/eval_export_csv": "view", "/eval_compare": "view", "/eval_report": "view",
    "/eval_find_chunks": "chat", "/eval_add_question": "data", "/eval_launch": "launch",
    "/refresh": "view", "/refresh_1": "view", "/refresh_2": "view", "/pick_row": "view",
    "/cancel_run": "cancel", "/resume_run": "launch", "/delete_run": "delete", "/launch_selftest": "launch",
    "/audit_log": "audit",
}
PEOPLE = {"alice": "admin", "tom": "trainer", "ann": "annotator", "vic": "viewer"}


@pytest.mark.slow(26)
def test_every_endpoint_checks_its_role_and_sign_ins_are_throttled_and_audited(env, start_process, tmp_path):
    """Each endpoint gradio_client lists is called by each role: refused exactly when the role
    lacks the endpoint's action. Refusals, launches and sign-ins land in the audit log, which only
    an admin reads. Then 30 wrong passwords in a row: a few are checked, the rest wait, and the
    right password waits too."""
    from gradio_client import Client

    from workbench.auth import PERMISSIONS

    url = start_app_with_users(env, start_process, tmp_path, PEOPLE)
    clients = {name: Client(url, auth=(name, f"{name}-pw"), verbose=False) for name in PEOPLE}
    listed = clients["alice"].view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(listed) == set(ENDPOINTS), "endpoints without a known action: update ENDPOINTS and check their handlers"
    wrong = []
    for endpoint, info in listed.items():
        missing = {p["parameter_name"]: None for p in info["parameters"] if not p.get("parameter_has_default")}
        for name, role in PEOPLE.items():
            try:
                clients[name].predict(**missing, api_name=endpoint)
                refused = False
            except TypeError as exc:  # the client refused the call: the server never saw it
                wrong.append((endpoint, role, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - any error but a refusal means the check passed
                refused = "Permission denied" in str(exc)
            if refused != (ENDPOINTS[endpoint] not in PERMISSIONS[role]):
                wrong.append((endpoint, role, "refused" if refused else "allowed"))
    assert wrong == [], wrong

    entries = clients["alice"].predict(api_name="/audit_log")
    log = [dict(zip(entries["headers"], row)) for row in entries["data"]]
    assert any(e["user"] == "ann" and e["action"] == "generate" and e["outcome"] == "refused" for e in log)
    assert any(e["user"] == "vic" and e["action"] == "audit" and e["outcome"] == "refused" for e in log)
    assert any(e["user"] == "tom" and e["action"] == "launch" and e["detail"] == "selftest" for e in log)
    assert {e["user"] for e in log if e["action"] == "login" and e["outcome"] == "done"} == set(PEOPLE)

    def sign_in(password: str) -> int:
        request = urllib.request.Request(url + "login", data=f"username=ann&password={password}".encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            return urllib.request.urlopen(request, timeout=10).status
        except urllib.error.HTTPError as exc:
            return exc.code

    answers = [sign_in("wrong") for _ in range(30)]
    assert answers.count(400) <= 6 and answers.count(429) >= 24, answers
    assert sign_in("ann-pw") == 429
    lines = [json.loads(line) for line in (tmp_path / "ws" / "audit.jsonl").read_text().splitlines()]
    assert sum(e["action"] == "login" and e["outcome"] == "throttled" for e in lines) >= 25


def test_throttle_backs_off_then_locks_the_pair_out_and_a_success_clears_it():
    from workbench import login_throttle as lt

    now = [1000.0]
    throttle = lt.LoginThrottle(clock=lambda: now[0])
    for _ in range(lt.FREE_FAILURES):
        assert throttle.begin("bob", "10.0.0.1").allowed
        throttle.finish("bob", "10.0.0.1", False)
    assert throttle.check("bob", "10.0.0.2").allowed  # a clean address is not held back by the name ...
    assert throttle.begin("bob", "10.0.0.2").allowed
    throttle.finish("bob", "10.0.0.2", False)
    verdict = throttle.check("bob", "10.0.0.2")  # ... until it fails as that name: then the name's delay holds
    assert not verdict.allowed and verdict.reason == "backoff" and verdict.wait_s == 2.0
    assert throttle.check("eve", "10.0.0.1").allowed  # another name from that address is not held back
    locked = False
    while not locked:
        now[0] += lt.MAX_DELAY_S
        assert throttle.begin("bob", "10.0.0.1").allowed
        locked = throttle.finish("bob", "10.0.0.1", False)
    verdict = throttle.check("bob", "10.0.0.1")
    assert verdict.reason == "locked" and verdict.wait_s == lt.LOCKOUT_S
    # the name is never locked: bob signs in at once from an address that has not failed
    assert throttle.begin("bob", "10.0.0.7").allowed
    throttle.finish("bob", "10.0.0.7", True)
    assert throttle.check("bob", "10.0.0.7").allowed and throttle.check("bob", "10.0.0.1").reason == "locked"
    now[0] += lt.LOCKOUT_S + 1
    assert throttle.begin("bob", "10.0.0.1").allowed
    throttle.finish("bob", "10.0.0.1", True)
    assert throttle.check("bob", "10.0.0.1").allowed and throttle.check("bob", "10.0.0.1").wait_s == 0


def test_attempts_let_through_at_once_are_counted_before_they_are_checked():
    """``begin`` decides and counts in one step: sixty attempts that start together are let
    through no more often than sixty in a row."""
    from concurrent.futures import ThreadPoolExecutor

    from workbench import login_throttle as lt

    throttle = lt.LoginThrottle(clock=lambda: 5000.0)
    with ThreadPoolExecutor(16) as pool:
        verdicts = list(pool.map(lambda _: throttle.begin("admin", "10.0.0.9"), range(60)))
    assert sum(v.allowed for v in verdicts) == lt.FREE_FAILURES


def test_unknown_and_disabled_names_cost_the_same_scrypt_and_users_commands(env, tmp_path, monkeypatch):
    import hashlib

    path = tmp_path / "users.json"
    env["WORKBENCH_AUTH_FILE"] = str(path)
    cli(env, "users", "add", "ann", "--role", "annotator", "--password-stdin", input="ann-pw\n")
    cli(env, "users", "add", "vic", "--role", "viewer", "--password-stdin", input="vic-pw\n")
    cli(env, "users", "passwd", "vic", "--role", "trainer", "--password-stdin", input="new-pw\n")
    cli(env, "users", "disable", "ann")
    listed = json.loads(cli(env, "users", "list", "--json").stdout)
    assert listed == [{"username": "ann", "role": "annotator", "disabled": True},
                      {"username": "vic", "role": "trainer", "disabled": False}]
    assert "password_hash" not in cli(env, "users", "list").stdout
    users = Users(path)
    calls = []
    real = hashlib.scrypt
    monkeypatch.setattr(hashlib, "scrypt", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert users.verify("vic", "new-pw") and not users.verify("vic", "vic-pw")
    assert not users.verify("ann", "ann-pw") and not users.verify("nobody", "x")  # disabled, unknown
    assert len(calls) == 4  # one scrypt each, known or not
    cli(env, "users", "disable", "ann", "--enable")
    assert Users(path).verify("ann", "ann-pw")
    result = cli(env, "users", "passwd", "ghost", "--password-stdin", input="x\n", check=False)
    assert result.returncode != 0 and "no user 'ghost'" in result.stderr


@pytest.mark.parametrize("access, folder, file", [("private", 0o700, 0o600), ("group", 0o770, 0o660)])
def test_workspace_files_are_closed_to_other_users(env, tmp_path, access, folder, file):
    """A process started by the CLI or the app closes the workspace folder and creates files and
    folders for its user (and group) only: run records, the queue, the audit log."""
    import os
    import stat

    env["WORKBENCH_FILE_ACCESS"] = access
    home = tmp_path / "ws"
    home.mkdir(mode=0o755)
    run_id = cli(env, "selftest", "--steps", "1", "--queue").stdout.strip().splitlines()[-1]
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(home) == folder
    assert mode(home / "runs" / run_id) == folder
    assert {mode(p) for p in (home / "runs" / run_id).iterdir() if p.is_file()} == {file}
    assert mode(home / "audit.jsonl") == file and mode(home / "queue.db") == file
    env["WORKBENCH_FILE_ACCESS"] = "everyone"
    result = cli(env, "jobs", "list", check=False)
    assert result.returncode == 2 and "choose private or group" in result.stderr


def _signed_in(url: str, name: str):
    """A urllib opener holding ``name``'s session cookie."""
    import http.cookiejar

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    opener.open(urllib.request.Request(url + "login", data=f"username={name}&password={name}-pw".encode(),
                                       headers={"Content-Type": "application/x-www-form-urlencoded"}), timeout=10)
    return opener


def _upload(opener, url: str, size: int) -> tuple[int, str]:
    boundary = "workbench-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"notes.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "gradio_api/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_each_user_has_an_upload_quota_and_a_refusal_is_audited(env, start_process, tmp_path):
    env["WORKBENCH_UPLOAD_QUOTA_MB"] = "1"
    url = start_app_with_users(env, start_process, tmp_path, {"ann": "annotator", "bob": "annotator"})
    ann, bob = _signed_in(url, "ann"), _signed_in(url, "bob")
    size = 600 * 1024
    assert _upload(ann, url, size)[0] == 200
    code, detail = _upload(ann, url, size)
    assert code == 413 and "Upload quota reached: 0.6 MB uploaded in the last 24 h" in detail, detail
    assert _upload(bob, url, size)[0] == 200  # the quota is per user
    anonymous = urllib.request.build_opener()
    assert _upload(anonymous, url, 10)[0] == 401  # and no sign-in, no upload at all
    lines = [json.loads(line) for line in (tmp_path / "ws" / "audit.jsonl").read_text().splitlines()]
    refused = [e for e in lines if e["action"] == "upload" and e["outcome"] == "refused"]
    assert [e["user"] for e in refused] == ["ann"]


def test_the_upload_ledger_forgets_after_the_window():
    from workbench.ui.upload_quota import UploadLedger

    now = [1000.0]
    ledger = UploadLedger(quota_bytes=100, window_s=60, clock=lambda: now[0])
    assert ledger.charge("ann", 80) is None
    assert "Upload quota reached" in ledger.charge("ann", 30)
    assert ledger.charge("bob", 30) is None
    now[0] += 61
    assert ledger.used("ann") == 0 and ledger.charge("ann", 100) is None


def test_sign_ins_from_the_login_page_are_audited_and_throttled_by_name(env, start_process, tmp_path):
    """Gradio's login page posts multipart forms (API clients post URL-encoded ones): the guard
    reads the user name from either."""
    url = start_app_with_users(env, start_process, tmp_path, {"ann": "annotator"})
    boundary = "workbench-login-boundary"

    def sign_in(password: str) -> int:
        body = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n{value}\r\n"
                       for key, value in (("username", "ann"), ("password", password))) + f"--{boundary}--\r\n"
        request = urllib.request.Request(url + "login", data=body.encode(),
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            return urllib.request.urlopen(request, timeout=10).status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert sign_in("ann-pw") == 200
    answers = [sign_in("wrong") for _ in range(8)]
    assert answers[0] == 400 and 429 in answers
    lines = [json.loads(line) for line in (tmp_path / "ws" / "audit.jsonl").read_text().splitlines()]
    logins = [(e["user"], e["outcome"]) for e in lines if e["action"] == "login"]
    assert logins[0] == ("ann", "done") and ("ann", "failed") in logins and ("ann", "throttled") in logins
    assert all(user == "ann" for user, _ in logins)
