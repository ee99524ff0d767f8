"""A shared box with several users, each finding of the second security pass as a test: file
names confined to their folder, account changes that take effect at once, an upload quota on
the bytes received, throttling that holds under concurrency and forged headers, pages that do
not flood the logs, staged uploads that are their owner's alone, CSV and Markdown that cannot
bite, and size limits on every input."""
from __future__ import annotations

import http.client
import http.cookiejar
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import Process, cli, start_app_with_users, workspace_env

PEOPLE = {"alice": "admin", "tom": "trainer", "ann": "annotator", "vic": "viewer"}


def _opener():
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _post(opener, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, dict]:
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def _sign_in(opener, url: str, name: str, password: str | None = None, forwarded: str | None = None) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    return _post(opener, url + "login", f"username={name}&password={password or name + '-pw'}".encode(), headers)[0]


def _signed_in(url: str, name: str):
    opener = _opener()
    assert _sign_in(opener, url, name) == 200
    return opener


def _status(opener, url: str) -> int:
    try:
        return opener.open(url, timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code


def _multipart(filename: str, size: int, boundary: str = "shared-box-boundary") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _upload(opener, url: str, size: int, filename: str = "notes.jsonl") -> tuple[int, str]:
    body, kind = _multipart(filename, size)
    code, text, _ = _post(opener, url + "gradio_api/upload", body, {"Content-Type": kind})
    return code, text


def _jar(opener):
    return next(h.cookiejar for h in opener.handlers if isinstance(h, urllib.request.HTTPCookieProcessor))


def _cookie_header(opener) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in _jar(opener))


def _chunked_upload(opener, url: str, pieces: int, piece: int) -> int:
    """One upload sent with ``Transfer-Encoding: chunked`` (no Content-Length)."""
    boundary = "chunked-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.jsonl\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()

    def body():
        yield head
        for _ in range(pieces):
            yield b"y" * piece
        yield f"\r\n--{boundary}--\r\n".encode()

    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", "/gradio_api/upload", body=body(), encode_chunked=True,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                    "Cookie": _cookie_header(opener)})
        return connection.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        return 413  # the server answered and closed while the rest was still being sent
    finally:
        connection.close()


def _audit(tmp_path) -> list[dict]:
    path = tmp_path / "ws" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _loose_uploads(tmp_path) -> list[Path]:
    folder = tmp_path / "ws" / "cache" / "uploads"
    return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []


def _config(opener, url: str) -> dict:
    with opener.open(url + "config", timeout=30) as response:
        return json.loads(response.read())


def _call(opener, url: str, fn_index: int, data: list) -> tuple[int, dict]:
    code, text, _ = _post(opener, url + "gradio_api/run/predict",
                          json.dumps({"fn_index": fn_index, "data": data}).encode(),
                          {"Content-Type": "application/json"})
    return code, json.loads(text) if text.startswith("{") else {"raw": text}


# -- 1. one way to name a file from a request ------------------------------------------------

def test_a_file_name_resolves_inside_its_folder_or_is_refused_the_same_way(tmp_path):
    from storage import NameRefused, resolve_under

    data = tmp_path / "ws" / "data"
    (data / "sets").mkdir(parents=True)
    (data / "sets" / "q.jsonl").write_text("{}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.tsv").write_text("question\tsources\nS3CR3T\tx\n")
    (data / "link.tsv").symlink_to(outside / "secret.tsv")
    (data / "inner.jsonl").symlink_to(data / "sets" / "q.jsonl")

    assert resolve_under(data, "sets/q.jsonl") == (data / "sets" / "q.jsonl").resolve()
    assert resolve_under(data, "inner.jsonl") == (data / "sets" / "q.jsonl").resolve()  # a link that stays inside
    assert resolve_under(data, "new.jsonl", must_exist=False) == (data / "new.jsonl").resolve()

    def refusal(name: str, **kwargs) -> str:
        with pytest.raises(NameRefused) as caught:
            resolve_under(data, name, label="data/", **kwargs)
        return str(caught.value).replace(repr(name), "NAME")

    existing = [str(outside / "secret.tsv"), "../../outside/secret.tsv", "link.tsv", "sets/../../../outside/secret.tsv",
                "~/secret.tsv", "", "  ", "a\x00b", "..", "sets/.."]
    missing = [str(outside / "absent.tsv"), "../../outside/absent.tsv", "absent.tsv", "sets/../../../outside/absent.tsv"]
    assert {refusal(n) for n in existing + missing} == {"no file named NAME in data/"}
    assert refusal("../../outside/fresh.jsonl", must_exist=False) == "no file named NAME in data/"


