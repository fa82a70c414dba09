"""Every slash command through the real bot in simcord, with its permissions and its errors."""

from __future__ import annotations

import logging

import pytest
import simcord

from bot.client import CyoaBot
from bot.render import MARKS, NUMBERS
from data.store import SQLiteGameStore
from engine.game import Game
from engine.genres import GENRES
from tests.bot.conftest import Server

pytestmark = pytest.mark.asyncio
STAR, UP, DOWN = list(MARKS)


def bot_of(server: Server) -> CyoaBot:
    assert isinstance(server.env.bot, CyoaBot)
    return server.env.bot


async def start(server: Server, **options: object) -> Game:
    result = await server.alice.slash(server.channel, "adventure start", **options)
    assert "started a" in result.response.content, result
    return bot_of(server).tables.running(bot_of(server).tables.place(str(server.guild.id), str(server.channel.id)))


async def test_start_with_a_premise_of_ones_own(server: Server, store: SQLiteGameStore) -> None:
    game = await start(server, genre="mecha", premise="A courier finds a sleeping robot under the bridge.")
    saved = await store.load(game.id)
    assert (saved.genre, saved.premise, saved.owner) == ("mecha", "A courier finds a sleeping robot under the bridge.",
                                                         str(server.alice.id))
    assert saved.place == f"discord:{server.guild.id}:{server.channel.id}"


async def test_genre_autocomplete_offers_the_bundled_genres(server: Server) -> None:
    choices = await server.alice.autocomplete(server.channel, "adventure start", "genre", "mec")
    assert [c["value"] for c in choices] == ["mecha"]
    everything = await server.alice.autocomplete(server.channel, "adventure start", "genre", "")
    assert [c["value"] for c in everything] == [g.id for g in GENRES][:25]  # every genre, in order (at most 25)


@pytest.mark.parametrize(("options", "words"), [
    ({"genre": "westerns"}, "unknown genre 'westerns'"),
    ({"premise": "A forbidden door opens."}, "blocked word (forbidden)"),
])
async def test_a_start_that_cannot_work_is_refused_privately(server: Server, options: dict[str, str],
                                                             words: str) -> None:
    result = await server.alice.slash(server.channel, "adventure start", **options)
    server.refused(result, words)
    assert server.scenes() == []


async def test_one_adventure_per_channel(server: Server) -> None:
    await start(server)
    result = await server.bob.slash(server.channel, "adventure start")
    server.refused(result, "already running here; finish it, or end it with /adventure end")


async def test_status_shows_the_vote_so_far(server: Server) -> None:
    game = await start(server)
    await server.bob.react(server.scenes()[0], NUMBERS[1])
    result = await server.carol.slash(server.channel, "adventure status")
    assert result.ephemeral
    embed = result.response.embeds[0]
    vote = next(f for f in embed.fields if f.name.startswith("Vote"))
    assert f"{NUMBERS[1]} 1 vote(s) · {game.current.scene.choices[1]}" in vote.value
    assert f"game {game.id}" in embed.footer.text


async def test_status_without_a_game_says_how_to_start_one(server: Server) -> None:
    result = await server.alice.slash(server.channel, "adventure status")
    server.refused(result, "/adventure start")


async def test_history_pages_through_the_story_so_far(server: Server) -> None:
    game = await start(server)
    for _ in range(9):
        await server.bob.react(server.scenes()[-1], NUMBERS[0])
        await server.env.advance_time(61)
    # The fake's scenes are short: make them as long as a real storyteller's long ones (about 700 characters),
    # so ten of them need more than one page.
    for shown in game.path:
        shown.scene = shown.scene.model_copy(update={"narration": (shown.scene.narration + " ") * 5})
    result = await server.carol.slash(server.channel, "adventure history")
    assert result.ephemeral
    first = result.response.embeds[0]
    assert first.description.startswith(f"**Scene 1.** {game.path[0].scene.narration.strip()}")
    assert f"→ *{game.path[0].scene.choices[0]}*" in first.description
    pages = int(first.footer.text.split(" of ")[1].split(" ")[0])
    assert first.footer.text.startswith("page 1 of ") and pages >= 2 and len(first.description) <= 4096
    turned = await server.carol.click(result.response, label="Later ▶")
    second = turned.response.embeds[0]
    assert second.footer.text.startswith("page 2 of ") and len(second.description) <= 4096
    assert second.description.startswith("**Scene ") and not second.description.startswith("**Scene 1.**")
    assert second.description not in first.description  # a page further on, not the same one again
    back = await server.carol.click(turned.response, label="◀ Earlier")
    assert back.response.embeds[0].description == first.description


async def test_only_the_starter_or_a_moderator_may_retry_undo_or_end(server: Server,
                                                                     store: SQLiteGameStore) -> None:
    await start(server)
    for command in ("adventure retry", "adventure undo", "adventure end"):
        result = await server.bob.slash(server.channel, command)
        server.refused(result, "only the player who started this adventure, or a moderator, may")
        server.refused(result, "a moderator is a member with Manage Server")  # the bot names its own rule
    result = await server.mod.slash(server.channel, "adventure end")
    assert "ended the adventure" in result.response.content
    [summary] = await store.list_games()
    assert summary.status == "ended"


