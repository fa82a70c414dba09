"""Reaction voting through the real bot in simcord: window, quorum and extension, ties, changed and withdrawn
votes, the bot's own reactions, early close, and the votes as stored in the real SQLite file."""

from __future__ import annotations

import pytest

from bot.client import CyoaBot
from bot.render import NUMBERS
from data.store import SQLiteGameStore
from engine.game import Game
from tests.bot.conftest import Server

pytestmark = pytest.mark.asyncio


async def start(server: Server, **options: object) -> Game:
    result = await server.alice.slash(server.channel, "adventure start", genre="fantasy", **options)
    assert not result.ephemeral and "started a Fantasy adventure" in result.response.content
    return await only_game(server)


async def only_game(server: Server) -> Game:
    bot = server.env.bot
    assert isinstance(bot, CyoaBot)
    [game] = [g for g in bot.tables.games.values()]
    return game


async def stored(store: SQLiteGameStore, game: Game) -> Game:
    return await store.load(game.id)


async def test_a_scene_is_posted_with_its_choices_deadline_and_the_bots_number_reactions(
        server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    [scene] = server.scenes()
    embed = scene.embeds[0]
    assert embed.description == game.current.scene.narration
    choices = embed.fields[0].value
    assert all(f"{NUMBERS[i]} {text}" in choices for i, text in enumerate(game.current.scene.choices))
    deadline = int(game.current.vote_deadline.timestamp())  # type: ignore[union-attr]
    assert f"<t:{deadline}:R>" in embed.fields[1].value
    assert [str(r.emoji) for r in scene.reactions] == list(NUMBERS[:3])
    assert (await stored(store, game)).current.message == str(scene.id)


async def test_the_window_closes_the_vote_and_the_top_choice_is_shown_at_once(
        server: Server, store: SQLiteGameStore, writer: object) -> None:
    game = await start(server)
    [scene] = server.scenes()
    await server.alice.react(scene, NUMBERS[1])
    await server.bob.react(scene, NUMBERS[1])
    await server.carol.react(scene, NUMBERS[0])
    saved = await stored(store, game)
    assert sorted((v.player, v.choice) for v in saved.current.votes) == sorted(
        [(str(server.alice.id), 1), (str(server.bob.id), 1), (str(server.carol.id), 0)])  # stored as they came
    await server.env.advance_time(59)
    assert len(server.scenes()) == 1  # still open
    await server.env.advance_time(2)
    _, second = server.scenes()
    branch = game.path[0].branches[1]
    assert second.embeds[0].description == branch.narration  # the pre-generated branch, shown as it was
    saved = await stored(store, game)
    assert saved.path[0].chosen == 1 and len(saved.path[0].votes) == 3 and saved.path[0].tie_break is None
    assert saved.current.message == str(second.id)


async def test_a_players_latest_reaction_counts_and_removing_it_withdraws_the_vote(
        server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    [scene] = server.scenes()
    await server.bob.react(scene, NUMBERS[0])
    await server.bob.react(scene, NUMBERS[2])
    assert [(v.player, v.choice) for v in (await stored(store, game)).current.votes] == [(str(server.bob.id), 2)]
    await server.bob.unreact(scene, NUMBERS[0])  # not the standing vote: nothing changes
    assert len((await stored(store, game)).current.votes) == 1
    await server.bob.unreact(scene, NUMBERS[2])
    assert (await stored(store, game)).current.votes == []


async def test_the_bots_own_reactions_and_other_emoji_are_not_votes(server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    [scene] = server.scenes()
    assert all(r.count == 1 for r in scene.reactions)  # the bot reacted, and its raw events came back to it
    await server.bob.react(scene, "🎉")
    assert (await stored(store, game)).current.votes == []
    await server.bob.react(scene, NUMBERS[3])  # a fourth choice that this scene does not have
    assert (await stored(store, game)).current.votes == []


async def test_below_the_quorum_the_window_is_extended_once_then_the_top_choice_wins(
        server: Server, store: SQLiteGameStore) -> None:
    await server.mod.slash(server.channel, "config vote", window=30, quorum=2)
    game = await start(server)
    [scene] = server.scenes()
    await server.bob.react(scene, NUMBERS[2])
    await server.env.advance_time(31)
    assert len(server.scenes()) == 1
    notice = server.channel.last_message
    assert notice is not None and "Too few votes" in notice.content
    saved = await stored(store, game)
    assert saved.current.vote_extended and saved.current.vote_deadline is not None
    await server.env.advance_time(31)
    assert len(server.scenes()) == 2
    assert (await stored(store, game)).path[0].chosen == 2


async def test_a_tie_is_broken_by_a_seeded_draw_that_is_recorded(server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    [scene] = server.scenes()
    await server.alice.react(scene, NUMBERS[0])
    await server.bob.react(scene, NUMBERS[2])
    await server.env.advance_time(61)
    saved = await stored(store, game)
    assert saved.path[0].tie_break == [0, 2]
    assert saved.path[0].chosen in (0, 2)
    assert server.scenes()[-1].embeds[0].description == game.path[0].branches[saved.path[0].chosen].narration


async def test_with_no_vote_at_all_the_window_is_extended_then_a_draw_decides(server: Server,
                                                                             store: SQLiteGameStore) -> None:
    game = await start(server)
    await server.env.advance_time(61)
    assert len(server.scenes()) == 1  # the default quorum is one voter
    await server.env.advance_time(60)
    saved = await stored(store, game)
    assert saved.path[0].tie_break == [0, 1, 2] and saved.path[0].chosen is not None
    assert len(server.scenes()) == 2


async def test_the_vote_closes_early_once_everyone_still_playing_has_voted(server: Server,
                                                                          store: SQLiteGameStore) -> None:
    game = await start(server)
    [scene] = server.scenes()
    await server.alice.react(scene, NUMBERS[0])
    await server.bob.react(scene, NUMBERS[0])
    assert len(server.scenes()) == 1  # the opening waits for its window: nobody is known to be playing yet
    await server.env.advance_time(61)
    second = server.scenes()[-1]
    await server.alice.react(second, NUMBERS[1])
    assert len(server.scenes()) == 2
    await server.bob.react(second, NUMBERS[1])  # both players of the last vote have voted: no waiting
    assert len(server.scenes()) == 3
    assert (await stored(store, game)).path[1].chosen == 1


async def test_votes_on_an_older_scene_message_are_ignored(server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    await server.alice.react(server.scenes()[0], NUMBERS[0])
    await server.env.advance_time(61)
    old, _ = server.scenes()
    await server.bob.react(old, NUMBERS[1])
    assert (await stored(store, game)).current.votes == []


async def test_a_game_is_played_to_its_ending(server: Server, store: SQLiteGameStore) -> None:
    game = await start(server)
    for _ in range(game.max_scenes):
        if game.ended:
            break
        await server.bob.react(server.scenes()[-1], NUMBERS[0])
        await server.env.advance_time(61)
    saved = await stored(store, game)
    assert saved.ended and saved.current.scene.is_ending and len(saved.path) == saved.max_scenes
    last = server.scenes()[-1]
    assert last.embeds[0].fields[0].name == "The end" and not last.reactions
    result = await server.bob.slash(server.channel, "adventure start")  # the channel is free again
    assert "started a" in result.response.content


async def test_another_bots_reactions_are_neither_votes_nor_ratings(server: Server) -> None:
    game = await start(server)
    [scene] = server.scenes()
    other = server.guild.add_member(server.env.create_user("otherbot", bot=True))
    await other.react(scene, NUMBERS[1])
    await other.react(scene, "⭐")
    assert game.current.votes == [] and game.ratings == []
    await server.alice.react(scene, NUMBERS[1])
    assert [v.player for v in game.current.votes] == [str(server.alice.id)]
