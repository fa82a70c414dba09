from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from engine.checks import CheckRules
from engine.errors import BlockedTextError, GameRuleError, RejectedOutputError, StateError
from engine.fakes import FakeWriter
from engine.game import Game, GameStatus
from engine.prompt_format import Turn, render_target
from engine.queue import BatchingWriter
from engine.turns import REPAIR_MARK, EngineRules, Premise, StoryEngine, rolling_summary

T = TypeVar("T")
PREMISES = [Premise("mecha", "A rookie pilot defends a drowned city.", ("Aoi-senpai leads the squad.",)),
            Premise("idol", "A trainee has one week to learn a song.", ())]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def scene(text: str, choices: list[str] | None = None, ending: str | None = None) -> str:
    """A scripted answer; the text is repeated to reach the minimum length (distinct texts stay distinct)."""
    narration = " ".join([text] * (24 // len(text.split()) + 1))
    return render_target(narration, choices or [], ending if not choices else None)


def make(script: list[str] | None = None, **rules: Any) -> tuple[StoryEngine, FakeWriter]:
    """An engine over a fake writer behind the scheduling queue, as every frontend wires it (the queue batches a
    scene's branch requests into one call)."""
    writer = FakeWriter(script or [])
    return StoryEngine(BatchingWriter(writer, gather_seconds=0.0), EngineRules(**rules), PREMISES, seed=1), writer


def test_start_writes_an_opening_from_genre_premise_and_lore() -> None:
    engine, writer = make()
    game = run(engine.start("terminal", "mecha", "A pilot wakes in a flooded hangar.", ["ana"], ["Aoi leads."]))
    assert game.status == GameStatus.WAITING and game.model_version == "fake/1"
    assert len(game.path) == 1 and len(game.current.scene.choices) == 3
    [[request]] = writer.calls
    assert request.context.path == () and request.context.lore == ("Aoi leads.",) and not request.must_end


def test_start_draws_a_premise_of_the_genre() -> None:
    engine, _ = make()
    game = run(engine.start("terminal", "idol"))
    assert (game.genre, game.premise) == ("idol", "A trainee has one week to learn a song.")
    anything = run(engine.start("terminal"))
    assert anything.premise in {p.premise for p in PREMISES}


def test_start_refuses_unknown_genre_and_blocked_premise() -> None:
    engine = StoryEngine(FakeWriter(), EngineRules(checks=CheckRules(block_list=frozenset({"gore"}))), PREMISES)
    with pytest.raises(GameRuleError, match="unknown genre 'western'"):
        run(engine.start("t", "western"))
    with pytest.raises(BlockedTextError, match=r"blocked word \(gore\)"):
        run(engine.start("t", "mecha", "A tale of GORE and glory."))
    with pytest.raises(GameRuleError, match="no premise known for genre 'cooking'"):
        run(engine.start("t", "cooking"))


def test_branches_are_written_in_one_batch_and_the_chosen_one_is_shown_at_once() -> None:
    engine, writer = make()

    async def scenario() -> Game:
        game = await engine.start("t", "mecha", "A pilot wakes.")
        await engine.start_pregeneration(game)
        return await engine.choose(game, 1)

    game = run(scenario())
    assert len(writer.calls) == 2  # the opening, then every branch in one call; choosing wrote nothing
    branches = writer.calls[1]
    # one request a choice, in the order the (unvoted) choices stand: the tie-break draw's first
    assert sorted(r.context.path[-1].action for r in branches) == sorted(game.path[0].scene.choices)
    assert game.path[0].chosen == 1 and len(game.path[0].branches) == 3  # the branches not taken are kept
    assert game.current.scene == game.path[0].branches[1]


def test_choose_without_branches_writes_on_demand() -> None:
    engine, writer = make()
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    run(engine.choose(game, 0))
    assert len(writer.calls) == 2 and len(writer.calls[1]) == 1
    with pytest.raises(GameRuleError, match=r"choice 5 does not exist; pick 1-3"):
        run(engine.choose(game, 4))


def test_the_maximum_length_ends_the_story() -> None:
    engine, writer = make(max_scenes=3, min_scenes=2)
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    run(engine.choose(game, 0))
    run(engine.choose(game, 0))
    assert writer.calls[-1][0].must_end and game.current.scene.is_ending and game.status == GameStatus.ENDED
    with pytest.raises(GameRuleError, match="this story has ended"):
        run(engine.choose(game, 0))


def test_the_model_may_end_the_story_after_its_minimum_length() -> None:
    engine, _ = make([scene("You wake.", ["Run for the exit", "Hide behind the crates"]), scene("The sea takes the city.", ending="bad")],
                     min_scenes=2)
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    run(engine.choose(game, 0))
    assert game.status == GameStatus.ENDED and game.current.scene.ending == "bad"


def test_an_ending_before_the_minimum_length_is_rejected() -> None:
    engine, writer = make([scene("You wake.", ["Run for the exit", "Hide behind the crates"]), scene("The sea takes the city.", ending="bad")],
                          min_scenes=4)
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    run(engine.choose(game, 0))
    assert game.status == GameStatus.WAITING and not game.current.scene.is_ending
    assert not writer.calls[1][0].may_end and writer.calls[-1][0].may_end is False
    assert engine.stats.as_dict()["fake/1"]["an ending before the story's minimum length"] == 1


def test_retry_rewrites_the_scene_and_keeps_the_old_one() -> None:
    engine, writer = make()
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    run(engine.choose(game, 2))
    first = game.current.scene
    run(engine.retry(game))
    assert game.current.rejected == [first] and game.current.scene != first and len(game.path) == 2
    assert writer.calls[-1][0].context == writer.calls[-2][0].context  # same request, a new sample


def test_undo_returns_to_the_previous_scene() -> None:
    engine, _ = make()
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    with pytest.raises(GameRuleError, match="no earlier scene"):
        run(engine.undo(game))
    run(engine.choose(game, 1))
    run(engine.undo(game))
    assert len(game.path) == 1 and game.current.chosen is None and game.status == GameStatus.WAITING
    assert len(game.undone) == 1


def test_bad_outputs_are_retried_then_repaired_and_counted() -> None:
    bad = ["<|scene|>cut off", "<|scene|>Too short.<|choices|><|choice|>A<|choice|>B<|end|>", "no markers at all"]
    engine, writer = make(bad)
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    assert game.current.scene.repaired and game.current.scene.narration.startswith(REPAIR_MARK)
    assert len(writer.calls) == 3
    counts = engine.stats.as_dict()["fake/1"]
    assert counts["outputs"] == 3 and counts["parse_failures"] == 2 and counts["repairs"] == 1
    engine2, _ = make([bad[0], scene("Second try works.", ["Run for the exit", "Hide behind the crates"])])
    game2 = run(engine2.start("t", "mecha", "A pilot wakes."))
    assert not game2.current.scene.repaired and game2.current.scene.attempts == 2


def test_near_copies_and_blocked_words_are_rejected() -> None:
    opening = scene("You wake in the hangar.", ["Run for the exit", "Hide behind the crates"])
    engine, _ = make([opening, opening, scene("Gore everywhere.", ["Run for the exit", "Hide behind the crates"]),
                      scene("Aoi waves from the catwalk.", ["Wave back at her", "Shout her name"])],
                     checks=CheckRules(block_list=frozenset({"gore"})))
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    run(engine.choose(game, 0))
    assert game.current.scene.narration.startswith("Aoi waves")
    assert engine.stats.as_dict()["fake/1"]["a near-copy of an earlier scene"] == 1
    assert engine.stats.as_dict()["fake/1"]["blocked word(s)"] == 1


def test_older_scenes_go_into_a_rolling_summary() -> None:
    engine, writer = make(recent_scenes=2)
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    for _ in range(3):
        run(engine.choose(game, 0))
    context = writer.calls[-1][0].context
    assert len(context.path) == 2 and context.summary.startswith("Scene 1.")
    assert "You chose: Take path 1-a." in context.summary
    assert rolling_summary([Turn("One. Two.", "Go")] * 50, 30).count("You chose") < 50


def test_save_load_continue_gives_the_same_game() -> None:
    engine, _ = make()
    game = run(engine.start("t", "mecha", "A pilot wakes.", ["ana"]))
    run(engine.choose(game, 1))
    run(engine.pregenerate(game))
    saved = game.to_json()
    loaded = Game.from_json(saved)
    assert loaded == game
    engine_a, _ = make()
    engine_b, _ = make()
    engine_a.writer._count = engine_b.writer._count = 10  # type: ignore[attr-defined]
    run(engine_a.choose(game, 0))
    run(engine_b.choose(loaded, 0))
    assert [s.scene for s in loaded.path] == [s.scene for s in game.path]
    assert Game.from_json(loaded.to_json()) == loaded


def test_state_from_a_newer_cyoa_is_refused() -> None:
    engine, _ = make()
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    newer = game.to_json().replace('"state_version":1', '"state_version":99')
    with pytest.raises(StateError, match="state version 99; this cyoa reads up to 1"):
        Game.from_json(newer)
    with pytest.raises(StateError, match="not JSON"):
        Game.from_json("{")


def test_the_memory_store_keeps_copies_and_finds_unfinished_games() -> None:
    from engine.fakes import MemoryStore

    store = MemoryStore()
    engine, _ = make()
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    run(store.save(game))
    run(engine.choose(game, 0))
    assert len(run(store.load(game.id)).path) == 1  # a copy as saved, not the live object
    assert [g.id for g in run(store.unfinished())] == [game.id]
    run(store.add_output_counts({"fake/1": {"outputs": 2}}))
    run(store.add_output_counts({"fake/1": {"outputs": 1}}))
    assert store.counts == {"fake/1": {"outputs": 3}}


@pytest.mark.parametrize(("choices", "reason"), [
    (["Sh", "Ask the cockpit for me the hour before dawn"], "choice length: 'Sh' has 1 word(s), needs 2-20"),
    (["Climb the ladder", " ".join(["very"] * 21)], "choice length"),
])
def test_fragment_choices_are_refused_and_written_again(choices: list[str], reason: str) -> None:
    # The starter model once offered "Sh" as a choice: a fragment of a word must never reach a player.
    good = scene("Second try works.", ["Run for the exit", "Hide behind the crates"])
    engine, writer = make([scene("You wake in the hangar.", choices), good])
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    assert game.current.scene.choices == ("Run for the exit", "Hide behind the crates")
    assert game.current.scene.attempts == 2 and len(writer.calls) == 2
    rejected = engine.stats.as_dict()["fake/1"]
    assert rejected["choice length"] == 1
    from engine.checks import check_output

    with pytest.raises(RejectedOutputError) as caught:
        check_output(scene("You wake in the hangar.", choices), [], CheckRules())
    assert reason in caught.value.reason


@pytest.mark.parametrize("cut", ["Let Kanpei-kun take the", "Run to", "Tell her,", 'Shout "Wait for'])
def test_a_choice_cut_off_mid_phrase_is_refused_and_written_again(cut: str) -> None:
    # Seen by a player when the token limit fell inside the last choice: "Let Kanpei-kun take the".
    good = scene("Second try works.", ["Run for the exit", "Press on"])
    engine, writer = make([scene("You wake in the hangar.", ["Climb the ladder", cut]), good])
    game = run(engine.start("t", "mecha", "A pilot wakes."))
    assert game.current.scene.choices == ("Run for the exit", "Press on")  # "on" may close an action
    assert len(writer.calls) == 2 and engine.stats.as_dict()["fake/1"]["choice cut off"] == 1


def test_a_choice_too_long_for_its_place_on_screen_is_refused() -> None:
    from engine.checks import CheckRules, check_output
    from engine.errors import RejectedOutputError
    from engine.prompt_format import render_target

    narration = ("You step onto the old pier as the paper lanterns flicker and the harbor bell rings twice, "
                 "somewhere out in the thick grey fog.")
    long_choice = "Run " + "very-extraordinarily-long-winded " * 5 + "towards the bell"
    assert len(long_choice.split()) <= CheckRules().max_choice_words < len(long_choice) // 7
    with pytest.raises(RejectedOutputError, match="characters, at most 150"):
        check_output(render_target(narration, [long_choice, "Wait by the pier", "Call out into the fog"], None),
                     [], CheckRules())
    fine = check_output(render_target(narration, ["Run towards the bell", "Wait by the pier"], None), [], CheckRules())
    assert fine.choices == ("Run towards the bell", "Wait by the pier")
