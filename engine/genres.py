"""The genres a story can have: the bundled stories use them, players pick from them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Genre:
    id: str
    name: str
    blurb: str


GENRES: tuple[Genre, ...] = (
    Genre("fantasy", "Fantasy", "Kingdoms, guilds, dragons and spirits."),
    Genre("magic_school", "Magic school", "Academies of magic, exams, rivals and familiars."),
    Genre("slice_of_life", "Slice of life", "Everyday warmth with small, heartfelt stakes."),
    Genre("gaming_isekai", "Gaming isekai", "Trapped in a game world of levels, skills and quests."),
    Genre("time_loop", "Time loop", "The same day again, and what you carry between loops."),
    Genre("mecha", "Mecha", "Giant piloted machines, hangars and the weight of command."),
    Genre("idol", "Idol", "Auditions, stages, rivals and the fans who believe in you."),
    Genre("sports", "Sports", "Clubs, tournaments, training camps and teamwork."),
    Genre("mystery", "Mystery", "Clues, suspects, alibis and the one right deduction."),
    Genre("yokai_horror", "Yokai horror", "Shrines, curses and folklore creatures on festival nights."),
    Genre("space_opera", "Space opera", "Starships, fleets, envoys and rebellions among the stars."),
    Genre("cultivation", "Cultivation", "Sects, qi, breakthroughs and tribulation lightning."),
    Genre("cooking", "Cooking", "Cooking battles, family restaurants and the taste of home."),
    Genre("romcom", "Romantic comedy", "Misunderstandings, fake dating and confessions (kept wholesome)."),
    Genre("samurai", "Samurai", "Ronin, sword schools, castle intrigue and duels at dawn."),
    Genre("cyberpunk", "Cyberpunk", "Neon megacities, implants, hackers and megacorps."),
    # Only the optional AI Dungeon source uses it; no bundled story does.
    Genre("survival", "Survival", "Ruined towns, scarce supplies and hard choices."),
)

GENRE_IDS: frozenset[str] = frozenset(genre.id for genre in GENRES)


def genre_by_id(genre_id: str) -> Genre:
    """The genre with this id; ``KeyError`` names the known ones."""
    for genre in GENRES:
        if genre.id == genre_id:
            return genre
    raise KeyError(f"unknown genre {genre_id!r} (known: {', '.join(sorted(GENRE_IDS))})")