def test_the_question_set_preview_and_the_dataset_check_refuse_names_outside_data(settings, tmp_path):
    from workbench.errors import WorkbenchError
    from workbench.evaluate.sets import append_question
    from workbench.train.data import data_file

    ws = settings.workspace.ensure()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "s.jsonl").write_text('{"question": "S3CR3T", "sources": ["a"]}\n')
    for name in (str(outside / "s.jsonl"), "../../outside/s.jsonl", "/etc/shadow"):
        with pytest.raises(WorkbenchError, match="no dataset named .* in data/") as caught:
            data_file(ws, name)
        assert "S3CR3T" not in str(caught.value)
        with pytest.raises(WorkbenchError, match="no question set named"):
            append_question(ws, name.replace("s.jsonl", "new.jsonl"), "Q?", ["a"])
    assert not (outside / "new.jsonl").exists()


# -- 2. accounts change at once ------------------------------------------------------------

def test_a_disabled_user_or_a_new_password_ends_sessions_on_their_next_request(env, start_process, tmp_path):
    url = start_app_with_users(env, start_process, tmp_path, {"alice": "admin", "victim": "annotator", "vic": "viewer"})
    victim, vic, alice = _signed_in(url, "victim"), _signed_in(url, "vic"), _signed_in(url, "alice")
    assert _status(victim, url + "config") == _status(vic, url + "config") == 200

    cli(env, "users", "disable", "victim")
    assert _status(victim, url + "config") == 401  # the old cookie no longer works
    assert _sign_in(_opener(), url, "victim") == 400
    cli(env, "users", "disable", "victim", "--enable")
    assert _sign_in(_opener(), url, "victim") == 200

    cookies = {c.name: c.value for c in _jar(vic)}
    cli(env, "users", "passwd", "vic", "--password-stdin", input="fresh-pw\n")
    secure = next(name for name in cookies if name.startswith("access-token-") and "unsecure" not in name)
    unsecure = next(name for name in cookies if "unsecure" in name)
    for header in (f"{secure}=; {unsecure}={cookies[unsecure]}",  # an empty first cookie, the token in the other
                   f"x=a b; {unsecure}={cookies[unsecure]}"):  # a cookie a strict parser gives up on
        request = urllib.request.Request(url + "config", headers={"Cookie": header})
        assert _status(urllib.request.build_opener(), request) == 401, header
    assert _status(vic, url + "config") == 401
    assert _sign_in(_opener(), url, "vic") == 400  # the old password
    assert _sign_in(_opener(), url, "vic", "fresh-pw") == 200
    assert _status(alice, url + "config") == 200  # nobody else was signed out

    auth_file = Path(env["WORKBENCH_AUTH_FILE"])
    good = auth_file.read_text()
    auth_file.write_text(json.dumps({"users": ["oops"]}))  # a broken edit: nobody signs in, not the old accounts
    assert _sign_in(_opener(), url, "alice") == 400 and _status(alice, url + "config") == 401
    auth_file.write_text(good)
    assert _sign_in(_opener(), url, "alice") == 200


# -- 3, 4, 5, 6, 8, 9 on one app, each test with users of its own ----------------------------

BOX_PEOPLE = {**PEOPLE, "una": "annotator", "tess": "trainer"}


@dataclass
class Box:
    url: str
    folder: Path
    users: dict  # name -> a urllib opener holding that user's session
    log: Path


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """One app with a 3 MB upload quota and every user signed in before any test throttles."""
    folder = tmp_path_factory.mktemp("box")
    env = workspace_env(folder)
    env["WORKBENCH_UPLOAD_QUOTA_MB"] = "3"
    started: list[Process] = []

    def start(args, env, name="proc"):
        started.append(Process(args, env, folder / f"{name}-{len(started)}.log"))
        return started[-1]

    try:
        url = start_app_with_users(env, start, folder, BOX_PEOPLE)
        yield Box(url, folder, {name: _signed_in(url, name) for name in BOX_PEOPLE}, started[0].log)
    finally:
        for process in started:
            process.stop()