async def test_retry_writes_the_scene_again_and_keeps_the_old_one(server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    old = game.current.scene
    await server.bob.react(server.scenes()[0], NUMBERS[0])
    result = await server.alice.slash(server.channel, "adventure retry")
    assert "asked for scene 1 again" in result.response.content
    first, second = server.scenes()
    saved = await store.load(game.id)
    assert second.embeds[0].description == saved.current.scene.narration != old.narration
    assert saved.current.rejected == [old] and saved.current.votes == []  # a new scene, a new vote
    assert saved.current.message == str(second.id)
    await server.bob.react(first, NUMBERS[0])  # the replaced scene's message takes no votes
    assert (await store.load(game.id)).current.votes == []


async def test_undo_goes_back_and_opens_that_vote_again(server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    await server.bob.react(server.scenes()[0], NUMBERS[2])
    await server.env.advance_time(61)
    result = await server.alice.slash(server.channel, "adventure undo")
    assert "went back to scene 1" in result.response.content
    saved = await store.load(game.id)
    assert len(saved.path) == 1 and saved.current.chosen is None and saved.current.vote_deadline is not None
    assert saved.current.message == str(server.scenes()[-1].id)
    result = await server.alice.slash(server.channel, "adventure undo")
    server.refused(result, "no earlier scene")


async def test_end_then_commands_say_no_game_runs(server: Server) -> None:
    await start(server)
    await server.alice.slash(server.channel, "adventure end")
    result = await server.alice.slash(server.channel, "adventure retry")
    server.refused(result, "no adventure is running here; start one with /adventure start")


async def test_rating_reactions_are_stored_with_player_scene_and_model_version(server: Server,
                                                                              store: SQLiteGameStore) -> None:
    game = await start(server)
    [scene] = server.scenes()
    await server.bob.react(scene, STAR)
    await server.bob.react(scene, UP)
    await server.carol.react(scene, DOWN)
    await server.carol.react(scene, UP)  # a player's latest thumb counts
    ratings = {(r.player, r.stars, r.thumb, r.scene, r.model_version) for r in (await store.load(game.id)).ratings}
    bob, carol = str(server.bob.id), str(server.carol.id)
    assert ratings == {(bob, 5, None, 0, "fake/1"), (bob, None, "up", 0, "fake/1"), (carol, None, "up", 0, "fake/1")}
    await server.bob.unreact(scene, UP)
    await server.carol.unreact(scene, DOWN)  # already replaced: nothing to take back
    ratings = {(r.player, r.stars, r.thumb) for r in (await store.load(game.id)).ratings}
    assert ratings == {(bob, 5, None), (carol, None, "up")}


async def test_an_earlier_scene_can_still_be_rated(server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    await server.bob.react(server.scenes()[0], NUMBERS[0])
    await server.env.advance_time(61)
    await server.bob.react(server.scenes()[0], DOWN)
    [rating] = (await store.load(game.id)).ratings
    assert (rating.scene, rating.thumb) == (0, "down")


async def test_feedback_is_stored_on_the_current_scene(server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    result = await server.bob.slash(server.channel, "feedback", text="The knight should remember her sister.")
    assert result.ephemeral and "noted on scene 1" in result.response.content
    [rating] = (await store.load(game.id)).ratings
    assert (rating.player, rating.comment, rating.scene) == (str(server.bob.id),
                                                            "The knight should remember her sister.", 0)
    result = await server.bob.slash(server.channel, "feedback", text="more forbidden things")
    server.refused(result, "blocked word")


async def test_optout_is_recorded_and_can_be_taken_back(server: Server, store: SQLiteGameStore) -> None:
    result = await server.bob.slash(server.channel, "adventure optout")
    assert result.ephemeral and "never be exported" in result.response.content
    assert await store.opted_out() == {str(server.bob.id)}
    await server.bob.slash(server.channel, "adventure optout", back_in=True)
    assert await store.opted_out() == frozenset()


async def test_an_unexpected_error_is_logged_with_an_id_the_user_sees(server: Server, store: SQLiteGameStore,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    async def broken(server_id: str) -> dict[str, object]:
        raise RuntimeError("a bug in reading the settings")

    monkeypatch.setattr(store, "server_settings", broken)  # a bug, not an expected failure: no CyoaError
    with caplog.at_level(logging.ERROR, logger="bot.client"):
        result = await server.alice.slash(server.channel, "adventure start")
    content = result.response.content if not result.followups else result.followups[-1].content
    assert "something went wrong on our side (error id `" in content
    error_id = content.split("`")[1]
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.exc_info is not None  # logged with its traceback
    assert server.env.errors


async def test_a_premise_is_shown_as_text_never_as_markdown(server: Server) -> None:
    premise = "x* [Free Nitro](https://evil.example) *"
    result = await server.alice.slash(server.channel, "adventure start", genre="fantasy", premise=premise)
    content = result.response.content
    # Escaped: the bracket cannot open a masked link (the address shows as itself), the stars stay stars.
    assert "\\[Free Nitro](https://evil.example)" in content and "x\\* " in content and " \\**" in content


async def test_feedback_is_a_server_command_only(server: Server) -> None:
    bot = server.env.bot
    assert isinstance(bot, CyoaBot)
    command = bot.tree.get_command("feedback")
    assert command is not None and command.guild_only  # Discord does not offer it in DMs
    # simcord refuses what Discord would not show: "not visible to this user here ... (reason: context)".
    with pytest.raises(simcord.SetupError, match=r"not visible .*reason: context"):
        await server.bob.user.slash("feedback", text="Nice story")
