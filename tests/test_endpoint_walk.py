"""No handler reads outside the workspace. Every dependency ``/config`` lists (named API endpoints,
and the unnamed ones the page calls by ``fn_index``) is called, as each role, with path-traversal
strings in its text arguments. Neither the content nor the existence of a canary planted next to the
workspace may show in any answer.

Content leaks when the canary's random token is in a response. Existence leaks when a path to the
canary is answered differently from the same path naming a file that is not there, once the one
differing name is masked: the two must be answered alike, whatever the answer is.
"""
from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import start_app_with_users
from workbench.auth import add_user

PEOPLE = {"alice": "admin", "tom": "trainer", "ann": "annotator", "vic": "viewer"}
ADMIN = "alice"
# Inputs that carry the caller's text to the handler. A Dropdown refuses a value outside its choices
# unless it allows custom values (Gradio checks before the handler runs); it gets the strings anyway.
# Radios and CheckboxGroups always refuse other values: they keep their defaults, and an admin
# also walks every choice of each Radio.
TEXT = {"textbox", "dropdown", "markdown", "code", "html"}
FILE = "file"  # gets a FileData whose path is the traversal string: Gradio must refuse it
# Gradio takes a State input's value from the server's session, not from the request, so what is sent
# there never reaches the handler. The strings are sent anyway (a Gradio that took them would be
# walked too), but a dependency whose only inputs from the caller are States has nothing to vary:
# it is called once per role, for the token check.
STATE = "state"
# Dependencies left out of the walk, each with its reason. None so far: keep it that way unless a
# handler cannot be called with generic data at all.
EXCLUDED: dict[int, str] = {}