def _fn(box: Box, api_name: str) -> int:
    return next(d["id"] for d in _config(box.users["alice"], box.url)["dependencies"] if d.get("api_name") == api_name)


def test_the_quota_counts_bytes_received_however_they_are_sent(box):
    url, users = box.url, box.users
    # no sign-in, no upload: answered before the body is read (1 GB announced, 1 KB sent)
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.putrequest("POST", "/gradio_api/upload")
    connection.putheader("Content-Type", "multipart/form-data; boundary=b")
    connection.putheader("Content-Length", str(2**30))
    connection.endheaders()
    connection.send(b"x" * 1024)
    assert connection.getresponse().status == 401
    connection.close()
    # one chunked upload without Content-Length carrying 8 x 900 KB
    assert _chunked_upload(users["tess"], url, pieces=8, piece=900 * 1024) == 413
    assert _loose_uploads(box.folder) == []
    # ten uploads at once pass together no more than the quota
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: _upload(users["una"], url, 900 * 1024)[0], range(10)))
    assert codes.count(200) == 3 and codes.count(413) == 7, codes
    # an upload Gradio refuses leaves nothing behind, nor counts
    assert _upload(users["tess"], url, 900 * 1024, filename="..")[0] == 400
    assert _loose_uploads(box.folder) == []
    assert [_upload(users["tess"], url, 900 * 1024)[0] for _ in range(3)] == [200] * 3
    refused = [e for e in _audit(box.folder) if e["action"] == "upload" and e["outcome"] == "refused"]
    assert {e["user"] for e in refused} == {"tess", "una"}


def test_a_staged_upload_is_its_owners_alone(box):
    url, users = box.url, box.users
    code, text = _upload(users["alice"], url, 100, filename="rows.jsonl")
    staged = json.loads(text)[0]
    assert code == 200 and Path(staged).is_file()
    import_sft = _fn(box, "import_sft")
    file_data = {"path": staged, "meta": {"_type": "gradio.FileData"}, "orig_name": "rows.jsonl"}
    code, answer = _call(users["ann"], url, import_sft, [file_data, "train", False, 0.0])
    assert "Permission denied" in json.dumps(answer), answer  # an annotator may not import: refused ...
    assert Path(staged).is_file()  # ... without deleting alice's file
    code, answer = _call(users["tom"], url, import_sft, [file_data, "train", False, 0.0])
    assert "not one of yours" in json.dumps(answer), answer  # a trainer may import, but not alice's file
    assert Path(staged).is_file() and not (box.folder / "ws" / "data" / "train.jsonl").exists()
    # nor can anyone else download it by its path; its owner can
    assert _status(users["vic"], url + f"gradio_api/file={staged}") == 404
    assert _status(users["alice"], url + f"gradio_api/file={staged}") == 200
    # a file argument given by URL is refused before the server fetches anything
    remote = {"path": "http://198.51.100.9/big.bin", "url": "http://198.51.100.9/big.bin",
              "meta": {"_type": "gradio.FileData"}}
    code, text, _ = _post(users["vic"], url + "gradio_api/queue/join",
                          json.dumps({"fn_index": import_sft, "data": [remote, "train", False, 0.0],
                                      "session_hash": "s"}).encode(), {"Content-Type": "application/json"})
    assert code == 400 and "not fetched from a URL" in text


