"""``/adventure start|status|history|retry|undo|end|optout`` and ``/feedback``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import reply
from bot.render import genre_name, history_embed, history_pages, status_embed
from engine.errors import GameRuleError
from engine.game import Game
from engine.genres import GENRES

if TYPE_CHECKING:
    from bot.client import CyoaBot

Interaction = discord.Interaction[Any]


def where(interaction: Interaction) -> tuple[str, str]:
    """The server and channel ids of an interaction (adventures are played in server channels only)."""
    if interaction.guild_id is None or interaction.channel_id is None:
        raise GameRuleError("adventures are played in a server's channels, not in direct messages")
    return str(interaction.guild_id), str(interaction.channel_id)


def is_manager(interaction: Interaction) -> bool:
    return interaction.permissions.manage_guild


class HistoryView(discord.ui.View):
    """Pages through the story so far; only the member who asked can turn them (the reply is theirs)."""

    def __init__(self, game: Game, pages: list[str]) -> None:
        super().__init__(timeout=300)
        self.game, self.pages, self.page = game, pages, 0
        self._update()

    def _update(self) -> None:
        self.previous_page.disabled = self.page == 0
        self.next_page.disabled = self.page >= len(self.pages) - 1

    async def _turn(self, interaction: Interaction, step: int) -> None:
        self.page = max(0, min(len(self.pages) - 1, self.page + step))
        self._update()
        await interaction.response.edit_message(embed=history_embed(self.game, self.pages, self.page), view=self)

    @discord.ui.button(label="◀ Earlier", style=discord.ButtonStyle.secondary)
    async def previous_page(self, interaction: Interaction, button: discord.ui.Button[HistoryView]) -> None:
        await self._turn(interaction, -1)

    @discord.ui.button(label="Later ▶", style=discord.ButtonStyle.secondary)
    async def next_page(self, interaction: Interaction, button: discord.ui.Button[HistoryView]) -> None:
        await self._turn(interaction, +1)


@app_commands.guild_only()
class AdventureCog(commands.GroupCog, group_name="adventure", group_description="Play a story together"):
    def __init__(self, bot: CyoaBot) -> None:
        self.bot = bot
        self.tables = bot.tables
        super().__init__()

    @app_commands.command(description="Start an adventure in this channel")
    @app_commands.describe(genre="the kind of story (empty: any)", premise="one sentence to start from (empty: "
                                                                           "one of the bundled stories')")
    async def start(self, interaction: Interaction, genre: str | None = None,
                    premise: app_commands.Range[str, 1, 300] | None = None) -> None:
        server, channel = where(interaction)
        await self.tables.check_start(server, channel, genre, premise, str(interaction.user.id))  # refusals: private
        await interaction.response.defer(thinking=True)
        game = await self.tables.start(server, channel, str(interaction.user.id), genre, premise)
        await interaction.followup.send(
            f"📖 {interaction.user.mention} started a {genre_name(game.genre)} adventure: "
            f"*{discord.utils.escape_markdown(game.premise)}*\n"
            "Vote with the number reactions under each scene; rate scenes with ⭐ 👍 👎.")

    @start.autocomplete("genre")
    async def genre_autocomplete(self, interaction: Interaction,
                                 current: str) -> list[app_commands.Choice[str]]:
        typed = current.casefold()
        return [app_commands.Choice(name=f"{g.name}: {g.blurb}"[:100], value=g.id) for g in GENRES
                if typed in g.id.casefold() or typed in g.name.casefold()][:25]

    def _latest(self, interaction: Interaction) -> Game:
        """The channel's running game, or the last one played there."""
        game = self.tables.game_at(self.tables.place(*where(interaction)))
        if game is None:
            raise GameRuleError("no adventure has been played in this channel yet; start one with /adventure start")
        return game

    @app_commands.command(description="Show this channel's adventure and its vote")
    async def status(self, interaction: Interaction) -> None:
        game = self._latest(interaction)
        await interaction.response.send_message(embed=status_embed(game), ephemeral=True)

    @app_commands.command(description="Read the story so far")
    async def history(self, interaction: Interaction) -> None:
        game = self._latest(interaction)
        pages = history_pages(game)
        view = HistoryView(game, pages)
        await interaction.response.send_message(embed=history_embed(game, pages, 0), view=view, ephemeral=True)

    async def _steer(self, interaction: Interaction, what: Literal["retry", "undo"]) -> Game:
        """Retry or undo: refused privately before anything is written, then written while Discord shows the
        bot thinking."""
        place, player = self.tables.place(*where(interaction)), str(interaction.user.id)
        manager = is_manager(interaction)
        await self.tables.check_steer(place, player, manager, what)
        await interaction.response.defer(thinking=True)
        return await (self.tables.retry if what == "retry" else self.tables.undo)(place, player, manager)

    @app_commands.command(description="Write the current scene again (starter or Manage Server)")
    async def retry(self, interaction: Interaction) -> None:
        game = await self._steer(interaction, "retry")
        await interaction.followup.send(f"🔁 {interaction.user.mention} asked for scene {len(game.path)} again.")

    @app_commands.command(description="Go back to the previous scene (starter or Manage Server)")
    async def undo(self, interaction: Interaction) -> None:
        game = await self._steer(interaction, "undo")
        await interaction.followup.send(f"↩️ {interaction.user.mention} went back to scene {len(game.path)}.")

    @app_commands.command(description="End this channel's adventure (starter or Manage Server)")
    async def end(self, interaction: Interaction) -> None:
        place = self.tables.place(*where(interaction))
        game = await self.tables.end(place, str(interaction.user.id), is_manager(interaction))
        await interaction.response.send_message(
            f"⏹️ {interaction.user.mention} ended the adventure after {len(game.path)} scene(s).")

    @app_commands.command(description="Keep your votes and ratings out of training data (or let them back in)")
    @app_commands.describe(back_in="true: let your votes and ratings be used for training again")
    async def optout(self, interaction: Interaction, back_in: bool = False) -> None:
        await self.tables.opt_out(str(interaction.user.id), not back_in)
        text = ("Your votes and ratings may be used to train the storyteller again." if back_in else
                "Done: your votes and ratings will never be exported for training. `/adventure optout back_in:True` "
                "undoes this.")
        await interaction.response.send_message(text, ephemeral=True)


class FeedbackCog(commands.Cog):
    def __init__(self, bot: CyoaBot) -> None:
        self.tables = bot.tables

    # On the command itself: a guild_only decorator on a plain Cog (not a group) does nothing.
    @app_commands.command(description="Tell the storyteller what you think of the current scene")
    @app_commands.guild_only()
    @app_commands.describe(text="what worked, what did not")
    async def feedback(self, interaction: Interaction, text: app_commands.Range[str, 1, 1000]) -> None:
        server, channel = where(interaction)
        game = await self.tables.feedback(self.tables.place(server, channel), str(interaction.user.id), text)
        await reply(interaction, f"Thank you: noted on scene {len(game.path)}.")
