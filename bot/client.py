"""The Discord client: the cogs, the one error handler, and the presenter that posts scenes.

``CyoaBot`` gets its parts injected (the engine's ``StoryEngine`` and a store); ``bot.launcher`` builds the
real ones. Only the intents the bot needs are asked for: guilds (channels and permissions) and guild
reactions (the votes and ratings). No privileged intent is used: slash commands need no message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from bot.render import NUMBERS, draft_embed, error_text, scene_embed, timestamp
from engine.background import Background
from engine.errors import CyoaError, DeliveryError
from engine.game import Game
from engine.places import Place
from engine.ports import TableStore
from engine.tables import Tables
from engine.turns import StoryEngine

log = logging.getLogger(__name__)

INTENTS = discord.Intents.none()
INTENTS.guilds = True
INTENTS.guild_reactions = True


def channel_of(place: str) -> int:
    """The Discord channel id of one of the bot's places."""
    parsed = Place.parse(place)
    if parsed is None or parsed.frontend != "discord":
        raise ValueError(f"not a Discord place: {place!r}")
    return int(parsed.channel)


class Watcher(Protocol):
    """Something the bot runs in the background for its whole life (``models.reload.ChampionWatcher``)."""

    async def run(self) -> None: ...


# Discord allows about five edits of a message in five seconds; one each 1.5 s stays well inside that and
# leaves room for the reactions and the other games in the channel.
DRAFT_EDIT_SECONDS = 1.5


@dataclass
class _Draft:
    """A scene being streamed into one channel: its message, the newest text, and what was shown when."""

    channel_id: int
    text: str = ""
    shown: str | None = None
    message: discord.Message | None = None
    shown_at: float = -DRAFT_EDIT_SECONDS
    task: asyncio.Task[None] | None = None


class DiscordPresenter:
    """``engine.ports.Presenter`` for Discord: a scene is an embed in its channel, voted on with 1️⃣-4️⃣.

    A scene written on demand is streamed: one message, posted with its first words and edited at most every
    ``DRAFT_EDIT_SECONDS``; when the scene is complete and checked, that message becomes the scene (choices,
    then reactions). A draft taken back (the scene failed its checks) is edited back to "writing…"."""

    def __init__(self, bot: CyoaBot) -> None:
        self.bot = bot
        self.drafts: dict[str, _Draft] = {}

    def draft(self, place: str, text: str | None) -> None:
        if text is None:
            self.bot.spawn(self._remove_draft(place))
            return
        draft = self.drafts.setdefault(place, _Draft(channel_of(place)))
        draft.text = text
        if draft.task is None or draft.task.done():
            draft.task = self.bot.spawn(self._stream(draft))

    async def _stream(self, draft: _Draft) -> None:
        """Show the newest text, waiting out the edit interval, until what is shown is the newest."""
        loop = asyncio.get_running_loop()
        while draft.shown != draft.text:
            wait = draft.shown_at + DRAFT_EDIT_SECONDS - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            text = draft.text
            try:
                if draft.message is None:
                    channel = self.bot.get_channel(draft.channel_id) or await self.bot.fetch_channel(draft.channel_id)
                    if not isinstance(channel, discord.abc.Messageable):
                        return
                    draft.message = await channel.send(embed=draft_embed(text))
                else:
                    await draft.message.edit(embed=draft_embed(text))
            except discord.HTTPException as exc:  # a lost edit only delays the text; the scene still shows
                log.warning("could not stream a scene into channel %s: %s", draft.channel_id, exc)
            draft.shown, draft.shown_at = text, loop.time()

    async def _remove_draft(self, place: str) -> None:
        message = await self._take_draft(place)
        if message is not None:
            with contextlib.suppress(discord.HTTPException):
                await message.delete()

    async def _take_draft(self, place: str) -> discord.Message | None:
        """The place's draft message, its streaming stopped, to become the scene's message."""
        draft = self.drafts.pop(place, None)
        if draft is None:
            return None
        if draft.task is not None and not draft.task.done():
            draft.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await draft.task
        return draft.message

    async def _channel(self, game: Game) -> discord.abc.Messageable:
        channel_id = channel_of(game.place)
        try:
            channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        except discord.HTTPException as exc:
            raise delivery_error(f"channel {channel_id}", exc) from exc
        if not isinstance(channel, discord.abc.Messageable):
            raise DeliveryError(f"channel {channel_id} cannot take messages", permanent=True)
        return channel

    async def show(self, game: Game) -> str | None:
        message = await self._take_draft(game.place)
        if message is not None:
            try:
                message = await message.edit(embed=scene_embed(game))
            except discord.HTTPException:  # the draft was deleted meanwhile: the scene gets a new message
                message = None
        if message is None:
            channel = await self._channel(game)
            try:
                message = await channel.send(embed=scene_embed(game))
            except discord.HTTPException as exc:
                raise delivery_error(f"posting scene {len(game.path)} of game {game.id}", exc) from exc
        if not game.ended:
            # One reaction at a time, in the background: discord.py waits out the reaction rate limit.
            self.bot.spawn(self._add_reactions(message, len(game.current.scene.choices)))
        return str(message.id)

    async def _add_reactions(self, message: discord.Message, count: int) -> None:
        for emoji in NUMBERS[:count]:
            await message.add_reaction(emoji)

    async def read_votes(self, game: Game) -> dict[str, set[int]] | None:
        """The number reactions on a game's current scene message, by player (not the bot's own); None when
        the message cannot be read (the stored votes then stand)."""
        if game.current.message is None:
            return None
        try:
            message = await (await self._channel(game)).fetch_message(int(game.current.message))
        except (discord.HTTPException, CyoaError) as exc:
            log.warning("cannot read the votes of game %s: %s", game.id, exc)
            return None
        votes: dict[str, set[int]] = {}
        for reaction in message.reactions:
            if str(reaction.emoji) not in NUMBERS:
                continue
            choice = NUMBERS.index(str(reaction.emoji))
            async for user in reaction.users():
                if self.bot.user is None or user.id != self.bot.user.id:
                    votes.setdefault(str(user.id), set()).add(choice)
        return votes

    async def vote_extended(self, game: Game) -> None:
        await (await self._channel(game)).send(
            f"Too few votes so far for scene {len(game.path)}: the vote stays open until "
            f"{timestamp(game.current)}, then the top choice wins.")

    async def failed(self, game: Game, reason: str) -> None:
        await (await self._channel(game)).send(
            f"The next scene could not be written ({reason}). The vote is open again until "
            f"{timestamp(game.current)}.")

    async def notice(self, game: Game, text: str) -> None:
        await (await self._channel(game)).send(text)


