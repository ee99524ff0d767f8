"""Annotation for a team: pair sets with a number of votes per pair, leases so annotators at once
never vote a pair past its target (five real API clients on 100 pairs), agreement figures equal
to published examples, guidelines with versions, gold pairs, and the merge's rules."""
from __future__ import annotations

import json
import random
import threading
from collections import Counter

import pytest

from storage import JsonlError, read_jsonl
from tests.conftest import cli, start_app_with_users
from tests.helpers import ready_pairs
from workbench.errors import WorkbenchError
from workbench.feedback.agreement import cohen_kappa, krippendorff_alpha, majority_agreement
from workbench.feedback.annotation import cast_vote
from workbench.feedback.distribution import LEASE_S, claim_next_pair
from workbench.feedback.gold import gold_from_file, make_gold, mark_gold
from workbench.feedback.guidelines import current_guidelines, guidelines_from_file, save_guidelines
from workbench.feedback.merge import MergeRules, merge_votes
from workbench.feedback.pairs import pair_store
from workbench.feedback.sets import read_sets, save_set
from workbench.feedback.stats import team_stats


def test_agreement_figures_equal_published_examples():
    # Cohen's kappa: the worked example of Wikipedia's "Cohen's kappa" (50 proposals, two readers): 0.4.
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: four
    # observers, twelve units, missing values; nominal alpha 0.743.
    table = {"A": "1 2 3 3 2 1 4 1 2 . . .", "B": "1 2 3 3 2 2 4 1 2 5 . 3",
             "C": ". 3 3 3 2 3 4 2 2 5 1 .", "D": "1 2 3 3 2 4 4 1 2 5 1 ."}
    units: dict = {}
    for observer, row in table.items():
        for unit, value in enumerate(row.split()):
            if value != ".":
                units.setdefault(unit, {})[observer] = value
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # undefined, not 1.0 or a division by zero
    # Majority of the others: C is outvoted on p1; A and B each lose p3 to the other; an even
    # split of the others (A's and C's on p1 for B) is not counted.
    votes = {"p1": {"A": "a", "B": "a", "C": "b"}, "p2": {"A": "b", "B": "b", "C": "b"}, "p3": {"A": "a", "B": "b"}}
    figures = majority_agreement(votes)
    assert figures["C"] == {"agreement": 0.5, "pairs": 2}
    assert figures["A"] == {"agreement": 0.5, "pairs": 2} == figures["B"]