def test_a_page_polls_nothing_its_role_may_not_use_and_repeated_refusals_are_counted(box):
    from gradio_client import Client

    url, vic = box.url, box.users["vic"]
    config = _config(vic, url)
    timer_ids = {c["id"] for c in config["components"] if c.get("type") == "timer"}
    ticks = [d["id"] for d in config["dependencies"]
             if any(target[0] in timer_ids and target[1] == "tick" for target in d["targets"])]
    page_state = [d["id"] for d in config["dependencies"] if any(t[1] == "load" for t in d["targets"])
                  and len(d["outputs"]) > 3]
    assert ticks and page_state
    before = len(_audit(box.folder))
    for fn in ticks:
        for _ in range(5):
            code, answer = _call(vic, url, fn, [None] * len(config["dependencies"][fn]["inputs"]))
            assert code == 200, answer
    assert len(_audit(box.folder)) == before  # the page's own polling records nothing
    code, answer = _call(vic, url, page_state[0], [])  # and the page load switches the Annotate timer off
    assert code == 200 and [u for u in answer["data"] if isinstance(u, dict) and u.get("active") is False], answer
    viewer = Client(url, auth=("vic", "vic-pw"), verbose=False)
    for _ in range(12):
        with pytest.raises(Exception, match="Permission denied"):
            viewer.predict(api_name="/next_pair")
    refusals = [e for e in _audit(box.folder)[before:] if e["user"] == "vic" and e["outcome"] == "refused"]
    assert len(refusals) == 1 and refusals[0]["action"] == "annotate"
    log = box.log.read_text(errors="replace")
    assert "Traceback" not in log and log.count("refused: user 'vic'") == 1


def test_bodies_are_capped_before_they_are_read(box):
    from gradio_client import Client

    parts = urlparse(box.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.putrequest("POST", "/login")
    connection.putheader("Content-Type", "application/x-www-form-urlencoded")
    connection.putheader("Content-Length", str(128 * 2**20))
    connection.endheaders()
    connection.send(b"username=x&password=" + b"p" * 1024)  # 128 MB announced, 1 KB sent
    assert connection.getresponse().status == 413  # answered without waiting for the rest
    connection.close()
    code, text, _ = _post(box.users["alice"], box.url + "gradio_api/queue/join", b"{" + b" " * (5 * 2**20) + b"}",
                          {"Content-Type": "application/json"})
    assert code == 413 and "over 4 MB" in text
    voter = Client(box.url, auth=("ann", "ann-pw"), verbose=False)
    with pytest.raises(Exception, match="413"):  # 5 MB: over the cap of any JSON call
        voter.predict("c" * 5_000_000, "", api_name="/vote_a")
    with pytest.raises(Exception, match="the comment is 100,000 characters long; the limit is 2,000"):
        voter.predict("c" * 100_000, "", api_name="/vote_a")


def test_every_answer_forbids_loading_from_other_hosts(box):
    for path in ("", "config", "gradio_api/info"):
        with box.users["alice"].open(box.url + path, timeout=30) as response:
            policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data: blob:" in policy and "script-src 'self'" in policy


def test_forwarded_for_is_not_believed_without_a_trusted_proxy(box):
    """A new X-Forwarded-For per attempt does not make a new address: spraying names from one
    address is throttled, and the audit log keeps the real address."""
    codes = [_sign_in(_opener(), box.url, f"spray{i}", "wrong", forwarded=f"203.0.113.{i}") for i in range(14)]
    assert codes[:10] == [400] * 10 and 429 in codes[10:], codes
    sprays = [e for e in _audit(box.folder) if e["action"] == "login" and e["user"].startswith("spray")]
    assert {e["address"] for e in sprays} == {"127.0.0.1"}


def test_attempts_sent_at_once_are_checked_no_more_often_than_in_a_row(box):
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: _sign_in(_opener(), box.url, "tom", "wrong"), range(60)))
    assert codes.count(400) <= 5 and codes.count(429) >= 55, codes


def test_a_trusted_proxy_gives_the_client_address_and_tls_makes_cookies_secure(env, start_process, tmp_path):
    env["WORKBENCH_TRUSTED_PROXIES"] = "127.0.0.1"
    url = start_app_with_users(env, start_process, tmp_path, {"ann": "annotator"})
    assert _sign_in(_opener(), url, "ann", "wrong", forwarded="198.51.100.7") == 400
    request = urllib.request.Request(url + "login", data=b"username=ann&password=ann-pw",
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "X-Forwarded-For": "198.51.100.8", "X-Forwarded-Proto": "https"})
    with _opener().open(request, timeout=30) as response:
        cookies = response.headers.get_all("Set-Cookie")
    assert cookies and all("secure" in [p.strip().lower() for p in c.split(";")] for c in cookies), cookies
    logins = [(e["outcome"], e["address"]) for e in _audit(tmp_path) if e["action"] == "login"]
    assert logins == [("failed", "198.51.100.7"), ("done", "198.51.100.8")]


