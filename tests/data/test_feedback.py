"""The harvest rules, on games played through the real engine (fake writer, real votes, retries, ratings)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from data.feedback import (
    FeedbackOptions,
    PairKind,
    ShingleIndex,
    harvest,
    pairs_from_jsonl,
    pairs_to_jsonl,
    player_cap,
)
from data.steps import Step, read_steps, steps_to_jsonl
from engine.checks import CheckRules, overlap
from engine.fakes import FakeWriter
from engine.game import Game
from engine.prompt_format import ACTION, StoryContext, Turn, render_prompt, render_target
from engine.turns import REPAIR_MARK, EngineRules, StoryEngine
from tests.data.games import LORE, PREMISE, cheer, new_engine, nonzero, play, rate, vote

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def scripted(narration: str) -> str:
    return render_target(narration, ["Follow the glowing cable", "Climb back to the hangar roof"], None)


KNOWN = ("Rain drums on the hangar roof while Captain Mirei-san checks the cockpit seals one by one. The giant "
         "robot hums a low note that only you seem to hear, and the water around its feet begins to ripple in "
         "perfect circles. Somewhere above, a siren wails twice and falls silent.")


def test_voted_scenes_become_steps_with_their_history_and_vote_pairs(tmp_path: Path) -> None:
    game = run(play(new_engine(), [{"p-ana": 0, "p-bo": 0}, {"p-ana": 1}, {"p-bo": 2, "p-ana": 2}]))
    cheer(game, [1, 2, 3])  # both players liked every scene they chose
    result = harvest([game], frozenset(), [])

    # The vote p-ana alone decided gives no pairs: a preference needs two voters for the winner.
    assert nonzero(result.counts) == {"games": 1, "steps_candidates": 3, "steps_kept": 3, "pairs_candidates": 6,
                                      "pairs_kept_vote": 4, "pairs_dropped_unsupported": 2, "pairs_kept": 4}
    assert [s.id for s in result.steps] == [f"play/{game.id}/{i}>{i + 1}@fake/1" for i in range(3)]
    for index, step in enumerate(result.steps):
        assert len(step.history) == index and step.chosen == game.path[index].chosen
        assert step.scene == game.path[index].scene.narration
        assert step.next_scene == game.path[index + 1].scene.narration
        assert step.genre == "mecha" and step.premise == PREMISE and step.lore == LORE
    assert [h.chosen for h in result.steps[2].history] == [0, 1]
    # The rows are valid step-format lines, and nothing in them names a player.
    (tmp_path / "steps.jsonl").write_text(steps_to_jsonl(result.steps))
    assert read_steps(tmp_path / "steps.jsonl") == (result.steps, [])
    exported = steps_to_jsonl(result.steps) + pairs_to_jsonl(result.pairs)
    assert "p-ana" not in exported and "p-bo" not in exported
    assert pairs_from_jsonl(pairs_to_jsonl(result.pairs)) == result.pairs

    # A vote pair: the same story so far, then the winning action and its branch over a losing one.
    first = result.pairs[0]
    step = result.steps[0]
    assert first.kind == PairKind.VOTE and first.source.game == game.id and first.source.scene == 1
    assert first.prompt.endswith(ACTION) and first.chosen_action == 0 and first.rejected_action == 1
    full = render_prompt(StoryContext("mecha", PREMISE, tuple(LORE), "", (Turn(step.scene, step.action),)))
    assert first.prompt + first.chosen == full + render_target(step.next_scene, step.next_choices, step.ending)
    loser = game.path[0].branches[1]
    assert first.rejected == step.choices[1] + render_target(loser.narration, loser.choices, loser.ending)


def test_retries_and_ratings_make_pairs_at_the_same_point() -> None:
    engine = new_engine()
    game = run(play(engine, [{"p-ana": 0}]))
    for player in ("p-ana", "p-bo"):
        rate(game, player, 1, thumb="down")  # on the first version of scene 1
    first = game.path[1].scene
    run(engine.retry(game))
    cheer(game, [1])  # on the replacement
    result = harvest([game], frozenset(), [])

    # The rating pair and the retry pair say the same (kept once); the vote for the retried branch is overruled.
    assert nonzero(result.counts) == {"games": 1, "steps_candidates": 1, "steps_kept": 1, "pairs_candidates": 4,
                                      "pairs_kept_rating": 1, "pairs_dropped_duplicate": 1,
                                      "pairs_dropped_overruled": 2, "pairs_kept": 1}
    [pair] = result.pairs
    assert pair.kind == PairKind.RATING and pair.prompt.endswith(ACTION + game.path[0].scene.choices[0])
    assert pair.rejected == render_target(first.narration, first.choices, first.ending)
    assert pair.chosen_scene.narration == game.path[1].scene.narration
    assert result.steps[0].next_scene == game.path[1].scene.narration  # the replacement, not the rejected one

    # After a second retry the earlier ratings cannot be tied to one version any more: the retries alone
    # (one player's word) remain, enough only where one supporter is asked for.
    run(engine.retry(game))
    again = harvest([game], frozenset(), [], FeedbackOptions(min_supporters=1))
    assert again.counts["ratings_unattributed"] == 4
    assert [p.kind for p in again.pairs] == [PairKind.RETRY, PairKind.RETRY]
    assert {p.rejected_scene.narration for p in again.pairs} == {first.narration, pair.chosen_scene.narration}


def test_opted_out_players_count_as_if_they_never_played() -> None:
    engine = new_engine()
    players = ("p-ana", "p-bo", "p-zed", "p-yan")
    game = run(play(engine, [{"p-zed": 1},  # only opted-out votes
                             {"p-zed": 1, "p-yan": 1, "p-ana": 2},  # their votes decided it
                             {"p-zed": 0, "p-ana": 0, "p-bo": 0}],  # opted-in votes uphold the choice
                    players=players))
    cheer(game, [1, 2, 3])
    rate(game, "p-zed", 3, thumb="down")  # ignored: the scene stays
    owned = run(play(engine, [{"p-ana": 0}], players=players, owner="p-zed"))  # the owner's premise may be theirs
    result = harvest([game, owned], {"p-zed", "p-yan"}, [])

    assert nonzero(result.counts) == {"games": 2, "games_opted_out": 1, "ratings_ignored_opted_out": 1,
                                      "steps_candidates": 4, "steps_kept": 1, "steps_dropped_opted_out": 3,
                                      "pairs_candidates": 8, "pairs_dropped_opted_out": 6, "pairs_kept_vote": 2,
                                      "pairs_kept": 2}
    assert [s.id.split("@")[0] for s in result.steps] == [f"play/{game.id}/2>3"]
    exported = steps_to_jsonl(result.steps) + pairs_to_jsonl(result.pairs)
    assert not any(player in exported for player in players)


def test_a_draw_nobody_voted_in_is_dropped_but_a_direct_choice_is_kept() -> None:
    engine = new_engine()
    unvoted = run(play(engine, [{}], players=["p-ana"]))
    assert unvoted.path[0].tie_break is not None and unvoted.path[0].votes == []
    terminal = run(engine.start("terminal", "mecha", PREMISE, ["you"]))
    run(engine.pregenerate(terminal))
    run(engine.choose(terminal, 1))
    rate(terminal, "you", 1, stars=5)
    cheer(unvoted, [1])
    single_owner = FeedbackOptions(min_supporters=1)  # the terminal: one player, the owner of the machine
    result = harvest([unvoted, terminal], frozenset(), [], single_owner)

    assert nonzero(result.counts) == {"games": 2, "steps_candidates": 2, "steps_kept": 1, "steps_dropped_unvoted": 1,
                                      "pairs_candidates": 4, "pairs_dropped_unvoted": 2, "pairs_kept_vote": 2,
                                      "pairs_kept": 2}
    assert result.steps[0].id.startswith(f"play/{terminal.id}/0>1")
    assert not harvest([terminal], {"you"}, [], single_owner).steps  # every player of it opted out
    # Under the defaults one player's five stars are not enough.
    assert harvest([terminal], frozenset(), []).counts["steps_dropped_unsupported"] == 1


def test_repaired_placeholders_are_never_learned() -> None:
    writer = FakeWriter()
    engine = StoryEngine(writer, seed=3)
    game = run(play(engine, [{"p-ana": 0, "p-bo": 0}]))
    writer.script = ["not a scene"] * 3  # every attempt fails: the engine repairs the scene
    run(vote(engine, game, {"p-ana": 1}, pregenerate=False))
    assert game.path[2].scene.repaired and REPAIR_MARK in game.path[2].scene.narration
    run(vote(engine, game, {"p-ana": 0, "p-bo": 0}))
    cheer(game, [1, 2])  # even a placeholder the players liked is not learned
    writer.script = ["still not a scene"] * 3
    run(engine.retry(game))  # the replacement is a placeholder too
    result = harvest([game], frozenset(), [])

    # The step into the placeholder and the one after it (it is in the prompt, which training scores) go;
    # the retry pair (a placeholder over a real scene) goes; the vote for the retried branch is overruled.
    assert nonzero(result.counts) == {"games": 1, "steps_candidates": 3, "steps_kept": 1, "steps_dropped_repaired": 2,
                                      "pairs_candidates": 5, "pairs_kept_vote": 2, "pairs_dropped_repaired": 1,
                                      "pairs_dropped_overruled": 2, "pairs_kept": 2}
    assert REPAIR_MARK not in steps_to_jsonl(result.steps) + pairs_to_jsonl(result.pairs)


def test_rated_down_scenes_by_stars_or_thumbs() -> None:
    engine = new_engine()
    both = ("p-ana", "p-bo")
    starred = run(play(engine, [dict.fromkeys(both, 0), dict.fromkeys(both, 1), dict.fromkeys(both, 2)]))
    cheer(starred, [1, 2])
    rate(starred, "p-ana", 3, stars=2)
    rate(starred, "p-bo", 3, stars=2)  # mean 2 stars...
    cheer(starred, [3], ("p-cy", "p-dee"))  # ...though two others liked it
    thumbed = run(play(engine, [dict.fromkeys(both, 0), dict.fromkeys(both, 1)]))
    cheer(thumbed, [2])
    for player, thumb in (("p-ana", "up"), ("p-bo", "down"), ("p-cy", "down")):  # net one thumb down
        rate(thumbed, player, 1, thumb=thumb)

    strict = harvest([starred, thumbed], frozenset(), [])
    assert nonzero(strict.counts) == {"games": 2, "steps_candidates": 5, "steps_kept": 2, "steps_dropped_rated_down": 3,
                                      "pairs_candidates": 10, "pairs_kept_vote": 6, "pairs_dropped_overruled": 4,
                                      "pairs_kept": 6}
    assert [s.id.split("@")[0] for s in strict.steps] == [f"play/{starred.id}/0>1", f"play/{starred.id}/1>2"]

    lenient = harvest([starred, thumbed], frozenset(), [], FeedbackOptions(min_rating=2.0))
    assert lenient.counts["steps_kept"] == 3 and lenient.counts["steps_dropped_rated_down"] == 2


def test_block_list_global_and_per_game() -> None:
    writer = FakeWriter()
    engine = StoryEngine(writer, seed=3)
    both = {"p-ana": 0, "p-bo": 0}
    kraken = run(engine.start("discord:g:c", "mecha", "A kraken sleeps under the hangar of a silent robot.",
                              ["p-ana"], owner="p-ana"))
    run(vote(engine, kraken, both))
    game = run(play(engine, [both]))
    writer.script = [scripted("The cable leads you down to a flooded tunnel where a pale sea serpent coils around "
                              "the robot's missing arm, its scales flickering like lanterns.")]
    run(vote(engine, game, {"p-ana": 1}, pregenerate=False))
    run(vote(engine, game, both))  # two choices: one losing branch
    cheer(kraken, [1])
    cheer(game, [1, 2, 3])
    game.block_words = ["Serpent"]  # a server added the word after the game was played
    result = harvest([kraken, game], frozenset(), [], FeedbackOptions(block_list=frozenset({"kraken"})))

    assert nonzero(result.counts) == {"games": 2, "steps_candidates": 4, "steps_kept": 1, "steps_dropped_blocked": 3,
                                      "pairs_candidates": 5, "pairs_kept_vote": 2, "pairs_dropped_blocked": 3,
                                      "pairs_kept": 2}
    exported = steps_to_jsonl(result.steps) + pairs_to_jsonl(result.pairs)
    assert "serpent" not in exported.casefold() and "kraken" not in exported.casefold()


def test_duplicates_of_the_dataset_and_of_each_other() -> None:
    existing = [Step(id="moon/s1>s2", genre="mecha", premise="A premise of five words.", scene="An opening scene.",
                     choices=["Go left", "Go right"], chosen=0, next_scene=KNOWN, next_choices=[])]
    writer = FakeWriter()
    engine = StoryEngine(writer, seed=3)
    new = ("Mirei-san hands you a dented thermos of barley tea and points at the robot's chest plate, where a "
           "child's drawing of a whale has been painted over a hundred times and never quite hidden.")
    games: list[Game] = []
    for text in (f"  {KNOWN}  ", KNOWN.replace("falls silent", "fades into the storm outside"), new, new):
        game = run(play(engine, []))
        writer.script = [scripted(text)]
        run(vote(engine, game, {"p-ana": 0}, pregenerate=False))
        cheer(game, [1])
        games.append(game)
    assert overlap(games[1].path[1].scene.narration, KNOWN) >= 0.6
    result = harvest(games, frozenset(), existing)

    assert nonzero(result.counts) == {"games": 4, "steps_candidates": 4, "steps_kept": 1, "steps_dropped_duplicate": 2,
                                      "steps_dropped_near_duplicate": 1}
    assert result.steps[0].id.startswith(f"play/{games[2].id}/")  # the older of the two games wins
    assert harvest(list(reversed(games)), frozenset(), existing) == result  # the same, whatever the order given


words = st.sampled_from(["rain", "bell", "shrine", "ember", "petal", "mask", "river"])
texts = st.lists(words, min_size=0, max_size=12).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(texts, min_size=1, max_size=6), texts)
def test_the_shingle_index_finds_the_largest_overlap(indexed: list[str], query: str) -> None:
    index = ShingleIndex(indexed)
    assert index.max_overlap(query) == max(overlap(query, text) for text in indexed)
    assert (query in index) == any(" ".join(query.split()) == " ".join(text.split()) for text in indexed)


def test_pairs_json_has_the_structured_fields() -> None:
    engine = new_engine()
    game = run(play(engine, [{"p-ana": 0}]))
    run(engine.retry(game))
    cheer(game, [1], ["p-bo"])  # with the owner's retry: two players preferred the replacement
    [pair] = [p for p in harvest([game], frozenset(), []).pairs if p.kind == PairKind.RETRY]
    row = json.loads(pair.to_json())
    assert set(row) == {"id", "kind", "prompt", "chosen", "rejected", "genre", "premise", "lore", "history", "scene",
                        "choices", "chosen_action", "rejected_action", "chosen_scene", "rejected_scene", "source"}
    assert row["source"] == {"game": game.id, "scene": 1, "model_version": "fake/1", "rejected_model_version": "fake/1"}
    assert row["scene"] == game.path[0].scene.narration and row["chosen_action"] == row["rejected_action"] == 0


# --- trust: support, text checks, the cap on one player ------------------------------------------------
GARBLED = ("The giant turning one proves, the Storm maidened in a stall's moonctual volleyball team that is in a "
           "tall bear. \"Sheicadice battalk at dawn. Your trial is a week of compartment 4 with a black hair. "
           "Commiter than beachelit you are a palhones still live there, and old paper lanterns, she says.")
LOOPING = " ".join(["You climb the ladder to the cockpit while the rain drums on the glass above your head."] * 3)


def test_a_troll_alone_cannot_get_a_step_in_but_two_players_can() -> None:
    engine = new_engine()
    # One account plays alone: it votes every scene and rates every scene up.
    trolled = run(play(engine, [{"p-troll": 0}, {"p-troll": 1}], players=["p-troll"], owner="p-troll"))
    cheer(trolled, [1, 2], ["p-troll"])
    # A second account (or a real player) agreeing is what the rule asks for.
    agreed = run(play(engine, [{"p-ana": 0, "p-bo": 0}, {"p-ana": 1}]))
    cheer(agreed, [1])
    rate(agreed, "p-bo", 2, thumb="up")
    rate(agreed, "p-bo", 2, thumb="down")  # a player's 👍 and 👎 of one scene cancel: no support from p-bo
    rate(agreed, "p-ana", 2, thumb="up")
    result = harvest([trolled, agreed], frozenset(), [])

    assert nonzero(result.counts) == {"games": 2, "steps_candidates": 4, "steps_kept": 1, "steps_dropped_unsupported": 3,
                                      "pairs_candidates": 8, "pairs_kept_vote": 2, "pairs_dropped_unsupported": 6,
                                      "pairs_kept": 2}
    assert [s.id.split("@")[0] for s in result.steps] == [f"play/{agreed.id}/0>1"]
    assert {p.source.scene for p in result.pairs} == {1} and {p.source.game for p in result.pairs} == {agreed.id}
    # Opted-out supporters do not count: p-bo's 👍 goes, and p-ana alone is not enough.
    assert harvest([agreed], {"p-bo"}, []).counts["steps_dropped_unsupported"] == 2
    # 0 turns the rule off; 1 lets the troll's own 👍 through (a single-owner setup).
    assert harvest([trolled], frozenset(), [], FeedbackOptions(min_supporters=1)).counts["steps_kept"] == 2


def test_the_issue_case_two_unrated_garbled_scenes_in_the_terminal_add_nothing() -> None:
    writer = FakeWriter()
    engine = StoryEngine(writer, seed=3)
    writer.script = [scripted(GARBLED), scripted(GARBLED.replace("volleyball", "kettle"))]
    game = run(engine.start("terminal", "mecha", PREMISE, ["you"]))
    run(engine.choose(game, 0))
    result = harvest([game], frozenset(), [])
    assert nonzero(result.counts) == {"games": 1, "steps_candidates": 1, "steps_dropped_garbled": 1}
    # Rated five stars by the single owner of the terminal, still not learned.
    rate(game, "you", 1, stars=5)
    assert harvest([game], frozenset(), [], FeedbackOptions(min_supporters=1)).counts["steps_dropped_garbled"] == 1


def test_text_checks_drop_garbled_looping_and_cut_off_scenes_and_what_follows_them() -> None:
    both = {"p-ana": 0, "p-bo": 0}
    writer = FakeWriter()
    engine = StoryEngine(writer, seed=3)
    garbled = run(play(engine, [both]))
    writer.script = [scripted(GARBLED)]
    run(vote(engine, garbled, both, pregenerate=False))
    run(vote(engine, garbled, both))  # the garbled scene is in this step's history, which training scores
    looping = run(play(engine, []))
    writer.script = [scripted(LOOPING)]
    run(vote(engine, looping, both, pregenerate=False))
    lax = StoryEngine(writer, EngineRules(checks=CheckRules(min_words=5)), seed=3)  # a game under laxer rules
    cut_off = run(play(lax, []))
    writer.script = [scripted("The robot blinks once, then twice.")]
    run(vote(lax, cut_off, both, pregenerate=False))
    for game in (garbled, looping, cut_off):
        cheer(game, range(1, len(game.path)))  # liked by the players: the text checks do not ask them
    result = harvest([garbled, looping, cut_off], frozenset(), [])

    assert nonzero(result.counts) == {"games": 3, "steps_candidates": 5, "steps_kept": 1, "steps_dropped_garbled": 2,
                                      "steps_dropped_looping": 1, "steps_dropped_too_short": 1,
                                      "pairs_candidates": 3, "pairs_kept_vote": 3, "pairs_kept": 3}
    assert [s.id.split("@")[0] for s in result.steps] == [f"play/{garbled.id}/0>1"]
    # Pairs judge the answers only (DPO does not score the prompt): the vote after the garbled scene stands.
    assert {p.source.scene for p in result.pairs} == {1, 3}
    # The thresholds are options: a looser invented-word share lets the starter's scene through.
    loose = FeedbackOptions(max_invented_share=0.5, invented_words_allowed=10)
    assert harvest([garbled], frozenset(), [], loose).counts["steps_kept"] == 3


def test_a_garbled_answer_is_never_preferred_but_may_be_rejected() -> None:
    writer = FakeWriter()
    engine = StoryEngine(writer, seed=3)
    worse = run(play(engine, [{"p-ana": 0, "p-bo": 0}]))
    writer.script = [scripted(GARBLED)]
    run(engine.retry(worse))  # the garbled replacement over the scene it replaced
    better = run(play(engine, []))
    writer.script = [scripted(GARBLED)]
    run(vote(engine, better, {"p-ana": 0, "p-bo": 0}, pregenerate=False))
    run(engine.retry(better))  # a good scene over the garbled one
    for game in (worse, better):
        cheer(game, [1])
    result = harvest([worse, better], frozenset(), [])

    assert nonzero(result.counts) == {"games": 2, "steps_candidates": 2, "steps_kept": 1, "steps_dropped_garbled": 1,
                                      "pairs_candidates": 4, "pairs_dropped_overruled": 2, "pairs_dropped_garbled": 1,
                                      "pairs_kept_retry": 1, "pairs_kept": 1}
    [pair] = result.pairs
    assert pair.source.game == better.id and pair.rejected_scene.narration == GARBLED


def test_no_player_decides_more_than_their_share() -> None:
    engine = new_engine()
    games = []
    for n in range(6):  # a troll with a different accomplice each time decides six games...
        game = run(play(engine, [{"p-troll": 0, f"p-sock{n}": 0}], players=["p-troll", f"p-sock{n}"]))
        cheer(game, [1], ["p-troll", f"p-sock{n}"])
        games.append(game)
    for n in range(4):  # ...four other tables one each
        players = [f"p-a{n}", f"p-b{n}"]
        game = run(play(engine, [dict.fromkeys(players, 0)], players=players, owner=players[0]))
        cheer(game, [1], players)
        games.append(game)

    # The default floor lets anyone decide 10 rows: nothing is capped in a play of ten steps.
    assert harvest(games, frozenset(), []).counts["steps_dropped_player_cap"] == 0
    capped = harvest(games, frozenset(), [], FeedbackOptions(max_player_share=0.25, player_cap_floor=1))
    counts = capped.counts
    assert nonzero(counts) == {"games": 10, "steps_candidates": 10, "steps_kept": 5, "steps_dropped_player_cap": 5,
                               "pairs_candidates": 20, "pairs_kept_vote": 10, "pairs_dropped_player_cap": 10,
                               "pairs_kept": 10}
    # The troll keeps its oldest step, and 1 of 5 (2 of 10 pairs) is within a quarter.
    assert [s.id.split("/")[1] for s in capped.steps] == [games[0].id, *(g.id for g in games[6:])]
    assert (counts["steps_deciders"], counts["steps_most_by_one_player"]) == (10, 1)
    assert (counts["pairs_deciders"], counts["pairs_most_by_one_player"]) == (10, 2)


deciders = st.lists(st.frozensets(st.sampled_from("abcdef"), max_size=3), max_size=40)


@settings(max_examples=200, deadline=None)
@given(deciders, st.floats(0.05, 1.0), st.integers(0, 6))
def test_the_cap_holds_for_the_rows_kept(rows: list[frozenset[str]], share: float, floor: int) -> None:
    kept = player_cap(rows, share, floor)
    decided = Counter(player for players, fits in zip(rows, kept, strict=True) if fits for player in players)
    allowed = max(floor, int(share * sum(kept) + 1e-9))
    assert max(decided.values(), default=0) <= allowed
    assert all(kept[i] for i, players in enumerate(rows) if not players)  # nobody decided it: nobody is capped
    if share == 1.0:
        assert all(kept)
