"""The cold path streamed into Discord (simcord, virtual time): the scene being written appears in one message,
edited no more than once every 1.5 s, and that message becomes the checked scene with its choices and
reactions; a draft whose writing fails is removed, never left half-shown."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import discord
import pytest

from bot.render import NUMBERS
from engine.errors import StorytellerBusyError
from engine.fakes import FakeWriter
from engine.ports import WriteRequest, WrittenScene
from tests.bot.conftest import Server

pytestmark = pytest.mark.asyncio


class FailingWriter(FakeWriter):
    """Writes the opening; afterwards it streams a few words of each scene and then fails (busy)."""

    async def write(self, requests: Sequence[WriteRequest]) -> list[WrittenScene]:
        if self.calls:
            for request in requests:
                if request.on_text is not None:
                    request.on_text("<|scene|>You start to")
            raise StorytellerBusyError("the storyteller is busy, try again in a moment")
        return await super().write(requests)


@pytest.fixture
def edits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str, str]]:
    """Every edit of a message by the bot: (loop time, the embed's title, its text)."""
    seen: list[tuple[float, str, str]] = []
    original = discord.Message.edit

    async def spy(self: discord.Message, **kwargs: Any) -> discord.Message:
        embed = kwargs.get("embed")
        seen.append((asyncio.get_running_loop().time(), embed.title or "" if embed is not None else "",
                     embed.description or "" if embed is not None else ""))
        return await original(self, **kwargs)

    monkeypatch.setattr(discord.Message, "edit", spy)
    return seen


async def test_the_opening_streams_into_one_message_that_becomes_the_scene(
        server: Server, edits: list[tuple[float, str, str]]) -> None:
    result = await server.alice.slash(server.channel, "adventure start", genre="fantasy")
    assert "started a Fantasy adventure" in result.response.content
    [scene] = server.scenes()
    # The draft message itself became the scene: its last edit put the checked scene and choices in it.
    assert edits and edits[-1][1].endswith("scene 1 of at most 12")
    assert "What do you do?" in scene.embeds[0].fields[0].name
    await server.env.settle()
    assert [str(r.emoji) for r in scene.reactions] == list(NUMBERS[:3])
    assert len([m for m in server.channel.history() if m.embeds]) == 1  # no second message for the scene


@pytest.mark.parametrize("writer", [FailingWriter()])
async def test_a_draft_whose_writing_fails_is_removed(server: Server) -> None:
    await server.alice.slash(server.channel, "adventure start", genre="fantasy")
    [scene] = server.scenes()
    await server.alice.react(scene, NUMBERS[0])
    await server.bob.react(scene, NUMBERS[0])
    await server.env.advance_time(61)  # the vote closes; the chosen scene streams, then its writing fails
    await server.env.settle()
    titles = [m.embeds[0].title for m in server.channel.history() if m.embeds]
    assert "The storyteller is writing…" not in titles  # the half-written draft was taken down
    contents = " ".join(m.content for m in server.channel.history())
    assert "could not be written" in contents and "busy" in contents


class StubMessage:
    def __init__(self, log: list[tuple[float, str]]) -> None:
        self.log = log
        self.id = 1

    async def edit(self, **kwargs: Any) -> StubMessage:
        self.log.append((asyncio.get_running_loop().time(), kwargs["embed"].description or ""))
        return self


class StubChannel(discord.abc.Messageable):
    def __init__(self, log: list[tuple[float, str]]) -> None:
        self.log = log

    async def _get_channel(self) -> Any:
        return self

    async def send(self, **kwargs: Any) -> Any:  # type: ignore[override]
        self.log.append((asyncio.get_running_loop().time(), kwargs["embed"].description or ""))
        return StubMessage(self.log)


class StubBot:
    def __init__(self, channel: StubChannel) -> None:
        self.channel = channel
        self.tasks: list[asyncio.Task[None]] = []

    def get_channel(self, channel_id: int) -> StubChannel:
        return self.channel

    def spawn(self, work: Any) -> asyncio.Task[None]:
        self.tasks.append(asyncio.get_running_loop().create_task(work))
        return self.tasks[-1]


async def test_a_draft_is_edited_at_most_once_per_interval_and_ends_with_the_newest_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import client

    monkeypatch.setattr(client, "DRAFT_EDIT_SECONDS", 0.2)
    shown: list[tuple[float, str]] = []
    presenter = client.DiscordPresenter(StubBot(StubChannel(shown)))  # type: ignore[arg-type]
    words = ["You", "climb", "the", "tower", "while", "the", "bell", "rings", "over", "the", "flooded", "city"]
    for count in range(1, len(words) + 1):  # a word every 20 ms: about 0.3 s of writing
        presenter.draft("discord:1:2", " ".join(words[:count]))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    times = [at for at, _ in shown]
    assert 2 <= len(shown) <= 4  # 12 words, but only the first send and an edit per 0.2 s
    assert all(later - earlier >= 0.2 - 1e-3 for earlier, later in itertools.pairwise(times))
    assert shown[0][1] == "You" and shown[-1][1] == " ".join(words)