# -- 7, 8, 9 in the core ---------------------------------------------------------------------

def test_scoreboard_csv_escapes_cells_a_spreadsheet_would_run(settings, wb):
    from storage import write_manifest

    ws = settings.workspace.ensure()
    folder = ws.models / "-2-3-cmd"
    folder.mkdir(parents=True)
    write_manifest(folder, {"name": "-2-3-cmd", "method": "sft", "base": "base", "dataset": "=HYPERLINK(\"x\")",
                            "metrics": {"eval_loss": -0.5}})
    code, out, err = wb("scoreboard", "--csv", "-")
    assert code == 0, err
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(out)))
    row = next(r for r in rows if "cmd" in r["model"])
    assert row["model"] == "'-2-3-cmd"
    assert all(not str(v).startswith(("=", "+", "@", "\t", "\r")) for r in rows for v in r.values()), rows


def test_a_file_argument_by_url_is_found_and_an_upload_with_its_link_is_not():
    from workbench.ui.file_guard import remote_file

    meta = {"_type": "gradio.FileData"}
    page_upload = {"path": "/ws/cache/uploads/ab12/notes.txt", "url": "http://127.0.0.1:7860/gradio_api/file=/ws/x",
                   "meta": meta}  # what the page sends for a file it uploaded
    assert remote_file({"data": [[page_upload], "train", 0.5]}) is None
    assert remote_file({"data": [[page_upload, {"path": " HTTPS://host/big.bin", "meta": meta}]]}) == " HTTPS://host/big.bin"
    assert remote_file({"data": [{"path": "http://host/a", "meta": {"_type": "other"}}]}) is None


def test_markdown_from_documents_and_answers_loads_nothing_and_runs_nothing():
    from workbench.chat.sources import sources_markdown
    from workbench.safe_text import csv_cell, display_name, safe_markdown

    hostile = 'Voir <img src="http://host/track.png"> et ![pixel](http://host/t.png) <script>x()</script>'
    shown = safe_markdown(hostile + "\n\n```html\n<b>code stays as written</b>\n```")
    assert "<img" not in shown and "<script" not in shown and "![" not in shown
    assert "<b>code stays as written</b>" in shown  # inside a fence Markdown shows it as text anyway
    cited = sources_markdown([{"source": "![x](http://host/a.png).pdf", "page": 2, "score": 0.5, "text": hostile}])
    assert "<img" not in cited and "![" not in cited and "pixel" in cited
    for trick in ("\\`<img src=http://h/a.png>`", "``<img src=http://h/a.png>`", "```\nx\n````\n<img src=http://h/a.png>",
                  "    ```\n<img src=http://h/a.png>\n```", "```x`\n<img src=http://h/a.png>"):
        assert "<img" not in safe_markdown(trick), trick  # none of these is code in CommonMark
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("-0.25") == "-0.25" and csv_cell(0.5) == 0.5
    assert csv_cell("\uff1dSUM(A1)") == "'\uff1dSUM(A1)" and csv_cell("\n=1") == "'\n=1"
    assert display_name("facture\u202eexe.pdf") == "factureexe.pdf"


