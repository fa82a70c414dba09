"""The harvest rules, on games played through the real engine (fake writer, real votes, retries, ratings)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from data.feedback import FeedbackOptions, PairKind, ShingleIndex, harvest, pairs_from_jsonl, pairs_to_jsonl
from data.steps import Step, read_steps, steps_to_jsonl
from engine.checks import overlap
from engine.fakes import FakeWriter
from engine.game import Game
from engine.prompt_format import ACTION, StoryContext, Turn, render_prompt, render_target
from engine.turns import REPAIR_MARK, StoryEngine
from tests.data.games import LORE, PREMISE, new_engine, nonzero, play, rate, vote

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
    result = harvest([game], frozenset(), [])

    assert nonzero(result.counts) == {"games": 1, "steps_candidates": 3, "steps_kept": 3, "pairs_candidates": 6,
                                      "pairs_kept_vote": 6, "pairs_kept": 6}
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
    rate(game, "p-bo", 1, thumb="down")  # on the first version of scene 1
    first = game.path[1].scene
    run(engine.retry(game))
    rate(game, "p-bo", 1, thumb="up")  # on the replacement
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

    # After a second retry the earlier ratings cannot be tied to one version any more.
    run(engine.retry(game))
    again = harvest([game], frozenset(), [])
    assert again.counts["ratings_unattributed"] == 2
    assert [p.kind for p in again.pairs] == [PairKind.RETRY, PairKind.RETRY]
    assert {p.rejected_scene.narration for p in again.pairs} == {first.narration, pair.chosen_scene.narration}


def test_opted_out_players_count_as_if_they_never_played() -> None:
    engine = new_engine()
    players = ("p-ana", "p-bo", "p-zed", "p-yan")
    game = run(play(engine, [{"p-zed": 1},  # only opted-out votes
                             {"p-zed": 1, "p-yan": 1, "p-ana": 2},  # their votes decided it
                             {"p-zed": 0, "p-ana": 0}],  # an opted-in vote upholds the choice
                    players=players))
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
    result = harvest([unvoted, terminal], frozenset(), [])

    assert nonzero(result.counts) == {"games": 2, "steps_candidates": 2, "steps_kept": 1, "steps_dropped_unvoted": 1,
                                      "pairs_candidates": 4, "pairs_dropped_unvoted": 2, "pairs_kept_vote": 2,
                                      "pairs_kept": 2}
    assert result.steps[0].id.startswith(f"play/{terminal.id}/0>1")
    assert not harvest([terminal], {"you"}, []).steps  # every player of it opted out


def test_repaired_placeholders_are_never_learned() -> None:
    writer = FakeWriter()
    engine = StoryEngine(writer, seed=3)
    game = run(play(engine, [{"p-ana": 0}]))
    writer.script = ["not a scene"] * 3  # every attempt fails: the engine repairs the scene
    run(vote(engine, game, {"p-ana": 1}, pregenerate=False))
    assert game.path[2].scene.repaired and REPAIR_MARK in game.path[2].scene.narration
    run(vote(engine, game, {"p-ana": 0}))
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
    starred = run(play(engine, [{"p-ana": 0}, {"p-ana": 1}, {"p-ana": 2}]))
    rate(starred, "p-ana", 3, stars=2)
    rate(starred, "p-bo", 3, stars=2)  # mean 2 stars
    thumbed = run(play(engine, [{"p-ana": 0}, {"p-ana": 1}]))
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
    kraken = run(engine.start("discord:g:c", "mecha", "A kraken sleeps under the hangar of a silent robot.",
                              ["p-ana"], owner="p-ana"))
    run(vote(engine, kraken, {"p-ana": 0}))
    game = run(play(engine, [{"p-ana": 0}]))
    writer.script = [scripted("The cable leads you down to a flooded tunnel where a pale sea serpent coils around "
                              "the robot's missing arm, its scales flickering like lanterns.")]
    run(vote(engine, game, {"p-ana": 1}, pregenerate=False))
    run(vote(engine, game, {"p-ana": 0}))  # two choices: one losing branch
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
    [pair] = [p for p in harvest([game], frozenset(), []).pairs if p.kind == PairKind.RETRY]
    row = json.loads(pair.to_json())
    assert set(row) == {"id", "kind", "prompt", "chosen", "rejected", "genre", "premise", "lore", "history", "scene",
                        "choices", "chosen_action", "rejected_action", "chosen_scene", "rejected_scene", "source"}
    assert row["source"] == {"game": game.id, "scene": 1, "model_version": "fake/1", "rejected_model_version": "fake/1"}
    assert row["scene"] == game.path[0].scene.narration and row["chosen_action"] == row["rejected_action"] == 0
