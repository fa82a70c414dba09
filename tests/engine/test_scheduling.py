"""Vote-aware branch scheduling and the streamed cold path, over the real queue and engine (a fake writer)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from engine.errors import StorytellerBusyError
from engine.fakes import FakeWriter
from engine.game import Game
from engine.ports import Priority, WriteRequest, WrittenScene
from engine.prompt_format import StoryContext, partial_narration, render_target
from engine.queue import BatchingWriter
from engine.turns import StoryEngine
from engine.votes import VoteRules, cast, close_vote, open_vote, tie_seed

NOW = datetime(2026, 12, 3, tzinfo=UTC)


class GatedWriter(FakeWriter):
    """A fake that holds each call until released, one call at a time, so the queue behind it can be watched."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Semaphore(0)

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        await self.gate.acquire()
        return await super().write(requests)


def action_of(request: WriteRequest) -> str:
    return request.context.path[-1].action if request.context.path else "(opening)"


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0.01)


async def opened(engine: StoryEngine, writer: GatedWriter, place: str) -> Game:
    task = asyncio.create_task(engine.start(place, "mecha", f"A pilot wakes in {place}."))
    await settle()
    writer.gate.release()
    game = await task
    open_vote(game, VoteRules(), NOW)
    return game


def test_the_leading_choice_of_every_game_is_written_before_anyone_gets_a_third() -> None:
    async def scenario() -> list[list[str]]:
        writer = GatedWriter()
        queue = BatchingWriter(writer, max_batch=2, gather_seconds=0.03)
        engine = StoryEngine(queue)
        games = [await opened(engine, writer, f"table-{n}") for n in range(3)]
        cast(games[0], "ana", 2, NOW)  # game 0 leans to its third choice, game 1 to its second
        cast(games[1], "bo", 1, NOW)
        for game in games:
            engine.start_pregeneration(game)
        await settle()
        cast(games[2], "cy", 2, NOW)  # a vote arrives while the branches wait: game 2's third choice leads now
        for _ in range(5):
            writer.gate.release()
            await settle()
        return [[action_of(r) for r in call] for call in writer.calls[3:]]

    calls = asyncio.run(scenario())
    # Three games x three branches, two a call: every game's leading branch first (game 2's as its vote moved
    # while it waited), then every game's second, then the thirds; oldest first within a rank. (Which of the
    # two unvoted choices is a game's second is its tie-break draw's.)
    written = [action for call in calls for action in call]
    assert [len(call) for call in calls] == [2, 2, 2, 2, 1]
    assert written[:3] == ["Wait and watch 1", "Take path 2-b", "Wait and watch 3"]
    assert [game_of(action) for action in written[3:]] == [1, 2, 3, 1, 2, 3]
    assert sorted(written[3:]) == ["Take path 1-a", "Take path 1-b", "Take path 2-a", "Take path 3-a",
                                   "Take path 3-b", "Wait and watch 2"]


def game_of(action: str) -> int:
    """The game a fake writer's choice belongs to ("Take path 2-a": the second game opened)."""
    return int(re.findall(r"\d+", action)[0])


def test_a_tied_vote_writes_first_the_branch_its_draw_would_take() -> None:
    async def scenario() -> tuple[str, str, int]:
        writer = GatedWriter()
        engine = StoryEngine(BatchingWriter(writer, max_batch=1, gather_seconds=0.03))
        game = await opened(engine, writer, "table")
        cast(game, "ana", 0, NOW)
        cast(game, "bo", 2, NOW)  # one vote each: the draw decides, and its seed is known while the vote is open
        engine.start_pregeneration(game)
        await settle()
        writer.gate.release()
        await settle()
        result = close_vote(game, VoteRules(), NOW, tie_seed(game))
        assert result.tie_break == (0, 2) and result.choice is not None
        return action_of(writer.calls[1][0]), game.current.scene.choices[result.choice], result.choice

    firsts = [asyncio.run(scenario()) for _ in range(16)]
    assert all(first == taken for first, taken, _ in firsts)
    assert {choice for _, _, choice in firsts} == {0, 2}  # games differ: the draw took either choice


def test_branches_that_cannot_win_wait_behind_another_games_that_still_can() -> None:
    async def scenario() -> list[str]:
        writer = GatedWriter()
        engine = StoryEngine(BatchingWriter(writer, max_batch=1, gather_seconds=0.03))
        settled = await opened(engine, writer, "discord:1:10")  # two channels of one server: one tenant
        cast(settled, "ana", 0, NOW)
        chosen = asyncio.create_task(engine.choose(settled, 0))  # ana was the one voter: she is expected again
        await settle()
        writer.gate.release()
        await chosen
        fresh = await opened(engine, writer, "discord:1:11")
        open_vote(settled, VoteRules(), NOW)
        cast(settled, "ana", 1, NOW)  # everyone expected has voted: choices 1 and 3 cannot draw level
        cast(fresh, "bo", 2, NOW)  # nobody is expected at an opening: its other choices may still win
        engine.start_pregeneration(settled)
        engine.start_pregeneration(fresh)
        for _ in range(6):
            await settle()
            writer.gate.release()
        await settle()
        return [action_of(call[0]) for call in writer.calls[3:]]

    written = asyncio.run(scenario())
    # Both leading branches first (the older game's first), then the fresh game's choices a vote behind, and
    # last the settled game's, which only a changed vote could still bring level.
    assert [game_of(action) for action in written] == [2, 3, 3, 3, 2, 2]
    assert written[:2] == ["Take path 2-b", "Wait and watch 3"]