def test_alpha_equals_the_krippendorff_package_on_random_votes():
    """The product computes alpha in plain Python (no numpy on the stats command's path); the
    ``krippendorff`` package is the reference, on votes with missing values and uneven raters."""
    import krippendorff
    import numpy as np

    rng = random.Random(7)
    raters = [f"r{i}" for i in range(5)]
    for trial in range(20):
        units = {}
        for unit in range(rng.randint(3, 60)):
            who = rng.sample(raters, rng.randint(1, 4))
            bias = rng.random()
            units[unit] = {r: rng.choice(["a", "b", "tie", "both_bad"]) if rng.random() > bias else "a" for r in who}
        data = np.full((len(raters), len(units)), np.nan)
        codes = {"a": 0, "b": 1, "tie": 2, "both_bad": 3}
        for j, ratings in enumerate(units.values()):
            for rater, label in ratings.items():
                data[raters.index(rater), j] = codes[label]
        rated = [r for r in units.values() if len(r) >= 2]
        if len(rated) < 2 or len({v for r in rated for v in r.values()}) < 2:
            assert krippendorff_alpha(units) is None
            continue
        assert krippendorff_alpha(units) == pytest.approx(
            krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"), abs=1e-9), trial


def test_a_set_target_leases_and_votes_past_the_target_refused(settings):
    ws = settings.workspace.ensure()
    with pytest.raises(WorkbenchError, match="whole number from 1 to 10, got 0"):
        save_set(ws, "équipe", 0)
    with pytest.raises(WorkbenchError, match="pair set name"):
        save_set(ws, "../x", 2)
    assert "../x" not in read_sets(ws)
    save_set(ws, "equipe", 2)
    pairs = ready_pairs(ws, 2, "equipe")
    now = 1_000_000.0
    shown = {name: claim_next_pair(ws, name, now=now) for name in ("alice", "bob", "chloe", "dan")}
    # two votes wanted: alice and bob share the first pair, chloe and dan the second
    assert shown["alice"].pair_id == shown["bob"].pair_id == pairs[0].pair_id
    assert shown["chloe"].pair_id == shown["dan"].pair_id == pairs[1].pair_id
    assert claim_next_pair(ws, "alice", now=now + 1).pair_id == pairs[0].pair_id  # still hers after a refresh
    assert claim_next_pair(ws, "erin", now=now) is None  # both pairs are on enough screens
    cast_vote(ws, shown["alice"], "alice", "a")
    cast_vote(ws, shown["bob"], "bob", "a")
    with pytest.raises(WorkbenchError, match="already has its 2 votes"):
        cast_vote(ws, pairs[0], "erin", "b")  # a lease that ran out cannot push a pair past its target
    cast_vote(ws, shown["dan"], "dan", "b")
    # chloe left without voting: once her lease runs out, her place goes to someone else
    assert claim_next_pair(ws, "erin", now=now + 10) is None
    assert claim_next_pair(ws, "erin", now=now + LEASE_S + 1).pair_id == pairs[1].pair_id
    stats = team_stats(ws, now=now + LEASE_S + 1)
    (counters,) = stats["sets"]
    assert (counters["done"], counters["votes"], counters["votes_left"], counters["working"]) == (1, 3, 1, ["erin"])
    # lowering the target changes no vote; raising it puts the pair back in the queues
    before = read_jsonl(ws.feedback_file)
    save_set(ws, "equipe", 3)
    assert read_jsonl(ws.feedback_file) == before
    assert claim_next_pair(ws, "frank", now=now + LEASE_S + 2).pair_id == pairs[0].pair_id


def test_guidelines_are_versioned_and_recorded_with_each_vote(settings, tmp_path):
    ws = settings.workspace.ensure()
    pairs = ready_pairs(ws, 3)
    cast_vote(ws, pairs[0], "alice", "a")
    first = save_guidelines(ws, "# Consignes\n\nPréférez la réponse **fidèle au contexte**, même courte.", "tom")
    assert first.version == 1 and save_guidelines(ws, first.text, "tom").version == 1  # same text: no new version
    cast_vote(ws, pairs[1], "alice", "a")
    binary = tmp_path / "consignes.md"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(WorkbenchError, match="not a text file"):
        guidelines_from_file(binary)
    latin = tmp_path / "latin1.md"
    latin.write_bytes("Préférez".encode("latin-1"))
    with pytest.raises(WorkbenchError, match="not UTF-8 text"):
        guidelines_from_file(latin)
    assert current_guidelines(ws).version == 1
    text = tmp_path / "v2.md"
    text.write_text("Préférez la réponse fidèle ; à égalité, la plus courte.", encoding="utf-8")
    assert save_guidelines(ws, guidelines_from_file(text), "tom").version == 2
    cast_vote(ws, pairs[2], "alice", "b")
    assert [v["guidelines_version"] for v in read_jsonl(ws.feedback_file)] == [0, 1, 2]
    report = merge_votes(ws, rules=MergeRules(current_guidelines_only=True))
    assert report["kept"] == 1 and report["removed"] == {"older_guidelines_votes": 2}


def test_gold_pairs_measure_annotators_and_the_merge_rules_say_what_they_removed(settings, tmp_path):
    ws = settings.workspace.ensure()
    save_set(ws, "default", 2)
    pairs = ready_pairs(ws, 6)
    bad = tmp_path / "or.jsonl"
    bad.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"prompt": "Quelle est la capitale ?", "answer_a": "Paris.", "answer_b": "Lyon.", "right": "Paris."},
        {"prompt": "Combien de jours ?", "answer_a": "Sept.", "answer_b": "Huit.", "right": "Six."}]) + "\n")
    with pytest.raises(JsonlError, match="line 2: the right answer is neither answer_a nor answer_b"):
        gold_from_file(ws, bad)
    assert len(pair_store(ws).all()) == 6  # nothing written
    with pytest.raises(WorkbenchError, match="'a' or 'b'"):
        mark_gold(ws, pairs[0].pair_id, "Paris.")
    assert make_gold(ws, 4, seed=1)["added"] == 4
    store = pair_store(ws).all()
    made = [p for p in store.values() if p.gold]
    assert len(made) == 4 and all(p.source == "gold" and p.a.model == p.b.model == "gold" for p in made)
    for p in made:  # the right side is the question's own answer; the wrong one answers another question
        right, wrong = (p.a, p.b) if p.gold == "a" else (p.b, p.a)
        number = p.prompt.split("n°")[1].split(",")[0]
        assert right.answer.endswith(f" {number}.") and not wrong.answer.endswith(f" {number}.")
    assert make_gold(ws, 4, seed=2)["added"] == 2  # only the questions without a gold pair yet
    marked = mark_gold(ws, pairs[0].pair_id, "a")  # a real pair whose right side a trainer knows
    store = pair_store(ws).all()
    gold = [p for p in store.values() if p.gold]
    assert len(gold) == 7 and store[marked.pair_id].source == "typed"
    # careful votes right on every gold pair, careless always on the left; both agree elsewhere
    for p in store.values():
        right = p.shown_letter(p.gold) if p.gold else p.shown_letter("a")
        cast_vote(ws, p, "careful", right)
        cast_vote(ws, p, "careless", "a" if p.gold else right)
    stats = team_stats(ws)
    assert stats["annotators"]["careful"]["gold"] == {"accuracy": 1.0, "pairs": 7}
    careless = round(sum(p.shown_letter(p.gold) == "a" for p in gold) / 7, 4)
    assert stats["annotators"]["careless"]["gold"] == {"accuracy": careless, "pairs": 7}
    assert careless < 0.99  # the seeded pairs put the right answer on either side
    # the gold checks measure the annotators and stay out of the data; the marked real pair stays in
    report = merge_votes(ws, rules=MergeRules(gold_threshold=0.99, min_votes=1))
    assert report["under_gold_threshold"] == ["careless"]
    assert report["removed"] == {"under_gold_threshold_votes": 12, "gold_check_votes": 6} and report["kept"] == 6
    report = merge_votes(ws, rules=MergeRules(min_votes=2, min_agreement=1.0))
    split = int(marked.shown_letter("a") != "a")  # careless voted left on the marked pair too
    assert report["removed"].get("split_votes_pairs", 0) == split and report["kept"] == 6 - split
    assert report["removed"]["gold_check_votes"] == 12
    report = merge_votes(ws, rules=MergeRules(exclude_annotators=("careless",), min_votes=2))
    assert report["removed"] == {"excluded_annotator_votes": 12, "gold_check_votes": 6, "too_few_votes_pairs": 6}
    assert report["kept"] == 0


