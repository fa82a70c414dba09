"""``/privacy optout|forget``: a player's say over their data, in a server, in the bot's DMs, or (where the
app is installed to the user) in any DM.

Both answer privately. ``forget`` asks first, with buttons only the asker sees: it cannot be undone. What a
forget deletes is ``engine.privacy``'s rule; ``/adventure optout`` (in a server) records the same opt-out.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.adventure import Interaction
from bot.render import error_text
from engine.errors import CyoaError
from engine.privacy import Forgotten, started_by
from engine.tables import Tables

if TYPE_CHECKING:
    from bot.client import CyoaBot

log = logging.getLogger(__name__)

CONFIRM_SECONDS = 120  # the buttons of a forget stay live this long
OPTED_OUT = ("Done: your votes and ratings will never be used to train the storyteller, nor count in its live "
             "figures. `/privacy optout back_in:True` undoes this.")
OPTED_IN = "Your votes and ratings may be used to train the storyteller again."
ASK = ("This deletes, for good, your votes, ratings and written feedback in every adventure, and the adventures "
       "you started (their premise may be your words; an adventure of yours still running ends now). It also "
       "keeps what you do from now on out of training (`/privacy optout back_in:True` undoes that part).")
ENDED = "⏹️ This adventure has ended: it was removed at the request of the player who started it."


def done_text(forgotten: Forgotten) -> str:
    return (f"🗑️ Deleted: {forgotten.votes} vote(s), {forgotten.ratings} rating(s), {forgotten.comments} "
            f"comment(s) and {forgotten.games} adventure(s) you started. You are opted out of training from now on. "
            "Reactions you left on scenes still show in Discord: you can remove them there.")


class ForgetView(discord.ui.View):
    """The confirmation of a forget: only the player who asked sees it (the reply is ephemeral)."""

    def __init__(self, bot: CyoaBot, player: str) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.bot, self.player = bot, player

    @discord.ui.button(label="Delete my data", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: Interaction, button: discord.ui.Button[ForgetView]) -> None:
        await interaction.response.defer()  # the store walks every game: longer than Discord's 3 s at scale
        ending = [game for game in self.bot.tables.games.values() if started_by(game, self.player) and not game.ended]
        forgotten = await self.bot.tables.forget(self.player)
        self.stop()
        await interaction.edit_original_response(content=done_text(forgotten), view=None)
        for game in ending:
            await self._tell(game.place)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: Interaction, button: discord.ui.Button[ForgetView]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was deleted.", view=None)

    async def _tell(self, place: str) -> None:
        """Tell a channel its adventure is gone (best effort: the deletion stands either way)."""
        channel = self.bot.get_channel(int(place.rsplit(":", 1)[1]))
        if isinstance(channel, discord.abc.Messageable):
            try:
                await channel.send(ENDED)
            except discord.HTTPException as exc:
                log.warning("could not tell channel %s its adventure was removed: %s", place, exc)

    async def on_error(self, interaction: Interaction, error: Exception, item: discord.ui.Item[Any]) -> None:
        """Expected errors go to the player; the rest are logged with an id they can quote (as the tree's)."""
        if isinstance(error, CyoaError):
            text = error_text(error)
        else:
            error_id = uuid.uuid4().hex[:8]
            log.error("error %s in /privacy forget", error_id, exc_info=error)
            text = f"Sorry, something went wrong on our side (error id `{error_id}`); nothing may have been deleted."
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)


@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
@app_commands.allowed_installs(guilds=True, users=True)
class PrivacyCog(commands.GroupCog, group_name="privacy", group_description="Your data: keep it out of training, "
                                                                             "or delete it"):
    def __init__(self, bot: CyoaBot) -> None:
        self.bot = bot
        self.tables: Tables = bot.tables
        super().__init__()

    @app_commands.command(description="Keep your votes and ratings out of training (or let them back in)")
    @app_commands.describe(back_in="true: let your votes and ratings be used for training again")
    async def optout(self, interaction: Interaction, back_in: bool = False) -> None:
        await self.tables.opt_out(str(interaction.user.id), not back_in)
        await interaction.response.send_message(OPTED_IN if back_in else OPTED_OUT, ephemeral=True)

    @app_commands.command(description="Delete your votes, ratings, feedback and the adventures you started")
    async def forget(self, interaction: Interaction) -> None:
        view = ForgetView(self.bot, str(interaction.user.id))
        await interaction.response.send_message(ASK, view=view, ephemeral=True)