def delivery_error(what: str, exc: discord.HTTPException) -> DeliveryError:
    """Discord's answer as a ``DeliveryError``: 404 (the channel is gone) will not mend by itself; 403 (no
    access) may, once an admin fixes the bot's permissions, and a 5xx or a rate limit may."""
    permanent = isinstance(exc, discord.NotFound)
    return DeliveryError(f"{what}: Discord answered {exc.status} ({exc.text or 'no reason given'})", permanent)


class CyoaBot(commands.Bot):
    def __init__(self, engine: StoryEngine, store: TableStore, sync_commands: bool = True,
                 watcher: Watcher | None = None) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=INTENTS,
                         allowed_mentions=discord.AllowedMentions.none())
        self.presenter = DiscordPresenter(self)
        self.tables = Tables(engine, store, self.presenter, clock=discord.utils.utcnow)
        self.sync_commands = sync_commands
        self.watcher = watcher
        self._resumed = False
        self._background = Background("a background task of the bot")
        self.tree.error(self.on_app_command_error)

    async def setup_hook(self) -> None:
        from bot.cogs.adventure import AdventureCog, FeedbackCog
        from bot.cogs.config import ConfigCog
        from bot.cogs.privacy import PrivacyCog
        from bot.cogs.reactions import ReactionsCog

        for cog in (AdventureCog(self), FeedbackCog(self), ConfigCog(self), PrivacyCog(self), ReactionsCog(self)):
            await self.add_cog(cog)
        if self.sync_commands:
            await self.tree.sync()
        if self.watcher is not None:
            self.spawn(self.watcher.run())  # hot reload: new champions reach new games without a restart

    async def on_ready(self) -> None:
        if self._resumed:
            return  # on_ready comes again after every reconnect; resuming is once
        self._resumed = True
        games = await self.tables.resume()
        log.info("ready as %s; %d game(s) resumed", self.user, len(games))

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in the background; a failure is logged, not lost."""
        return self._background.spawn(work)

    async def on_app_command_error(self, interaction: discord.Interaction[Any],
                                   error: app_commands.AppCommandError) -> None:
        """The one error handler: expected errors go to the user, privately; the rest are logged with an
        id the user can quote."""
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(original, (CyoaError, app_commands.AppCommandError)):
            text = error_text(original)
        else:
            error_id = uuid.uuid4().hex[:8]
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("error %s in /%s", error_id, command, exc_info=original)
            text = f"Sorry, something went wrong on our side (error id `{error_id}`); it has been logged."
        await reply(interaction, text)

    async def close(self) -> None:
        await self.tables.close()
        await self._background.close()
        await super().close()


async def reply(interaction: discord.Interaction[Any], text: str, **kwargs: Any) -> None:
    """An ephemeral reply, whether or not the interaction was answered (deferred) already.

    After a public defer, Discord turns the first followup into the deferred message, public whatever its
    flags say: so the placeholder is filled and taken away first, and the reply follows as a real private
    message."""
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True, **kwargs)
        return
    if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(content="⚠️ That did not work; the reason went to you privately.")
            await interaction.delete_original_response()
    await interaction.followup.send(text, ephemeral=True, **kwargs)