def test_cli_sets_guidelines_gold_stats_and_merge(env, settings, tmp_path):
    ws = settings.workspace.ensure()
    ready_pairs(ws, 4, lang="en")
    assert "2 vote(s) a pair" in cli(env, "pairs", "set", "default", "--votes-per-pair", "2").stdout
    refused = cli(env, "pairs", "set", "default", "--votes-per-pair", "0", check=False)
    assert refused.returncode != 0 and "from 1 to 10" in refused.stderr
    guide = tmp_path / "guide.md"
    guide.write_text("Prefer the faithful answer.", encoding="utf-8")
    assert json.loads(cli(env, "feedback", "guidelines", str(guide), "--json").stdout)["version"] == 1
    for name in ("ann", "bob"):
        for _ in range(4):
            pair = claim_next_pair(ws, name)
            cast_vote(ws, pair, name, "a")
    stats = json.loads(cli(env, "feedback", "stats", "--json").stdout)
    assert stats["sets"][0] | {"working": []} == {"set": "default", "votes_per_pair": 2, "pairs": 4, "generating": 0,
                                                 "done": 4, "votes": 8, "votes_left": 0, "working": []}
    assert stats["agreement"]["pairs"] == 4 and stats["agreement"]["kappa"][0]["raw_agreement"] == 1.0
    merged = json.loads(cli(env, "merge-feedback", "--min-votes", "2", "--exclude-annotators", "bob", "--json").stdout)
    assert merged["kept"] == 0 and merged["removed"] == {"excluded_annotator_votes": 4, "too_few_votes_pairs": 4}
    assert "4 pairs written" in cli(env, "merge-feedback", "--min-votes", "2").stdout