def test_closing_on_a_choice_drops_the_branches_not_started_and_keeps_those_written() -> None:
    async def scenario() -> tuple[list[list[str]], list[int], str, list[str]]:
        writer = GatedWriter()
        queue = BatchingWriter(writer, max_batch=1, gather_seconds=0.03)
        engine = StoryEngine(queue)
        game = await opened(engine, writer, "table")
        cast(game, "ana", 1, NOW)
        engine.start_pregeneration(game)
        await settle()
        writer.gate.release()  # the leading branch (choice 2) is written
        await settle()
        chosen = asyncio.create_task(engine.choose(game, 1))
        await settle()
        for _ in range(3):
            writer.gate.release()
            await settle()
        await chosen
        branches = sorted(game.path[0].branches)
        calls = [[action_of(r) for r in call] for call in writer.calls[1:]]
        return calls, branches, game.current.scene.narration, game.path[0].scene.choices

    calls, branches, narration, choices = asyncio.run(scenario())
    # The leading branch (choice 2) first; the second (choice 1 or 3, as the tie-break draw orders them) had
    # gone to the model when the vote closed on 2, the third was still queued: it is never written. Both
    # written branches stay (preference data).
    assert len(calls) == 2 and calls[0] == ["Take path 1-b"]
    second = choices.index(calls[1][0])
    assert second in (0, 2) and branches == sorted([1, second])
    assert "You take path 1-b" in narration


def test_a_waiting_player_outranks_every_branch_and_a_full_queue_sheds_the_least_wanted() -> None:
    async def scenario() -> tuple[list[str], int]:
        writer = GatedWriter()
        queue = BatchingWriter(writer, max_batch=1, max_pending=1, gather_seconds=0.0, tenant_share=1.0)
        context = StoryContext("mecha", "A premise.")
        branch = [WriteRequest(context, priority=Priority(urgency=lambda rank=rank: rank)) for rank in (1, 2)]
        branches = []
        for request in branch:  # the first goes to the model, the second waits: the queue (of one) is full
            branches.append(asyncio.create_task(queue.write([request])))
            await settle()
        blocker = writer.gate
        cold = asyncio.create_task(queue.write([WriteRequest(StoryContext("idol", "Someone waits."))]))
        more = asyncio.create_task(queue.write([WriteRequest(StoryContext("sports", "Another."))]))
        await settle()
        for _ in range(3):
            blocker.release()
            await settle()
        await cold
        shed = [task for task in branches if task.cancelled()]
        with pytest.raises(StorytellerBusyError):
            await more  # a second waiting request finds no branch left to shed
        return [r.context.genre for call in writer.calls for r in call], len(shed)

    genres, shed = asyncio.run(scenario())
    assert genres == ["mecha", "idol"] and shed == 1


def test_a_scene_written_on_demand_streams_its_narration_and_never_shows_markers() -> None:
    async def scenario() -> tuple[list[str], str]:
        engine = StoryEngine(BatchingWriter(FakeWriter(), gather_seconds=0.0))
        seen: list[str] = []
        game = await engine.start("table", "mecha", "A pilot wakes.", progress=seen.append)
        return seen, game.current.scene.narration

    seen, narration = asyncio.run(scenario())
    assert len(seen) > 10 and seen[-1] == narration  # it grew word by word and ended as the shown narration
    assert all(narration.startswith(part) for part in seen)
    assert not any("<|" in part for part in seen)


def test_an_attempt_that_fails_its_checks_is_taken_back_before_the_next_streams() -> None:
    bad = render_target("You walk. You walk. You walk.", ["Go"], None)  # one choice: refused

    async def scenario() -> list[str]:
        engine = StoryEngine(BatchingWriter(FakeWriter([bad]), gather_seconds=0.0))
        seen: list[str] = []
        await engine.start("table", "mecha", "A pilot wakes.", progress=seen.append)
        return seen

    seen = asyncio.run(scenario())
    reset = seen.index("")
    assert seen[reset - 1] == "You walk. You walk. You walk." and seen[-1].startswith("Scene 1. You open your eyes.")


@pytest.mark.parametrize(("text", "shown"), [
    ("<|scene|>You run", "You run"),
    ("<|scene|>You run to the gate.<|cho", "You run to the gate."),
    ("<|scene|>You run.<|choices|><|choice|>Hide", "You run."),
    ("", ""),
])
def test_partial_narration_shows_only_the_narration(text: str, shown: str) -> None:
    assert partial_narration(text) == shown


