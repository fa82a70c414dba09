"""Votes and ratings from raw reaction events (raw: the scene message need not be in the cache, e.g. after
a restart). 1️⃣-4️⃣ vote on the current scene; ⭐ 👍 👎 rate any scene of the channel's game. The bot's own
reactions, other bots' reactions and every other emoji are ignored."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.render import MARKS, NUMBERS

if TYPE_CHECKING:
    from bot.client import CyoaBot


class ReactionsCog(commands.Cog):
    def __init__(self, bot: CyoaBot) -> None:
        self.bot = bot
        self.tables = bot.tables

    def _relevant(self, payload: discord.RawReactionActionEvent) -> str | None:
        """The place of a reaction worth reading, or None."""
        if payload.guild_id is None or (self.bot.user is not None and payload.user_id == self.bot.user.id):
            return None
        if payload.member is not None and payload.member.bot:
            return None  # another bot's reaction is neither a vote nor a rating
        return self.tables.place(str(payload.guild_id), str(payload.channel_id))

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._react(payload, on=True)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._react(payload, on=False)

    async def _react(self, payload: discord.RawReactionActionEvent, on: bool) -> None:
        place = self._relevant(payload)
        emoji = str(payload.emoji)
        if place is None:
            return
        player, message = str(payload.user_id), str(payload.message_id)
        if emoji in NUMBERS:
            choice = NUMBERS.index(emoji)
            if on:
                await self.tables.vote(place, player, choice, message)
            else:
                await self.tables.unvote(place, player, choice, message)
        elif emoji in MARKS:
            await self.tables.rate(place, player, message, MARKS[emoji], on=on)