@pytest.mark.slow(33)
def test_five_annotators_at_once_through_the_api_vote_each_pair_exactly_twice(env, start_process, tmp_path, settings):
    """Five real API clients on 100 pairs with two votes a pair: exactly 200 votes, none over or
    under its target."""
    from gradio_client import Client

    people = {f"ann{i}": "annotator" for i in range(5)}
    url = start_app_with_users(env, start_process, tmp_path, people)
    ws = settings.workspace
    save_set(ws, "default", 2)
    ready_pairs(ws, 100)
    refused, errors = Counter(), []

    def annotate(name: str) -> None:
        client, rng = Client(url, auth=(name, f"{name}-pw"), verbose=False), random.Random(name)
        shown = client.predict(api_name="/next_pair")
        while shown and shown["pair_id"]:
            answer = client.predict(shown["pair_id"], rng.choice(["a", "b", "tie"]), api_name="/vote")
            refused[name] += not answer["recorded"]
            shown = answer["next"]

    def run(name: str) -> None:
        try:
            annotate(name)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{name}: {exc!r}")

    threads = [threading.Thread(target=run, args=(name,)) for name in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == [] and not any(t.is_alive() for t in threads)
    votes = read_jsonl(ws.feedback_file)
    per_pair = Counter(v["pair_id"] for v in votes)
    assert len(votes) == 200 and set(per_pair.values()) == {2} and len(per_pair) == 100
    assert sum(refused.values()) == 0  # the leases kept everyone off full pairs
    assert len({(v["pair_id"], v["annotator"]) for v in votes}) == 200


def test_files_edited_by_hand_out_of_shape_are_named_or_ignored(settings):
    """A set file out of shape is named with what to do; leases or a guidelines version edited by
    hand into nonsense never stop a vote."""
    ws = settings.workspace.ensure()
    pairs = ready_pairs(ws, 2)
    (ws.data / "pair_sets.json").write_text(json.dumps({"default": {"votes_per_pair": "2"}}))
    with pytest.raises(WorkbenchError, match=r"pair_sets.json: set 'default': votes per pair must be a whole number"):
        claim_next_pair(ws, "ann")
    (ws.data / "pair_sets.json").unlink()
    (ws.data / "leases.json").write_text(json.dumps({"bob": {"pair_id": ["x"], "expires": "soon"}, "eve": 3}))
    (ws.data / "guidelines.jsonl").write_text(json.dumps({"version": -1, "text": "x"}) + "\n"
                                              + json.dumps({"version": True, "text": "y"}) + "\n")
    assert current_guidelines(ws).version == 0
    pair = claim_next_pair(ws, "ann")
    assert pair.pair_id == pairs[0].pair_id and cast_vote(ws, pair, "ann", "a")["guidelines_version"] == 0
    assert save_guidelines(ws, "Soyez fidèle au contexte.", "tom").version == 1