class BrokenWriter(FakeWriter):
    """Writes the opening; every later call fails as a model would (not a busy queue: a real fault)."""

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        if self.calls:
            self.calls.append(list(requests))
            raise RuntimeError("CUDA out of memory (a model fault)")
        return await super().write(requests)


def test_a_branch_the_model_fails_to_write_is_no_branch_and_the_choice_is_written_when_taken() -> None:
    async def scenario() -> tuple[dict[int, object], str]:
        writer = BrokenWriter()
        engine = StoryEngine(BatchingWriter(writer, gather_seconds=0.0))
        game = await engine.start("table", "mecha", "A pilot wakes.")
        branches = dict(await engine.pregenerate(game))
        writer.calls.clear()  # the model recovers: the chosen scene is written on demand
        await engine.choose(game, 1)
        return branches, game.current.scene.narration

    branches, narration = asyncio.run(scenario())
    assert branches == {} and "You take path 1-b" in narration


class OverlappingWriter(FakeWriter):
    """A fake continuously batching decoder with two slots: calls overlap, and each request is held until the
    test finishes it, so the order in which the queue hands requests over can be watched."""

    slots_in_flight = 2

    def __init__(self) -> None:
        super().__init__()
        self.started: list[str] = []
        self.finish: dict[str, asyncio.Event] = {}
        self.most_at_once = 0
        self.now = 0

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        assert len(requests) == 1, "an overlapping writer gets one request a call"
        name = requests[0].context.premise
        self.started.append(name)
        self.finish[name] = asyncio.Event()
        self.now += 1
        self.most_at_once = max(self.most_at_once, self.now)
        try:
            await self.finish[name].wait()
        finally:
            self.now -= 1
        return await super().write(requests)


def test_an_overlapping_writer_gets_the_most_urgent_request_as_soon_as_any_slot_frees() -> None:
    def request(name: str, urgency: int | None) -> WriteRequest:
        priority = None if urgency is None else Priority(lambda: urgency)
        return WriteRequest(StoryContext("mecha", name), priority=priority)

    async def scenario() -> tuple[list[str], int, list[str]]:
        writer = OverlappingWriter()
        queue = BatchingWriter(writer, max_batch=8, gather_seconds=0.0, speculative_share=1.0)
        branches = [asyncio.create_task(queue.write([request(f"branch {n}", n)])) for n in (1, 2, 3)]
        await settle()
        assert writer.started == ["branch 1", "branch 2"]  # two slots: the third waits
        waiting = asyncio.create_task(queue.write([request("a player waits", None)]))
        await settle()
        writer.finish["branch 2"].set()  # one sequence ends while the other is still being written
        await settle()
        started_then = list(writer.started)
        for name in ("branch 1", "a player waits"):
            writer.finish[name].set()
        await settle()
        writer.finish["branch 3"].set()
        answers = await asyncio.gather(*branches, waiting)
        assert not queue.busy
        return started_then, writer.most_at_once, [scenes[0].text for scenes in answers]

    started, most, answers = asyncio.run(scenario())
    # The waiting player's scene takes the freed slot at once, before the queued branch and while branch 1 is
    # still being written (not after a whole batch); never more than the writer's slots at once.
    assert started == ["branch 1", "branch 2", "a player waits"]
    assert most == 2
    assert all(partial_narration(answer) for answer in answers)


def test_speculative_branches_leave_room_that_winners_and_waiting_players_may_take() -> None:
    def request(name: str, urgency: int | None) -> WriteRequest:
        priority = None if urgency is None else Priority(lambda: urgency)
        return WriteRequest(StoryContext("mecha", name), priority=priority)

    async def scenario() -> list[str]:
        writer = OverlappingWriter()
        writer.slots_in_flight = 4
        queue = BatchingWriter(writer, max_batch=8, gather_seconds=0.0)  # speculative below 2 of the 4 slots
        losers = [asyncio.create_task(queue.write([request(f"loser {n}", 2)])) for n in range(3)]
        await settle()
        assert writer.started == ["loser 0", "loser 1"]  # the third waits though two slots are free
        urgent = [asyncio.create_task(queue.write([request("leading", 1)])),
                  asyncio.create_task(queue.write([request("a player waits", None)]))]
        await settle()
        assert writer.started[2:] == ["a player waits", "leading"]  # they take the free slots at once
        writer.finish["loser 0"].set()
        await settle()
        assert "loser 2" not in writer.started  # 3 busy: a speculative one still may not start
        for name in ("loser 1", "leading", "a player waits"):
            writer.finish[name].set()
        await settle()
        writer.finish["loser 2"].set()
        await asyncio.gather(*losers, *urgent)
        assert not queue.busy and writer.most_at_once == 4
        return writer.started

    assert asyncio.run(scenario())[-1] == "loser 2"

