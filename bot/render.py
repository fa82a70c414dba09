"""How games look on Discord: embeds for scenes, status and history pages. Rendering only, no rules."""

from __future__ import annotations

import discord

from engine.errors import GameRuleError, Hint
from engine.game import Game, Shown
from engine.genres import GENRES
from engine.votes import tally

NUMBERS = ("1\N{VARIATION SELECTOR-16}\N{COMBINING ENCLOSING KEYCAP}",
           "2\N{VARIATION SELECTOR-16}\N{COMBINING ENCLOSING KEYCAP}",
           "3\N{VARIATION SELECTOR-16}\N{COMBINING ENCLOSING KEYCAP}",
           "4\N{VARIATION SELECTOR-16}\N{COMBINING ENCLOSING KEYCAP}")
"""The vote reactions, 1️⃣ to 4️⃣, in choice order."""

MARKS = {"\N{WHITE MEDIUM STAR}": "star", "\N{THUMBS UP SIGN}": "up", "\N{THUMBS DOWN SIGN}": "down"}
"""Rating reactions: ⭐ (5 stars), 👍 and 👎."""

HINTS = {Hint.START: "start one with /adventure start",
         Hint.END: "finish it, or end it with /adventure end",
         Hint.CHANNELS: "/config view lists where they are",
         Hint.MODERATOR: "a moderator is a member with Manage Server"}
"""How a refusal's hint reads on Discord: the engine names no commands, the bot names its own."""

GENRE_NAMES = {genre.id: genre.name for genre in GENRES}
EMBED_TEXT = 4000  # Discord allows 4096 characters in an embed description
COLOURS = {"good": discord.Colour.green(), "bad": discord.Colour.red(), "neutral": discord.Colour.light_grey()}


def genre_name(genre: str) -> str:
    return GENRE_NAMES.get(genre, genre.replace("_", " ").title())


def error_text(error: BaseException) -> str:
    """An expected error as a Discord user reads it: the engine's message, then the hint in slash commands."""
    hint = HINTS.get(error.hint) if isinstance(error, GameRuleError) and error.hint is not None else None
    return f"⚠️ {error}; {hint}" if hint else f"⚠️ {error}"


def timestamp(shown: Shown) -> str:
    """The vote deadline as a Discord timestamp, which every client shows counting down in its own time."""
    return f"<t:{int(shown.vote_deadline.timestamp())}:R>" if shown.vote_deadline else "closed"


def scene_embed(game: Game) -> discord.Embed:
    shown = game.current
    scene = shown.scene
    embed = discord.Embed(title=f"{genre_name(game.genre)} · scene {len(game.path)} of at most {game.max_scenes}",
                          description=scene.narration[:EMBED_TEXT], colour=discord.Colour.blurple())
    if scene.is_ending:
        embed.colour = COLOURS.get(str(scene.ending), discord.Colour.light_grey())
        embed.add_field(name="The end", value=f"This story has ended ({scene.ending} ending). "
                                              "Start another with /adventure start.", inline=False)
    else:
        lines = [f"{NUMBERS[i]} {choice}" for i, choice in enumerate(scene.choices)]
        embed.add_field(name="What do you do?", value="\n".join(lines)[:1024], inline=False)
        embed.add_field(name="Vote", value=f"React with a number; the vote closes {timestamp(shown)}.", inline=False)
    if scene.repaired:
        embed.add_field(name="Note", value="The storyteller lost the thread; this scene is a placeholder. "
                                           "/adventure retry writes it again.", inline=False)
    embed.set_footer(text=f"⭐ 👍 👎 rate this scene · /feedback · game {game.id} · {scene.model_version}")
    return embed


def draft_embed(text: str) -> discord.Embed:
    """A scene still being written: its narration so far; the choices come when it is complete and checked."""
    embed = discord.Embed(title="The storyteller is writing…", description=(text or "…")[:EMBED_TEXT],
                          colour=discord.Colour.dark_grey())
    embed.set_footer(text="the choices appear when the scene is finished")
    return embed


def status_embed(game: Game) -> discord.Embed:
    shown = game.current
    embed = discord.Embed(title=f"{genre_name(game.genre)} adventure · {game.status}",
                          description=game.premise[:EMBED_TEXT], colour=discord.Colour.blurple())
    embed.add_field(name="Scene", value=f"{len(game.path)} of at most {game.max_scenes}")
    embed.add_field(name="Started by", value=f"<@{game.owner}>" if game.owner else "unknown")
    embed.add_field(name="Players", value=str(len(game.players)))
    if shown.vote_deadline is not None:
        counts = tally(game)
        lines = [f"{NUMBERS[i]} {counts.get(i, 0)} vote(s) · {choice}" for i, choice in enumerate(shown.scene.choices)]
        extended = " (extended once for want of a quorum)" if shown.vote_extended else ""
        embed.add_field(name=f"Vote, closes {timestamp(shown)}{extended}", value="\n".join(lines)[:1024],
                        inline=False)
    embed.set_footer(text=f"game {game.id} · written by {game.model_version}")
    return embed


def history_pages(game: Game) -> list[str]:
    """The story so far as pages of at most ``EMBED_TEXT`` characters, each scene with the choice taken."""
    blocks = []
    for number, shown in enumerate(game.path, 1):
        block = f"**Scene {number}.** {shown.scene.narration}"
        if shown.chosen is not None:
            block += f"\n→ *{shown.scene.choices[shown.chosen]}*"
        elif shown.scene.is_ending:
            block += f"\n*The end ({shown.scene.ending}).*"
        blocks.append(block[:EMBED_TEXT])
    pages: list[str] = []
    for block in blocks:
        if pages and len(pages[-1]) + 2 + len(block) <= EMBED_TEXT:
            pages[-1] += "\n\n" + block
        else:
            pages.append(block)
    return pages or ["(no scene yet)"]


def history_embed(game: Game, pages: list[str], page: int) -> discord.Embed:
    embed = discord.Embed(title=f"{genre_name(game.genre)} · the story so far", description=pages[page],
                          colour=discord.Colour.blurple())
    embed.set_footer(text=f"page {page + 1} of {len(pages)} · game {game.id}")
    return embed