def test_typed_input_and_names_have_limits_and_nothing_is_saved_past_them(settings, tmp_path):
    from workbench.auth import add_user
    from workbench.corpus.library import add_paths
    from workbench.errors import WorkbenchError
    from workbench.feedback.annotation import cast_vote, create_pairs, pair_store
    from workbench.feedback.pairs import Side, make_pair
    from workbench.limits import PROMPTS_PER_REQUEST

    ws = settings.workspace.ensure()
    pair = make_pair("Quelle est la capitale ?", "typed", Side("base", 0.0, 16, "Paris."), Side("base", 0.7, 16, "Lyon."))
    pair_store(ws).add([pair])
    with pytest.raises(WorkbenchError, match="the comment is 5,000,000 characters long"):
        cast_vote(ws, pair, "ann", "a", comment="é" * 5_000_000)
    with pytest.raises(WorkbenchError, match="the written answer is"):
        cast_vote(ws, pair, "ann", "a", edited_answer="x" * 30_000)
    assert not ws.feedback_file.exists()
    cast_vote(ws, pair, "ann", "a", comment="Bonne réponse, fidèle au texte source.")
    assert "fidèle" in ws.feedback_file.read_text(encoding="utf-8")
    with pytest.raises(WorkbenchError, match="prompts; the limit is 1,000"):
        create_pairs(settings, ["Q"] * (PROMPTS_PER_REQUEST + 1), "typed", Side("base", 0.0), Side("base", 0.8))
    with pytest.raises(ValueError, match="text-direction"):
        add_user(tmp_path / "users.json", "admin\u202e", "pw", "viewer")
    doc = tmp_path / "note.txt"
    doc.write_text("Du texte.")
    added = add_paths(ws, [doc], 10**6, names=["rapport\u202etxt.exe.txt"])
    assert added[0].doc["name"] == "rapporttxt.exe.txt"


def test_no_code_is_fetched_from_the_hub_when_a_model_loads():
    """transformers kernelizes a model on a GPU with kernels fetched from the Hub when the kernels
    package is there (it is here: transformers requires it); the workbench turns that off unless
    the machine's owner turns it on."""
    import os
    import subprocess
    import sys

    code = ("import os, workbench; from transformers.integrations.hub_kernels import _kernels_enabled; "
            "print(os.environ['USE_HUB_KERNELS'], _kernels_enabled())")
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}

    def run() -> list[str]:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              check=True).stdout.split()

    assert run() == ["NO", "False"]
    env["USE_HUB_KERNELS"] = "YES"
    assert run() == ["YES", "True"]


def test_libraries_fetch_no_compiled_code_from_the_hub_on_their_own():
    """bitsandbytes asks the kernels package for a Hub kernel when it is imported (on CPUs with
    AVX512-BF16), and transformers' GGUF loader asks for others, whatever USE_HUB_KERNELS says:
    in a workbench process every way kernels has to the Hub refuses, a copy of its fetcher taken
    before the workbench was imported included, and bitsandbytes keeps its own code; the owner's
    USE_HUB_KERNELS=YES gives kernels its resolvers back."""
    import os
    import subprocess
    import sys

    code = """
import kernels, transformers.integrations.hub_kernels as early  # a fetcher copied before the guard
import workbench
asks = {
    "get_kernel": lambda: kernels.get_kernel("kernels-community/quantization-bitsandbytes", version=1),
    "copied": lambda: early.get_kernel_hub("ggml-org/ggml-quantization", version=1),
    "layer": lambda: kernels.LayerRepository(repo_id="ggml-org/ggml-norm", layer_name="N", version=1).load(),
}
for name, ask in asks.items():
    try:
        ask()
    except Exception as exc:
        print(name, type(exc).__name__, exc)
import bitsandbytes.functional
print("avx512bf16", bitsandbytes.functional.has_avx512bf16())
"""
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    env["HF_HUB_OFFLINE"] = "1"  # a guard that failed would show here as the Hub's offline error

    def run() -> str:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return proc.stdout + proc.stderr

    out = run()
    for name, repo in (("get_kernel", "kernels-community/quantization-bitsandbytes"),
                       ("copied", "ggml-org/ggml-quantization"), ("layer", "ggml-org/ggml-norm")):
        assert f"{name} HubKernelRefused Hub kernel '{repo}' refused" in out, out
    assert "USE_HUB_KERNELS=YES" in out and "offline" not in out.lower()
    if "avx512bf16 True" in out:  # bitsandbytes asked at import, was refused, and kept its own code
        assert ("Failed to load CPU gemm_4bit_forward from kernels-community: Hub kernel "
                "'kernels-community/quantization-bitsandbytes' refused") in out
    env["USE_HUB_KERNELS"] = "YES"
    allowed = run()
    assert "HubKernelRefused" not in allowed and allowed.count("offline") >= 3  # the Hub's own answer, offline