def _plant(tmp_path: Path) -> tuple[str, tuple[str, str], Path, list[tuple[str, str, str]]]:
    """A canary beside the workspace: (its token, (its name, the name of a missing twin), the folder
    it is in, traversal pairs). A pair is (how it escapes, a path to the canary, the same path
    naming a file that does not exist)."""
    token = "tok" + uuid.uuid4().hex
    tag = uuid.uuid4().hex[:6]
    there, missing = f"canary{tag}", f"absent{tag}"  # the same length: no answer differs by length alone
    outside = tmp_path / "outside"
    outside.mkdir()
    # a row of each format the workspace's readers expect: a RAG question, an SFT row, a preference pair
    rows = [{"question": token, "sources": [f"{token}.md"], "reference": token},
            {"prompt": token, "completion": token}, {"prompt": token, "chosen": token, "rejected": token}]
    (outside / f"{there}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (outside / f"{there}.tsv").write_text(f"question\tsources\treference\n{token}\t{token}.md\t{token}\n")
    (outside / f"{there}.txt").write_text(f"{token}\n{token}\n")
    folder = outside / f"{there}.d"  # shaped like a run or model folder
    folder.mkdir()
    for name in ("config.json", "manifest.json", "status.json"):
        (folder / name).write_text(json.dumps({"id": token, "name": token, "kind": "base", "status": token}))
    (folder / "log.txt").write_text(token + "\n")

    data = tmp_path / "ws" / "data"  # runs/, models/ and cache/ are as deep as data/
    forms = [
        ("an absolute path", str(outside / "{}.tsv")),
        ("up from data/", "../../outside/{}.jsonl"),
        ("up past the root", "../" * 16 + str(outside / "{}.txt").lstrip("/")),
        ("under data/, then up", f"{data}/../../outside/{{}}.jsonl"),
        ("the absolute path of a folder", str(outside / "{}.d")),
    ]
    return token, (there, missing), outside, [(how, f.format(there), f.format(missing)) for how, f in forms]


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def _signed_in(url: str, name: str):
    """A urllib opener holding ``name``'s session cookie."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    opener.open(urllib.request.Request(url + "login", data=f"username={name}&password={name}-pw".encode(),
                                       headers={"Content-Type": "application/x-www-form-urlencoded"}), timeout=10)
    return opener


def _call(opener, url: str, fn_index: int, data: list, session: str, event_data=None) -> tuple[str, dict]:
    """One call through the queue, as the page makes it: (everything the server sent about it, the
    answer: whether it succeeded, its outputs or its error, the messages it popped up)."""
    body = {"fn_index": fn_index, "data": data, "session_hash": session, "event_data": event_data}
    request = urllib.request.Request(url + "gradio_api/queue/join", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with opener.open(request, timeout=30) as response:
            event_id = json.loads(response.read())["event_id"]
    except urllib.error.HTTPError as exc:  # refused before it ran (a validator, a full queue)
        raw = exc.read().decode(errors="replace")
        return raw, {"refused": exc.code, "detail": raw}
    raw, answer = [], {"outputs": [], "shown": []}
    with opener.open(url + f"gradio_api/queue/data?session_hash={session}", timeout=60) as stream:
        for line in stream:  # server-sent events, up to this call's end
            line = line.decode(errors="replace").strip()
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("event_id") not in (event_id, None):
                continue
            raw.append(line)
            kind = message.get("msg")
            if kind == "log":  # gr.Info, gr.Warning
                answer["shown"].append([message.get("level"), message.get("title"), message.get("log")])
            elif kind in ("process_generating", "process_completed"):
                output = message.get("output") or {}
                answer["ok"] = message.get("success")
                answer["outputs"].append(output.get("data") if message.get("success") else
                                         [output.get("title"), output.get("error")])
                if kind == "process_completed":
                    break
            elif kind in ("unexpected_error", "close_stream"):
                answer["unexpected"] = message.get("message")
                break
    return "\n".join(raw), answer


def _masked(answer: dict, names: tuple[str, str]) -> str:
    """The answer with the one name that differs between the twins masked, and what differs between
    any two calls normalised."""
    text = json.dumps(answer, sort_keys=True)
    for name in names:
        text = text.replace(name, "<name>")
    # Run ids (``RunStore.create``: date, time, kind, 6 random hex digits): a handler that accepts both
    # twins queues two runs and answers with two ids. (No call of the walk is accepted today, since
    # the empty workspace fails every launch's checks, but that would be no leak.) Only that exact
    # shape is masked. Nothing else is: no answer of the walk holds a time or a duration.
    return re.sub(r"\b\d{8}-\d{6}-[a-z0-9-]+?-[0-9a-f]{6}\b", "<run id>", text)


def _excerpt(text: str, token: str, width: int = 240) -> str:
    at = text.find(token)
    return text[:width] if at < 0 else "…" + text[max(0, at - width // 2):at + width // 2] + "…"


def _handlers(env: dict[str, str]) -> dict[int, tuple[str, list[int], int]]:
    """fn id -> (the handler's function name, its input ids, the first fn id with the same function
    and inputs), from the same UI built in this process (the inputs show that the ids are the app's)."""
    from workbench.settings import Settings
    from workbench.ui import build_ui

    demo = build_ui(Settings.from_env(env))
    first: dict[tuple, int] = {}
    out = {}
    for i, f in sorted(demo.fns.items()):
        inputs = [b._id for b in f.inputs]
        out[i] = (getattr(f.fn, "__name__", repr(f.fn)), inputs, first.setdefault((id(f.fn), *inputs), i))
    return out


@pytest.mark.slow(72)
def test_no_handler_shows_what_is_outside_the_workspace(env, start_process, tmp_path):
    """Each dependency with a backend function is called by each role with every text argument set
    to each traversal string, once naming the canary and once its missing twin. An admin, who holds
    every action and so gets past every role check, also calls it with each text argument alone (the
    others at their defaults, so a refusal of one argument cannot hide what the handler does with
    another) and with each choice of its Radios, with the two plainest escapes. Any answer holding the
    token, or telling the twins apart, is a leak; all of them are listed at the end."""
    token, twins, outside, pairs = _plant(tmp_path)
    before = _snapshot(outside)
    # the UI as the app builds it with sign-ins on (a page-load handler exists only then)
    add_user(tmp_path / "builder-users.json", ADMIN, "-", "admin")
    with ThreadPoolExecutor(1) as pool:  # built while the app starts
        building = pool.submit(_handlers, dict(env, WORKBENCH_AUTH_FILE=str(tmp_path / "builder-users.json")))
        url = start_app_with_users(env, start_process, tmp_path, PEOPLE)
        handlers = building.result()
    openers = {name: _signed_in(url, name) for name in PEOPLE}
    with openers[ADMIN].open(url + "config", timeout=10) as response:
        config = json.loads(response.read())
    with openers[ADMIN].open(url + "gradio_api/info", timeout=10) as response:
        named = json.loads(response.read())["named_endpoints"]
    assert {d["id"]: d["inputs"] for d in config["dependencies"]} == {i: h[1] for i, h in handlers.items()}, \
        "the UI built here is not the app's: the function names would be wrong"
    components = {c["id"]: c for c in config["components"]}
    dependencies = [d for d in config["dependencies"] if d["backend_fn"]]  # the others run in the browser only

    def kind(component_id: int) -> str:
        return components[component_id]["type"]

    def default(component_id: int):
        return components[component_id].get("props", {}).get("value")

    def value(component_id: int, text: str):
        """What the page would send for this input with ``text`` typed or uploaded into it."""
        props = components[component_id].get("props", {})
        if kind(component_id) in TEXT or kind(component_id) == STATE:
            return [text] if props.get("multiselect") else text
        if kind(component_id) == FILE:
            file = {"path": text, "orig_name": Path(text).name, "meta": {"_type": "gradio.FileData"}}
            return file if props.get("file_count", "single") == "single" else [file]
        return default(component_id)

    def label(component_id: int) -> str:
        props = components[component_id].get("props", {})
        return f"{kind(component_id)} {props.get('label') or props.get('elem_id') or component_id!r}"

    def selected(text: str) -> dict:
        """What a click on a table cell holding ``text`` sends (``gr.SelectData``)."""
        return {"index": [0, 0], "value": text, "row_value": [text], "col_value": [text], "selected": True}

    def carries_text(dep: dict) -> bool:
        return dep["collects_event_data"] or any(kind(i) in TEXT | {FILE} for i in dep["inputs"])

    def variants(dep: dict, admin: bool) -> list[tuple[str, list, object]]:
        """(what is varied, the traversal pairs walked, traversal string -> (data, event data))."""
        inputs, events = dep["inputs"], dep["collects_event_data"]
        # the admin, who gets past every role check, walks every escape; the other roles the two plainest
        out = [("every text argument", pairs if admin else pairs[:2],
                lambda s: ([value(i, s) for i in inputs], selected(s) if events else None))]
        if not admin:
            return out
        for radio in (i for i in inputs if kind(i) == "radio"):
            for choice in (c[1] for c in components[radio]["props"].get("choices", [])):
                if choice != default(radio):
                    out.append((f"every text argument, {label(radio)} = {choice!r}", pairs[:2],
                                lambda s, r=radio, c=choice: ([c if i == r else value(i, s) for i in inputs],
                                                              selected(s) if events else None)))
        slots = [i for i in inputs if kind(i) in TEXT | {FILE}]
        if len(slots) + bool(events) > 1:
            for slot in slots:
                out.append((f"only {label(slot)}", pairs[:2],
                            lambda s, t=slot: ([value(i, s) if i == t else default(i) for i in inputs], None)))
        return out

    # One page session per person (a new one costs the server a copy of the whole UI); the two calls
    # of a pair follow each other in it, so both find the same state.
    sessions = {person: uuid.uuid4().hex for person in PEOPLE}
    leaks: list[str] = []
    called: set[int] = set()
    # Dependencies that take text first; the ones that only show what is stored (the run list, the
    # audit log, the next pair) last, so they show whatever the calls before them left behind.
    for dep in sorted((d for d in dependencies if d["id"] not in EXCLUDED), key=lambda d: not carries_text(d)):
        fn = dep["id"]
        name, _, same_as = handlers[fn]
        what = f"#{fn} {name} ({dep['api_name'] if dep['api_visibility'] == 'public' else 'unnamed'})"
        for person, role in PEOPLE.items():
            if not carries_text(dep):
                raw, _ = _call(openers[person], url, fn, [value(i, pairs[0][1]) for i in dep["inputs"]],
                               sessions[person])
                if token in raw:
                    leaks.append(f"{what} as {role}: shows the canary's content: {_excerpt(raw, token)}")
                continue
            # A handler wired to several events with the same inputs (the Train estimate runs on its
            # button and after a change of method) gets the admin's finer variants once.
            for varied, walked, build in variants(dep, person == ADMIN and same_as == fn):
                for how, to_canary, to_missing in walked:
                    raws, answers = [], []
                    for path in (to_canary, to_missing):
                        data, event = build(path)
                        raw, answer = _call(openers[person], url, fn, data, sessions[person], event)
                        raws.append(raw)
                        answers.append(_masked(answer, twins))
                    problems = [problem for problem, found in (
                        ("shows the canary's content", token in raws[0]),
                        ("shows the canary's content for a missing file", token in raws[1]),
                        ("tells the canary from a missing file", answers[0] != answers[1])) if found]
                    if problems:
                        leaks.append(f"{what} as {role}, {varied} = {to_canary!r} ({how}): {' and '.join(problems)}."
                                     f"\n    canary: {_excerpt(answers[0], token)}"
                                     f"\n    missing: {_excerpt(answers[1], token)}")
        called.add(fn)

    assert leaks == [], f"{len(leaks)} leak(s):\n" + "\n".join(leaks)
    assert _snapshot(outside) == before, "a handler changed, added or removed files beside the workspace"
    # the walk reached the handlers an API client does not list, the Evaluate question-set preview among them
    assert called == {d["id"] for d in dependencies} - set(EXCLUDED)
    assert len(called) > len(named) and "question_table" in {handlers[fn][0] for fn in called}
