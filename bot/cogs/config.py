"""``/config``: per-server settings, for members with Manage Server. The settings and their defaults are
declared in ``engine.servers``; this cog only parses and shows them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.adventure import Interaction, where
from engine.errors import GameRuleError
from engine.servers import ServerSettings

if TYPE_CHECKING:
    from bot.client import CyoaBot


def settings_embed(settings: ServerSettings) -> discord.Embed:
    embed = discord.Embed(title="Adventure settings for this server", colour=discord.Colour.blurple())
    embed.add_field(name="Vote window", value=f"{settings.vote_window} s")
    embed.add_field(name="Quorum", value=f"{settings.quorum} voter(s)")
    embed.add_field(name="Games at once", value=str(settings.max_games))
    embed.add_field(name="Cooldowns", value=f"start {settings.start_cooldown} s per player · retry/undo "
                                            f"{settings.steer_cooldown} s per channel")
    channels = ", ".join(f"<#{c}>" for c in settings.allowed_channels) or "every channel"
    embed.add_field(name="Channels", value=channels[:1024], inline=False)
    words = ", ".join(f"`{w}`" for w in settings.block_words) or "none (the global list still applies)"
    embed.add_field(name="Blocked words", value=words[:1024], inline=False)
    return embed


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ConfigCog(commands.GroupCog, group_name="config", group_description="Adventure settings (Manage Server)"):
    def __init__(self, bot: CyoaBot) -> None:
        self.tables = bot.tables
        super().__init__()

    async def interaction_check(self, interaction: Interaction) -> bool:
        # default_permissions only hides the command; a server can grant it wider, so check here too.
        if not interaction.permissions.manage_guild:
            # A check failure (not a CyoaError): discord.py hands only AppCommandErrors from checks to the
            # tree's error handler.
            raise app_commands.CheckFailure("only members with Manage Server can change the adventure settings")
        return True

    async def _show(self, interaction: Interaction, settings: ServerSettings, note: str = "") -> None:
        await interaction.response.send_message(note or None, embed=settings_embed(settings), ephemeral=True)

    async def _change(self, interaction: Interaction, **values: Any) -> None:
        server, _ = where(interaction)
        await self._show(interaction, await self.tables.configure(server, **values), "Saved.")

    @app_commands.command(description="Show this server's adventure settings")
    async def view(self, interaction: Interaction) -> None:
        server, _ = where(interaction)
        await self._show(interaction, await self.tables.settings(server))

    @app_commands.command(description="Set the vote window and the quorum")
    @app_commands.describe(window="seconds a vote stays open (10-3600)", quorum="voters needed (1-50)")
    async def vote(self, interaction: Interaction, window: int | None = None, quorum: int | None = None) -> None:
        values = {k: v for k, v in (("vote_window", window), ("quorum", quorum)) if v is not None}
        if not values:
            raise GameRuleError("give a window, a quorum, or both")
        await self._change(interaction, **values)

    @app_commands.command(description="Set how many adventures may run at once in this server")
    @app_commands.describe(most="1-100")
    async def games(self, interaction: Interaction, most: int) -> None:
        await self._change(interaction, max_games=most)

    @app_commands.command(description="Set how often a player may start adventures and a channel retry or undo")
    @app_commands.describe(start="seconds between two starts by one player (5-3600)",
                           steer="seconds between two retries or undos in one channel (5-600)")
    async def cooldowns(self, interaction: Interaction, start: int | None = None, steer: int | None = None) -> None:
        values = {k: v for k, v in (("start_cooldown", start), ("steer_cooldown", steer)) if v is not None}
        if not values:
            raise GameRuleError("give a start cooldown, a retry/undo cooldown, or both")
        await self._change(interaction, **values)

    @app_commands.command(description="Allow adventures in a channel, or stop allowing it (none allowed: all are)")
    async def channel(self, interaction: Interaction, action: Literal["allow", "remove", "allow-all"],
                      channel: discord.TextChannel | None = None) -> None:
        server, _ = where(interaction)
        current = list((await self.tables.settings(server)).allowed_channels)
        if action == "allow-all":
            current = []
        elif channel is None:
            raise GameRuleError(f"name the channel to {action}")
        elif action == "allow" and str(channel.id) not in current:
            current.append(str(channel.id))
        elif action == "remove":
            if str(channel.id) not in current:
                raise GameRuleError(f"{channel.mention} is not on the list")
            current.remove(str(channel.id))
        await self._change(interaction, allowed_channels=current)

    @app_commands.command(description="Add a word to this server's block list, or remove one")
    async def blockword(self, interaction: Interaction, action: Literal["add", "remove"],
                        word: app_commands.Range[str, 1, 60]) -> None:
        server, _ = where(interaction)
        words = list((await self.tables.settings(server)).block_words)
        word = word.strip().casefold()
        if action == "add" and word not in words:
            words.append(word)
        elif action == "remove":
            if word not in words:
                raise GameRuleError(f"`{word}` is not on this server's block list")
            words.remove(word)
        await self._change(interaction, block_words=words)

    @app_commands.command(description="Put every setting back to its default")
    async def reset(self, interaction: Interaction) -> None:
        server, _ = where(interaction)
        await self._show(interaction, await self.tables.reset(server), "Every setting is back to its default.")
